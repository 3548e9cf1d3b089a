"""The sgemm ceiling: the best single-precision GEMM rate a BLAS reaches on this machine.

Caffe's convolutions are im2col + sgemm, so the sgemm rate of the BLAS that libcaffe links
is the most the whole net can reach.  The BLAS is called through ctypes (cblas_sgemm), so any
library that exports the CBLAS interface can be measured without building anything.
"""

import ctypes
import re
import statistics
import time
from pathlib import Path

import numpy as np

ROW_MAJOR, NO_TRANS = 101, 111
# Square sizes and a conv-like shape (M = out channels, K = in channels * 9, N = pixels).
SHAPES = ((2048, 2048, 2048), (4096, 4096, 4096), (256, 122 * 122, 2304))


def loaded_blas(owner='libcaffe'):
    """The path of the CBLAS library that the loaded `owner` links, read from /proc/self/maps."""
    maps = Path('/proc/self/maps').read_text().split('\n')
    paths = {line.split()[-1] for line in maps if line.count('/') and '.so' in line}
    if not any(owner in p for p in paths):
        raise RuntimeError(f'{owner} is not loaded in this process: import it first')
    blas = sorted(p for p in paths if re.search(r'lib(openblas|mkl_rt|blis|blas)[^/]*\.so', p)
                  and 'numpy' not in p and 'scipy_openblas' not in p)
    if not blas:
        raise RuntimeError(f'no BLAS library found beside {owner} in /proc/self/maps')
    return blas[0]


def cblas_sgemm(lib_path):
    """A Python callable sgemm(a, b, c) for C = A @ B, row-major float32, from the CBLAS in `lib_path`."""
    fn = ctypes.CDLL(lib_path).cblas_sgemm
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    fn.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    fn.restype = None

    def sgemm(a, b, c):
        (m, k), n = a.shape, b.shape[1]
        fn(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0, a.ctypes.data, k, b.ctypes.data, n, 0.0, c.ctypes.data, n)
    return sgemm


def numpy_sgemm(a, b, c):
    np.matmul(a, b, out=c)


def gflops(sgemm, shape, repeat=5, warmup=1):
    """Median GFLOP/s of `sgemm` on an (m, k) x (k, n) product."""
    m, n, k = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    times = []
    for i in range(warmup + repeat):
        t = time.perf_counter()
        sgemm(a, b, c)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    if not np.allclose(c[:4, :4], a[:4] @ b[:, :4], rtol=1e-3, atol=1e-2):
        raise RuntimeError(f'sgemm gave a wrong product for shape {shape}')
    return 2.0 * m * n * k / statistics.median(times) / 1e9


def ceiling(sgemm, shapes=SHAPES, repeat=5):
    """{'MxNxK': GFLOP/s} for each shape, and 'best'."""
    rates = {'x'.join(map(str, s)): round(gflops(sgemm, s, repeat), 1) for s in shapes}
    return {'by_shape': rates, 'best': max(rates.values())}
