"""Makefile.config: the BLAS (MKL from PyPI, Debian's OpenBLAS or BLIS), CUDA, the compiler flags, the rpaths."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from . import patches, target
from .common import CACHE, SetupError, log, pip_install

BLAS_CHOICES = ('open', 'mkl', 'blis')
CUDA_ARCHS = '75 80 86 89 90'  # compute capabilities; CUDA 13's nvcc rejects anything below 7.5


def find_cuda():
    """nvcc's root and the include/lib dirs of cuBLAS and cuRAND, or SetupError naming what is missing."""
    # Caffe's Makefile wants the toolkit's root (bin/nvcc, include/cuda_runtime.h, lib64/libcudart.so);
    # nvcc on PATH may be a wrapper script outside it (/usr/local/bin/nvcc), so look for the whole toolkit.
    on_path = shutil.which('nvcc')
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH'),
                  on_path and Path(on_path).resolve().parent.parent, '/usr/local/cuda']
    roots = [Path(c) for c in candidates if c and (Path(c) / 'bin' / 'nvcc').exists()
             and (Path(c) / 'include' / 'cuda_runtime.h').exists()][:1]
    site = Path(sysconfig.get_paths()['purelib'])
    include_dirs, lib_dirs, missing = [], [], []
    if not roots:
        missing.append('the CUDA toolkit (bin/nvcc, include/cuda_runtime.h): install it, or set CUDA_HOME to its root')
    for name, header, lib in (('cuBLAS', 'cublas_v2.h', 'cublas'), ('cuRAND', 'curand.h', 'curand')):
        candidates = roots + [site / 'nvidia' / lib, site / 'nvidia' / 'cu13', site / 'nvidia' / 'cu12']
        inc = next((c / 'include' for c in candidates if (c / 'include' / header).exists()), None)
        libdir = next((d for c in candidates for d in (c / 'lib', c / 'lib64')
                       if any(d.glob(f'lib{lib}.so*'))), None)
        if inc is None or libdir is None:
            missing.append(f'{name} ({header}, lib{lib}.so): e.g. .venv/bin/pip install nvidia-{lib}')
            continue
        include_dirs.append(inc)
        lib_dirs.append(libdir)
    if missing:
        raise SetupError('CUDA=1 but these were not found:\n  ' + '\n  '.join(missing))
    return roots[0], sorted(set(include_dirs)), sorted(set(lib_dirs))


def cuda_gencode(archs):
    """nvcc -gencode flags for compute capabilities like '75 86' or '7.5,8.6': machine code for each,
    plus PTX of the newest so later GPUs can JIT it."""
    ccs = [cc.replace('.', '') for cc in archs.replace(',', ' ').split()]
    if not ccs or not all(cc.isdigit() and int(cc) >= 75 for cc in ccs):
        raise SetupError(f'CUDA_ARCH={archs!r}: give compute capabilities 7.5 or newer, e.g. CUDA_ARCH="75 90" '
                         '(CUDA 13 dropped the older ones)')
    ccs = sorted(set(ccs), key=int)
    return ' '.join(f'-gencode arch=compute_{cc},code=sm_{cc}' for cc in ccs) \
        + f' -gencode arch=compute_{ccs[-1]},code=compute_{ccs[-1]}'


def ensure_unversioned(lib_dirs, libs, into):
    """The PyPI CUDA wheels ship only libX.so.N; the linker wants libX.so."""
    into.mkdir(parents=True, exist_ok=True)
    for d in lib_dirs:
        for lib in libs:
            versioned = sorted(d.glob(f'lib{lib}.so.*'))
            if versioned and not (d / f'lib{lib}.so').exists():
                link = into / f'lib{lib}.so'
                link.unlink(missing_ok=True)
                link.symlink_to(versioned[0])
    return into


def cuda_rpath(lib_dir):
    """Where libcaffe.so finds a CUDA library at run time: the PyPI wheels' libraries relative to the caffe
    package (site-packages/nvidia/...), so the cached wheel works in any venv that has them; others as they are."""
    site = Path(sysconfig.get_paths()['purelib'])
    if lib_dir.is_relative_to(site):
        return f'\\$$ORIGIN/../{lib_dir.relative_to(site)}'
    return str(lib_dir)


def native_arch():
    """What -march=native means on this machine (part of the cache key: the binary is not portable)."""
    out = subprocess.run(['gcc', '-march=native', '-Q', '--help=target'], capture_output=True, text=True).stdout
    return next((line.split()[-1] for line in out.splitlines() if line.strip().startswith('-march=')), 'unknown')


MKL_VERSION = '2026.2.0'
MKL_PACKAGES = [f'mkl-devel=={MKL_VERSION}', f'intel-openmp=={MKL_VERSION}']  # headers, libmkl_rt, libiomp5


def ensure_mkl():
    """Intel MKL comes from PyPI into the venv (about 1 GB): installed here when the venv lacks it."""
    prefix = Path(sys.prefix)
    if (prefix / 'include' / 'mkl.h').exists() and (prefix / 'lib' / 'libiomp5.so').exists():
        return
    log('BLAS=mkl: installing Intel MKL from PyPI into the venv (BLAS=open uses Debian\'s OpenBLAS instead)')
    pip_install(MKL_PACKAGES, ' BLAS=open builds with Debian\'s OpenBLAS instead')


def blas_config(blas, multiarch, openmp):
    """Makefile.config lines and extra rpaths for the chosen BLAS, or SetupError naming what is missing."""
    if blas == 'open' and openmp:
        # OpenBLAS's own threads and OpenMP's, both spinning between calls, fight over the cores (a tiled
        # FCN-8s iteration took twice as long): Debian's OpenMP build of OpenBLAS shares one thread pool.
        inc, lib = Path(f'/usr/include/{multiarch}/openblas-openmp'), Path(f'/usr/lib/{multiarch}/openblas-openmp')
        if not (inc / 'cblas.h').exists() or not (lib / 'libopenblas.so').exists():
            raise SetupError(f'BLAS=open with OpenMP needs the OpenMP build of OpenBLAS ({inc}/cblas.h): apt-get '
                             'install libopenblas-openmp-dev (make setup-system does), or build with CAFFE_OPENMP=0')
        lines = ['BLAS := open', f'BLAS_INCLUDE := {inc}', f'BLAS_LIB := {lib}']
        return lines + ['CXXFLAGS += -fopenmp', 'LINKFLAGS += -fopenmp'], [str(lib)]
    if blas == 'open':
        # Named explicitly: libopenblas.so on the default path is whichever variant Debian's alternatives chose.
        inc, lib = Path(f'/usr/include/{multiarch}/openblas-pthread'), Path(f'/usr/lib/{multiarch}/openblas-pthread')
        if not (inc / 'cblas.h').exists() or not (lib / 'libopenblas.so').exists():
            raise SetupError(f'BLAS=open needs the pthreads build of OpenBLAS ({inc}/cblas.h): '
                             'apt-get install libopenblas-pthread-dev (make setup-system does)')
        return ['BLAS := open', f'BLAS_INCLUDE := {inc}', f'BLAS_LIB := {lib}'], [str(lib)]
    if blas == 'mkl':
        prefix = Path(sys.prefix)
        libs = sorted((prefix / 'lib').glob('libmkl_rt.so*'))
        if not (prefix / 'include' / 'mkl.h').exists() or not libs:
            raise SetupError(f'BLAS=mkl needs Intel MKL in this venv ({prefix}/include/mkl.h and '
                             f'{prefix}/lib/libmkl_rt.so*): {sys.executable} -m pip install mkl-devel')
        links = ensure_unversioned([prefix / 'lib'], ['mkl_rt'], CACHE / 'mkl-links')
        lines = ['BLAS := mkl', f'BLAS_INCLUDE := {prefix / "include"}', f'BLAS_LIB := {links} {prefix / "lib"}']
        # One OpenMP runtime: Caffe's own loops use MKL's (Intel's libiomp5 implements the GNU OpenMP ABI),
        # so the two never compete for the cores.
        if openmp and not (prefix / 'lib' / 'libiomp5.so').exists():
            raise SetupError(f'CAFFE_OPENMP=1 with BLAS=mkl needs {prefix}/lib/libiomp5.so: pip install intel-openmp')
        # _caffe.so sits in <venv>/lib/pythonX.Y/site-packages/caffe: find the venv's MKL relative to it,
        # so a cached build works in any venv that has MKL.
        return lines + (['CXXFLAGS += -fopenmp', 'LIBRARIES += iomp5'] if openmp else []), ['\\$$ORIGIN/../../..']
    if blas == 'blis':
        inc, lib = Path(f'/usr/include/{multiarch}/blis-pthread'), Path(f'/usr/lib/{multiarch}/blis-pthread')
        if not (inc / 'cblas.h').exists() or not (lib / 'libblis.so').exists():
            raise SetupError(f'BLAS=blis needs BLIS ({inc}/cblas.h, {lib}/libblis.so): '
                             'apt-get install libblis-pthread-dev (make setup-system does)')
        # Caffe's Makefile knows no BLIS: its CBLAS interface is linked like any other library.
        lines = ['BLAS := blis', f'BLAS_INCLUDE := {inc}', f'BLAS_LIB := {lib}', 'LIBRARIES += blis']
        return lines + (['CXXFLAGS += -fopenmp', 'LINKFLAGS += -fopenmp'] if openmp else []), [str(lib)]
    raise SetupError(f'BLAS={blas!r} is not one of {", ".join(BLAS_CHOICES)}')


def makefile_config(cuda, blas='open', opt='-O2', options=(), cuda_archs=CUDA_ARCHS, python=None):
    """The Makefile.config of a build for `python` (a caffe_build.target.Target; default: this interpreter)."""
    python = python or target.host()
    multiarch = sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'
    include_dirs = [*python.include_dirs, '/usr/local/include', '/usr/include/hdf5/serial']
    lib_dirs = [*python.lib_dirs, '/usr/local/lib', '/usr/lib', f'/usr/lib/{multiarch}/hdf5/serial']
    rpaths = ['\\$$ORIGIN', *python.lib_dirs]
    blas_lines, blas_rpaths = blas_config(blas, multiarch, 'openmp' in options)
    rpaths += blas_rpaths
    lines = [
        '# generated by scripts/build_caffe.py',
        'USE_CUDNN := 0', 'USE_OPENCV := 0', 'USE_LEVELDB := 0', 'USE_LMDB := 0',
        *blas_lines,
        f'PYTHON_LIBRARIES := {python.libraries}',
        'WITH_PYTHON_LAYER := 1',
        'Q ?= @',
    ]
    if cuda:
        root, cu_inc, cu_lib = cuda
        links = ensure_unversioned(cu_lib, ['cublas', 'curand', 'cublasLt'], CACHE / 'cuda-links')  # link time only
        include_dirs += [str(p) for p in cu_inc]
        lib_dirs += [str(p) for p in cu_lib + [links]]
        rpaths += [cuda_rpath(p) for p in cu_lib + [root / 'lib64']]
        lines += [f'CUDA_DIR := {root}', f'CUDA_ARCH := {cuda_gencode(cuda_archs)}']
    else:
        lines.insert(1, 'CPU_ONLY := 1')
    lines += [
        f'INCLUDE_DIRS := {" ".join(include_dirs)}',
        f'LIBRARY_DIRS := {" ".join(lib_dirs)}',
        # _caffe.so finds libcaffe.so beside it: no LD_LIBRARY_PATH needed.
        'LINKFLAGS += ' + ' '.join(f'-Wl,-rpath,{r}' for r in rpaths),
        f'COMMON_FLAGS += {opt}',
        'COMMON_FLAGS += -w  # thousands of Boost deprecation warnings would bury real errors',
    ]
    if '-march=native' in opt:
        lines.append(f'# -march=native is -march={native_arch()} here')
    lines.append(patches.summary(options))  # the patches' bytes are in the cache key: editing one rebuilds
    return '\n'.join(lines) + '\n'
