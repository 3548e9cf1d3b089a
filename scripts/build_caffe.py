#!/usr/bin/env python3
"""Build pycaffe from source and install it into the running virtual environment.

Run with the virtual environment's interpreter (``make caffe`` does): the build is
configured from that interpreter (headers, numpy, boost_python for its version).

Source: the pinned PyPI source distribution brocolli-caffe==9.0.2 (BVLC Caffe with
extra layers), checked against its sha256, or a BVLC-layout tree named by CAFFE_SRC.
The result is cached as a wheel in ~/.cache/fcn/caffe-<key>, keyed by the source,
the generated Makefile.config (which names the patches applied and digests their bytes),
the Python version and numpy's ABI, so another clone on the same machine installs in seconds.
The parts are in scripts/caffe_build/, the C++ patches in scripts/patches/ (GNU patch applies them).

CUDA=1 builds with CUDA (toolkit from CUDA_HOME, nvcc on PATH or /usr/local/cuda; cuBLAS and cuRAND from it or
from the PyPI wheels nvidia-cublas and nvidia-curand in the venv), patched for CUDA 13:
  CUDA_ARCH='75 90'    compute capabilities to build for (default: 7.5 to 9.0; part of the cache key);
                       one, e.g. CUDA_ARCH=90 for H100/H200, builds much faster

CPU speed options (each part of the cache key; `make bench` measures them; caffe_fcn/bench/README.md has the numbers):
  BLAS=mkl|open|blis   Intel MKL from PyPI (default; installed into the venv, about 1 GB), Debian's OpenBLAS,
                       or Debian's BLIS (all three installed by make setup-system)
  CAFFE_OPT='-O3 -march=native'   compiler flags (default; the build is for this machine's CPU; a --wheel is
                       built for any AVX2 CPU, -O3 -march=x86-64-v3, unless CAFFE_OPT is given)
  CAFFE_OPENMP=0       keep im2col/col2im, ReLU and max pooling on one thread (default: OpenMP threads)
  CAFFE_SHARE_COL=0    one im2col buffer per convolution, as Caffe has it (default: one shared buffer)
  CAFFE_COL_TILES=0    whole-image im2col for every convolution, as Caffe has it (default: large convolutions
                       on tiles of output rows; CAFFE_COL_TILE_MB, read at run time, sets the tile size)
Caffe as published: BLAS=open CAFFE_OPT=-O2 CAFFE_OPENMP=0 CAFFE_SHARE_COL=0 CAFFE_COL_TILES=0.
Every build applies the Crop fix, NaN-safe max pooling, the 2 GiB read limit and CAFFE_OPT in place of
Caffe's -O2; each option above turns on its own patches (scripts/patches/README.md lists them).

--wheel DIR (make wheel, CUDA=1 make wheel) writes the same build as a relocatable wheel for this Python instead of
installing it: auditwheel (with patchelf) copies Boost, glog, gflags, protobuf, HDF5 and the rest into caffe.libs/
and tags it manylinux_2_XX for the glibc it needs. MKL and CUDA 13's runtime, cuBLAS and cuRAND stay out: the wheel
requires their PyPI wheels (mkl, nvidia-cuda-runtime, nvidia-cublas, nvidia-curand) and finds them through rpaths
relative to site-packages, as PyTorch does. scripts/wheel_check.sh (make wheel-check) trains with it in a bare root.
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The parts, by concern, in caffe_build/ beside this script (also when a test loads it by its path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from caffe_build import config, patches, relocate, source, target, wheels  # noqa: E402
from caffe_build.common import CACHE, SetupError, log, run, script  # noqa: E402

RECIPE_VERSION = '6'  # bump when the build recipe changes, to invalidate caches
DEFAULT_BLAS = 'mkl'
DEFAULT_OPT = '-O3 -march=native'  # built where it runs; -march is in the cache key
# A wheel runs elsewhere: any x86-64 CPU with AVX2 (Haswell, 2013, and later: every GPU host of today). Code for
# this machine's CPU alone would die of SIGILL on an older one.
DEFAULT_WHEEL_OPT = '-O3 -march=x86-64-v3'
SPEED_FLAGS = [  # flag, environment variable, what it does; scripts/patches/ holds the patches each turns on
    ('--openmp', 'CAFFE_OPENMP', 'im2col/col2im, ReLU, max pooling on OpenMP threads'),
    ('--share-col', 'CAFFE_SHARE_COL', 'one im2col buffer for all convolutions'),
    ('--col-tiles', 'CAFFE_COL_TILES', 'large convolutions on cache-sized tiles of output rows'),
]


def build(src, makefile_config, options):
    """Patch, configure and compile the tree: libcaffe.so, _caffe.so and a fresh caffe_pb2.py."""
    patches.patch_source(src, options)
    (src / 'Makefile.config').write_text(makefile_config)
    jobs = str(os.cpu_count() or 2)
    try:
        run(['make', f'-j{jobs}', 'lib', 'py'], cwd=src)
    except subprocess.CalledProcessError:
        raise SetupError(f'the Caffe build failed in {src}; the compiler output above says where. '
                         'Missing headers usually mean a missing Debian package: run make setup-system.') from None
    # The shipped caffe_pb2.py is stale (fails under current protobuf): always regenerate.
    run(['protoc', '--proto_path=src/caffe/proto', '--python_out=python/caffe/proto',
         'src/caffe/proto/caffe.proto'], cwd=src)


def install(wheel):
    run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--force-reinstall', str(wheel)])
    check = 'import caffe, caffe.coord_map; print("caffe", caffe.__version__, "from", caffe.__file__)'
    if subprocess.run([sys.executable, '-c', check], cwd='/').returncode:
        raise SetupError(f'pycaffe was installed from {wheel} but does not import (see above); '
                         'make clean && make setup rebuilds the environment.')


def installed_key():
    try:
        from importlib.metadata import version
        return version('caffe').partition('+fcn.')[2]
    except Exception:
        return None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--src', default=os.environ.get('CAFFE_SRC') or None,
                    help='a BVLC-layout Caffe tree to build instead of the pinned sdist (env CAFFE_SRC)')
    ap.add_argument('--cuda', action='store_true', default=os.environ.get('CUDA', '0') not in ('', '0'),
                    help='build with CUDA (env CUDA=1)')
    ap.add_argument('--cuda-arch', default=os.environ.get('CUDA_ARCH') or config.CUDA_ARCHS,
                    help='with CUDA: the GPUs\' compute capabilities to build for (env CUDA_ARCH; default '
                         '"%(default)s"); one, e.g. CUDA_ARCH=90 for an H100, builds much faster')
    ap.add_argument('--blas', default=os.environ.get('BLAS') or None, choices=config.BLAS_CHOICES,
                    help=f'the BLAS to link (env BLAS; default {DEFAULT_BLAS}, with CUDA open)')
    ap.add_argument('--opt', default=os.environ.get('CAFFE_OPT') or None,
                    help=f"compiler optimization flags (env CAFFE_OPT; default '{DEFAULT_OPT}', for --wheel "
                         f"'{DEFAULT_WHEEL_OPT}', with CUDA -O2: nvcc gets them too)")
    for flag, env, what in SPEED_FLAGS:
        ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=os.environ.get(env, '1') not in ('', '0'),
                        help=f'{what} (env {env}=0 turns it off; default on)')
    ap.add_argument('--force', action='store_true', help='rebuild even when a cached build exists')
    ap.add_argument('--wheel', metavar='DIR', type=Path,
                    help='instead of installing into the venv, write a relocatable wheel into DIR (make wheel: '
                         'dist/) and print its path: the build of these options (cached or built now), repaired '
                         'by auditwheel: its libraries bundled but glibc\'s, MKL\'s and CUDA\'s, which it '
                         'requires from PyPI (mkl, nvidia-cuda-runtime, nvidia-cublas, nvidia-curand)')
    return ap.parse_args(argv)


class Build:
    """What to build: the options after their defaults, the Makefile.config and the cache key."""

    def __init__(self, args, python=None):
        self.python = python or target.host()  # the Python it is for (make gpu-bundle: another one's headers)
        self.cuda = config.find_cuda() if args.cuda else None
        # CUDA builds keep the configuration they were tested with; their speed is on the GPU.
        self.blas = args.blas or ('open' if self.cuda else DEFAULT_BLAS)
        self.opt = args.opt or ('-O2' if self.cuda else DEFAULT_WHEEL_OPT if args.wheel else DEFAULT_OPT)
        self.user_tree = Path(args.src).resolve() if args.src else None
        if self.user_tree:
            source.check_tree(self.user_tree)
        source_id = 'tree:' + source.tree_digest(self.user_tree) if self.user_tree else 'sdist:' + source.SDIST_SHA256
        self.numpy_major = self.python.numpy_major
        options = {name for name in (flag[2:].replace('-', '_') for flag, _, _ in SPEED_FLAGS) if getattr(args, name)}
        self.options = options | ({'cuda'} if self.cuda else set())
        if self.blas == 'mkl':
            config.ensure_mkl()
        self.config = config.makefile_config(self.cuda, self.blas, self.opt, self.options, args.cuda_arch,
                                             self.python)
        # The venv's path is in the config (numpy's headers) but not in the build: keep it out of the key.
        portable_config = self.config.replace(sys.prefix, '<venv>')
        self.key = hashlib.sha256('\n'.join([RECIPE_VERSION, source_id, portable_config, self.python.identity,
                                             str(self.numpy_major)]).encode()).hexdigest()

    def cached_wheel(self):
        return next((CACHE / f'caffe-{self.key[:16]}').glob('*.whl'), None)

    def wheel(self, force=False):
        """The cached wheel of this build, built first when the cache lacks it (or force)."""
        wheel = self.cached_wheel()
        if wheel is not None and not force:
            log(f'using the cached build {wheel}')
            return wheel
        log(f'building {"CUDA" if self.cuda else "CPU-only"} Caffe with BLAS={self.blas}, {self.opt}'
            f'{"".join(", " + name for name in sorted(self.options))}'
            f' (cache key {self.key[:12]}); this takes a few minutes')
        with tempfile.TemporaryDirectory(prefix='fcn-caffe-') as tmp:
            if self.user_tree:  # build a copy: the user's tree is left as it is
                src = Path(tmp) / 'caffe'
                shutil.copytree(self.user_tree, src,
                                ignore=shutil.ignore_patterns('.git', '.build_*', '.temp_*', 'build'))
            else:
                src = source.unpack(source.fetch_sdist(), tmp)
            wheels.ensure_tools('wheel')  # before the build, which it would otherwise throw away
            build(src, self.config, self.options)
            return wheels.make_wheel(src, CACHE / f'caffe-{self.key[:16]}', self.key, self.python.tag)


def report_wheel(path, build):
    """What the relocatable wheel holds and needs, for the log."""
    files = wheels.read_wheel(path)
    bundled = sorted(n.split('/', 1)[1] for n in files if n.startswith('caffe.libs/'))
    (metadata,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    requires = [line.split(': ', 1)[1] for line in files[metadata].decode().splitlines()
                if line.startswith('Requires-Dist: ')]
    log(f'{path.name}: {path.stat().st_size / 1e6:.1f} MB, {len(bundled)} libraries bundled: '
        + ', '.join(re.sub(r'-[0-9a-f]{8}(?=\.)', '', n) for n in bundled))
    log('requires ' + ', '.join(requires))
    if '-march=native' in build.opt:
        log(f'note: compiled with -march=native ({config.native_arch()}): it runs only on CPUs with this one\'s '
            f"instruction set; without CAFFE_OPT, make wheel builds for any AVX2 CPU ({DEFAULT_WHEEL_OPT})")


def main(argv=None):
    args = parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise SetupError('run this with the virtual environment\'s Python (make caffe does)')
    build = Build(args)
    if args.wheel:
        path = relocate.relocatable_wheel(build.wheel(args.force), args.wheel.resolve(), build.numpy_major)
        problems = relocate.wheel_problems(path)
        if problems:
            raise SetupError(f'{path} is not relocatable: ' + '; '.join(problems))
        report_wheel(path, build)
        print(path)  # the last line: for scripts (wheel_check.sh)
        return
    if installed_key() == build.key[:12] and not args.force:
        log(f'up to date (cache key {build.key[:12]})')
        return
    install(build.wheel(args.force))


if __name__ == '__main__':
    script(main)
