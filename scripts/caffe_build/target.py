"""The Python a build is for: the running interpreter (make caffe, make wheel), or another one known only by its
headers (make gpu-bundle: the lent GPU machine's Python 3.12), with a Boost.Python compiled here for it and numpy's
headers from its PyPI wheel."""

import hashlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import patches
from .common import CACHE, SetupError, log, run

BOOST_PYTHON_TAG = 'boost-1.74.0'  # Debian 12's Boost headers, which the rest of the build compiles against
SOURCE_GLOBS = ('*.cpp', 'converter/*.cpp', 'object/*.cpp')  # the library's sources: the Jamfile's, all but numpy/
BOOST_PYTHON_HELP = (f'a checkout of boostorg/python at tag {BOOST_PYTHON_TAG} (the version of Debian 12\'s Boost '
                     f'headers), e.g. git clone --depth 1 --branch {BOOST_PYTHON_TAG} '
                     'https://github.com/boostorg/python DIR')


@dataclass(frozen=True)
class Target:
    version: tuple  # (major, minor)
    include_dirs: tuple  # Python's headers and numpy's
    lib_dirs: tuple  # where PYTHON_LIBRARIES are, at link time and (an rpath) at run time
    libraries: str  # Caffe's PYTHON_LIBRARIES
    numpy_major: int  # the C ABI the build is for (the wheel's numpy requirement)
    identity: str  # in the cache key: what else distinguishes one target's build from another's

    @property
    def tag(self):
        return f'cp{self.version[0]}{self.version[1]}'


def host():
    """The running interpreter, as make caffe has always built for it (Debian's boost_python, libpython)."""
    import numpy
    major, minor = sys.version_info[:2]
    return Target((major, minor), (sysconfig.get_paths()['include'], numpy.get_include()),
                  (sysconfig.get_config_var('LIBDIR'),), f'boost_python{major}{minor} python{major}.{minor}',
                  int(numpy.__version__.split('.')[0]), sys.version)


def header_version(py_include):
    """(major, minor, 'X.Y.Z') of the Python whose headers are in py_include, from its patchlevel.h."""
    patchlevel = Path(py_include) / 'patchlevel.h'
    if not (Path(py_include) / 'Python.h').is_file() or not patchlevel.is_file():
        raise SetupError(f'PY_INCLUDE={py_include} holds no Python headers (Python.h, patchlevel.h). For the GPU '
                         "machine's Python, its first device call brings them: run scripts/gpu_headers.sh there, "
                         'then tar -xzf python-headers.tar.gz -C DIR and give PY_INCLUDE=DIR/python3.12')
    text = patchlevel.read_text(errors='replace')
    found = dict(re.findall(r'#define\s+(PY_MAJOR_VERSION|PY_MINOR_VERSION|PY_VERSION)\s+"?([\w.+]+)"?', text))
    if not {'PY_MAJOR_VERSION', 'PY_MINOR_VERSION', 'PY_VERSION'} <= set(found):
        raise SetupError(f'{patchlevel} does not define the Python version')
    return int(found['PY_MAJOR_VERSION']), int(found['PY_MINOR_VERSION']), found['PY_VERSION']


def check_compiles(include_dirs, what):
    """Python.h (with the pyconfig.h it includes) compiles with these include folders, or SetupError."""
    probe = subprocess.run(['g++', '-fsyntax-only', '-x', 'c++', '-', *(f'-I{d}' for d in include_dirs)],
                           input='#include <Python.h>\n', capture_output=True, text=True)
    if probe.returncode:
        first = next((line for line in probe.stderr.splitlines() if 'error' in line), probe.stderr.strip())
        raise SetupError(f'{what}: #include <Python.h> does not compile: {first}')


PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64')  # wheels for the target


def download_wheels(pins, tag, dest):
    """These pinned wheels for CPython `tag` (cp312) on x86-64 Linux from PyPI into dest, whatever this Python is."""
    platforms = [arg for p in PLATFORMS for arg in ('--platform', p)]
    try:
        run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--only-binary=:all:', '--dest',
             str(dest), '--python-version', tag[2:], '--implementation', 'cp', '--abi', tag, *platforms, *pins])
    except subprocess.CalledProcessError:
        raise SetupError(f'pip could not download {" ".join(pins)} for {tag}: is PyPI reachable?') from None


def numpy_headers(version, tag):
    """numpy's C headers from its PyPI wheel of `version` for CPython `tag` (cp312), unpacked once into the cache."""
    dest = CACHE / 'numpy-headers' / f'{version}-{tag}'
    if (dest / 'numpy' / 'arrayobject.h').is_file():
        return dest
    wheels = CACHE / 'numpy-headers' / 'wheels'
    log(f'downloading numpy {version} for {tag} from PyPI (its headers)')
    download_wheels([f'numpy=={version}'], tag, wheels)
    wheel = next(iter(sorted(wheels.glob(f'numpy-{version}-{tag}-*.whl'))), None)
    if wheel is None:
        raise SetupError(f'no numpy {version} wheel for {tag} in {wheels}')
    tmp = dest.with_name(dest.name + '.part')
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted unpacking's
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            inner = re.match(r'numpy/(?:_core|core)/include/(numpy/.*)', name)
            if inner and not name.endswith('/'):
                (tmp / inner[1]).parent.mkdir(parents=True, exist_ok=True)
                (tmp / inner[1]).write_bytes(z.read(name))
    if not (tmp / 'numpy' / 'arrayobject.h').is_file():
        raise SetupError(f'{wheel.name} holds no numpy/arrayobject.h')
    tmp.replace(dest)
    return dest


def library_sources(root):
    """Boost.Python's library sources under root/src (the Jamfile's list: all but numpy/)."""
    return sorted(p for pattern in SOURCE_GLOBS for p in (Path(root) / 'src').glob(pattern))


def cached_headers(py_include, version):
    """A copy of the headers in the cache, in a folder named by their contents, so a build's configuration (its
    cache key) does not depend on where they were unpacked: (the copy's include folder, the folder above). Debian
    and Ubuntu put in the include folder a pyconfig.h that includes <x86_64-linux-gnu/python3.X/pyconfig.h>, which
    lies under the folder above (scripts/gpu_headers.sh lays them out so): it is copied too."""
    own = Path(py_include).resolve()
    name = f'python{version[0]}.{version[1]}'
    files = {Path(name) / p.relative_to(own): p for p in sorted(own.rglob('*')) if p.is_file()}
    files |= {p.relative_to(own.parent): p for p in sorted(own.parent.glob(f'*/{name}/pyconfig.h'))}
    digest = hashlib.sha256()
    for rel, path in files.items():
        digest.update(str(rel).encode() + b'\0' + path.read_bytes() + b'\0')
    dest = CACHE / 'python-headers' / digest.hexdigest()[:16]
    if not dest.exists():
        part = dest.with_name(dest.name + '.part')
        shutil.rmtree(part, ignore_errors=True)
        for rel, path in files.items():
            (part / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, part / rel)
        part.replace(dest)
    return str(dest / name), str(dest)


def check_boost_python(src):
    src = Path(src)
    if not (src / 'src' / 'module.cpp').is_file() or not (src / 'include' / 'boost' / 'python.hpp').is_file():
        raise SetupError(f'BOOST_PYTHON_SRC={src} is not a boostorg/python tree (src/module.cpp, '
                         f'include/boost/python.hpp): give {BOOST_PYTHON_HELP}')
    return src


def patched_boost_python(src, into):
    """A copy of the tree's src/ with scripts/patches/boost-python-py311.patch applied; the copy's root."""
    shutil.copytree(check_boost_python(src) / 'src', Path(into) / 'src')
    done = patches.run_patch(into, patches.BOOST_PYTHON, dry_run=False)
    if done.returncode:
        said = '; '.join(line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip())
        raise SetupError(f'cannot apply scripts/patches/{patches.BOOST_PYTHON}.patch to BOOST_PYTHON_SRC={src}: '
                         f'{said}. Give {BOOST_PYTHON_HELP}')
    return Path(into)


def build_boost_python(src, py_dirs, version):
    """libboost_python3XY.so compiled from the tree (patched) against those Python headers and Debian's Boost
    headers, once per (sources, headers) into the cache; its folder. Never linked to libpython: the interpreter
    provides it."""
    name = f'boost_python{version[0]}{version[1]}'
    flags = ['-O2', '-fPIC', '-DBOOST_PYTHON_SOURCE', '-DBOOST_PYTHON_DYNAMIC_LIB', '-DNDEBUG', '-w',
             *(f'-I{d}' for d in py_dirs)]  # boost/ from /usr/include: Debian's 1.74, as Caffe sees it
    with tempfile.TemporaryDirectory(prefix='fcn-boost-python-') as tmp:
        tree = patched_boost_python(src, Path(tmp) / 'tree')
        sources = library_sources(tree)
        digest = hashlib.sha256('\n'.join(flags).encode())  # the headers' folder is named by their contents
        for path in sources:
            digest.update(path.read_bytes())
        dest = CACHE / f'boost-python-{version[0]}{version[1]}-{digest.hexdigest()[:16]}'
        if (dest / f'lib{name}.so').exists():
            return dest
        log(f'compiling Boost.Python ({len(sources)} files) for Python {version[0]}.{version[1]} from {src}')
        soname = f'lib{name}.so.1.74.0'
        objects = [Path(tmp) / (s.relative_to(tree / 'src').as_posix().replace('/', '_') + '.o') for s in sources]
        part = dest.with_name(dest.name + '.part')
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        steps = [['g++', *flags, '-c', str(source), '-o', str(obj)]
                 for source, obj in zip(sources, objects, strict=True)]
        for cmd in steps + [['g++', '-shared', f'-Wl,-soname,{soname}', '-o', str(part / soname), *map(str, objects)]]:
            done = subprocess.run(cmd, capture_output=True, text=True)  # Boost's deprecation notes bury the rest
            if done.returncode:
                print(done.stderr[-4000:], file=sys.stderr)
                shutil.rmtree(part, ignore_errors=True)
                raise SetupError(f'compiling Boost.Python from {src} failed (above); give {BOOST_PYTHON_HELP}')
    (part / f'lib{name}.so').symlink_to(soname)
    part.replace(dest)
    return dest


def from_headers(py_include, boost_python_src):
    """The Python whose headers are in py_include, with its Boost.Python and numpy headers made here."""
    import numpy
    major, minor, full = header_version(py_include)
    check_boost_python(boost_python_src)  # before any download or build
    py_dirs = cached_headers(py_include, (major, minor))
    check_compiles(py_dirs, f'PY_INCLUDE={py_include}')
    tag = f'cp{major}{minor}'
    numpy_dir = numpy_headers(numpy.__version__, tag)  # the numpy this venv builds with, for that Python
    boost_dir = build_boost_python(boost_python_src, py_dirs, (major, minor))
    include_dirs = (*py_dirs, str(numpy_dir))
    identity = f'Python {full} headers, numpy {numpy.__version__}, {boost_dir.name}'
    return Target((major, minor), include_dirs, (str(boost_dir),), f'boost_python{major}{minor}',
                  int(numpy.__version__.split('.')[0]), identity)
