"""The CUDA runtime that libcaffe links, called through ctypes: wait for the GPU, read its memory in use.

Caffe's kernels run asynchronously, so a timed step ends with cudaDeviceSynchronize; Caffe allocates its
blobs on first use and never frees them during a run, so the device memory in use after a run (cudaMemGetInfo)
less that before the net was built is the net's peak.  Going through the library Caffe itself loaded keeps the
same CUDA context, and keeps PyTorch out of the Caffe process.
"""

import ctypes
import re
from pathlib import Path


def loaded_cudart(maps=None):
    """The path of the CUDA runtime library mapped into this process (read from /proc/self/maps)."""
    maps = Path('/proc/self/maps').read_text() if maps is None else maps
    paths = sorted({line.split()[-1] for line in maps.split('\n') if re.search(r'/libcudart\.so[.0-9]*$', line)})
    if not paths:
        raise RuntimeError('no libcudart is loaded in this process: is this pycaffe a CUDA build?')
    return paths[0]


class Runtime:
    """The few CUDA runtime calls the benchmark needs, each checked."""

    def __init__(self, path=None):
        self.lib = ctypes.CDLL(path or loaded_cudart())

    def check(self, status, call):
        if status != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f'{call} failed: {self.lib.cudaGetErrorString(status).decode()} ({status})')

    def synchronize(self):
        self.check(self.lib.cudaDeviceSynchronize(), 'cudaDeviceSynchronize')

    def free_bytes(self):
        """Memory free on the current device."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self.check(self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)), 'cudaMemGetInfo')
        return free.value

    def used_mb(self):
        """Memory in use on the current device, by every process (MB)."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self.check(self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)), 'cudaMemGetInfo')
        return (total.value - free.value) / 2**20
