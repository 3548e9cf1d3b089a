#!/usr/bin/env python3
"""make gpu-bundle: what the lent GPU machine needs to run scripts/gpu_suite.sh with neither a network nor a build.

The machine (docs/GPU.md) has Python 3.12 with numpy, protobuf, scipy, scikit-image, Pillow, tqdm, matplotlib,
pytest, onnxruntime, PyTorch and NVIDIA's CUDA 13 wheels, and no Boost, glog or gflags. The bundle, at most 50 MiB
(the files that travel with a device call are 64 MiB in all), holds:
  - a manylinux CUDA wheel of this Caffe for the Python whose headers PY_INCLUDE holds (CUDA_ARCH=90 by default:
    the H100/H200), built as `CUDA=1 make wheel` builds (the same cache, the same auditwheel repair: Boost, glog,
    gflags, protobuf, HDF5, OpenBLAS bundled; NVIDIA's runtime, cuBLAS and cuRAND required from their wheels),
    against a Boost.Python compiled here from BOOST_PYTHON_SRC for that Python and numpy's headers from the PyPI
    wheel of this venv's numpy for it;
  - this project as a wheel, and what it needs beyond the machine's packages (six, pycocotools) and pip;
  - bundle.json: each file's sha256 and size, the Python, the CUDA architecture, the commit.
PY_INCLUDE comes from the GPU machine (scripts/gpu_headers.sh, its first device call); the rehearsal
(make gpu-rehearsal) gives this machine's own Python's headers instead.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_caffe  # noqa: E402
from caffe_build import relocate, target  # noqa: E402
from caffe_build.common import SetupError, log, pip_install, run, script, sha256  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LIMIT_MIB = 50
# cuBLAS's and cuRAND's headers and libraries to build against (the toolkit's nvcc brings neither), as the wheel
# requires them at run time
CUDA_BUILD_WHEELS = list(dict.fromkeys(req for pattern, req, _ in relocate.EXTERNAL_LIBS
                                       if pattern.startswith(('libcublas', 'libcurand'))))
# Beyond the GPU machine's packages: the project's requirements it lacks, and pip to install the bundle offline.
EXTRA_WHEELS = ('six', 'pycocotools', 'pip')


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='make gpu-bundle', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--py-include', default=os.environ.get('PY_INCLUDE') or None, metavar='DIR',
                    help="the target Python's include folder, holding Python.h (env PY_INCLUDE)")
    ap.add_argument('--boost-python-src', default=os.environ.get('BOOST_PYTHON_SRC') or None, metavar='DIR',
                    help=f'{target.BOOST_PYTHON_HELP} (env BOOST_PYTHON_SRC)')
    ap.add_argument('--cuda-arch', default=os.environ.get('CUDA_ARCH') or '90',
                    help='compute capabilities to build for (env CUDA_ARCH; default %(default)s, the H100/H200)')
    ap.add_argument('--out', type=Path, default=REPO / 'gpu-bundle', help='the bundle folder (default: %(default)s)')
    args = ap.parse_args(argv)
    if not args.py_include:
        raise SetupError('give PY_INCLUDE=DIR, the target Python\'s headers: for the GPU machine, run '
                         'scripts/gpu_headers.sh as its first device call and unpack the python-headers.tar.gz '
                         'it leaves in $OUT (PY_INCLUDE=DIR/python3.12); make gpu-rehearsal uses this machine\'s')
    if not args.boost_python_src:
        raise SetupError(f'give BOOST_PYTHON_SRC=DIR, {target.BOOST_PYTHON_HELP}')
    return args


def ensure_cuda_wheels():
    missing = []
    for req in CUDA_BUILD_WHEELS:
        try:
            version(req.split('>')[0])
        except PackageNotFoundError:
            missing.append(req)
    if missing:
        log(f'installing {" ".join(missing)} into the venv (headers and libraries to link; about 1 GB)')
        pip_install(missing)


def caffe_wheel(python, cuda_arch, into):
    """The relocatable CUDA wheel of this Caffe for `python`, built (or taken from the cache) and repaired."""
    build = build_caffe.Build(build_caffe.parse_args(['--cuda', '--cuda-arch', cuda_arch]), python)
    path = relocate.relocatable_wheel(build.wheel(), into, build.numpy_major)
    problems = relocate.wheel_problems(path)
    if problems:
        raise SetupError(f'{path.name} is not relocatable: ' + '; '.join(problems))
    build_caffe.report_wheel(path, build)
    return path, build


def project_wheel(into):
    """This project as a wheel (the tree as it is, uncommitted changes included)."""
    with tempfile.TemporaryDirectory(prefix='fcn-project-') as tmp:
        tree = Path(tmp) / 'tree'  # a copy: setuptools leaves build/ and *.egg-info where it builds
        shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns('.git', '.venv', 'gpu-bundle', '.gpu-rehearsal',
                                                                  'dist', '*.caffemodel', '*.solverstate',
                                                                  'demo-output', 'out', '__pycache__'))
        try:
            run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
                 '--wheel-dir', str(into), str(tree)])
        except subprocess.CalledProcessError:
            raise SetupError('pip wheel could not build this project (see above)') from None


def extra_wheels(python, into):
    """The EXTRA_WHEELS at this venv's versions, for the target Python, from PyPI."""
    target.download_wheels([f'{name}=={version(name)}' for name in EXTRA_WHEELS], python.tag, into)


def commit():
    head = subprocess.run(['git', '-C', str(REPO), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain'], capture_output=True, text=True).stdout
    return head + ('+uncommitted' if dirty.strip() else '')


def replace_folder(new, out):
    """`new` becomes `out`; a previous bundle is removed only once the new one is in place."""
    old = out.with_name(f'.{out.name}.old')
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise SetupError('run this with the virtual environment\'s Python (make gpu-bundle does)')
    begin = time.monotonic()
    python = target.from_headers(args.py_include, args.boost_python_src)
    log(f'bundle for CPython {python.version[0]}.{python.version[1]} ({python.identity}), CUDA_ARCH={args.cuda_arch}')
    ensure_cuda_wheels()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{args.out.name}.', dir=args.out.parent))
    try:
        wheel, build = caffe_wheel(python, args.cuda_arch, staging)
        project_wheel(staging)
        extra_wheels(python, staging)
        files = {p.name: {'sha256': sha256(p), 'bytes': p.stat().st_size} for p in sorted(staging.glob('*.whl'))}
        total = sum(f['bytes'] for f in files.values())
        if total > LIMIT_MIB * 2**20:
            raise SetupError(f'the bundle would be {total / 2**20:.1f} MiB, over its {LIMIT_MIB} MiB: '
                             + ', '.join(f'{n} {f["bytes"] / 2**20:.1f} MiB' for n, f in files.items()))
        manifest = {'python': python.identity, 'tag': python.tag, 'cuda_arch': args.cuda_arch, 'caffe': wheel.name,
                    'cache_key': build.key[:12], 'commit': commit(), 'built': time.strftime('%Y-%m-%d %H:%M:%S'),
                    'files': files}
        (staging / 'bundle.json').write_text(json.dumps(manifest, indent=1) + '\n')
        replace_folder(staging, args.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f'gpu-bundle: {args.out} {total / 2**20:.1f} MiB, {len(files)} wheels for {python.tag} '
          f'(caffe {files[wheel.name]["bytes"] / 2**20:.1f} MiB, CUDA_ARCH={args.cuda_arch}); '
          f'{time.monotonic() - begin:.0f} s')


if __name__ == '__main__':
    script(main)
