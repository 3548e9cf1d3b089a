"""Any image size within memory: the peak memory of a forward pass is computed from the blob sizes before any
work, and an image whose pass would not fit is segmented in overlapping tiles. Each tile reaches `context`
pixels past its part of the output (half the outputs' receptive field, on the grid of the net's coarsest
stride, so every layer samples the image where the whole-image pass does): its part is then the whole image's
scores, up to the order of float sums."""
import argparse
import math
import os

import numpy as np

from caffe_fcn import cli
from netgen import geometry
from netgen.geometry import peak_memory

UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}


def memory_size(text):
    """--max-memory: a whole number of bytes, at least one, with a K, M, G or T suffix (powers of 1024)."""
    number, unit = text.strip().upper().rstrip('B'), ''
    if number and number[-1] in UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = float(number) * UNITS[unit]
    except ValueError:
        value = 0
    if not (math.isfinite(value) and value >= 1):  # 0.5 would be 0 bytes, which reads as no limit
        raise argparse.ArgumentTypeError(f'a memory size is a number of bytes, at least 1, with K, M or G, such as 8G '
                                         f'or 512M; got {text!r}')
    return int(value)


def free_memory(gpu=False):
    """Bytes free now: in RAM, or on the GPU Caffe runs on (read through the CUDA runtime Caffe loaded)."""
    if gpu:
        from caffe_fcn.bench.cuda import Runtime

        return Runtime().free_bytes()
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


INT_MAX = 2 ** 31 - 1  # Caffe aborts on a blob of more values


def fits(proto, h, w, budget, gpu=False):
    return peak_memory(proto, h, w, gpu) <= budget and \
        max(geometry.blob_sizes(proto, h, w).values()) <= INT_MAX


def plan(proto, h, w, budget, gpu=False):
    """(tile, context): the side of the part of the output each tile gives (the whole image when its pass fits
    in `budget` bytes, every blob within Caffe's limit) and the context around it; a BadInput naming the minimum
    where not even the smallest tile fits."""
    stride, margin = geometry.context(proto)
    if fits(proto, h, w, budget, gpu):
        return max(h, w), margin

    def fits_tiles(k):  # tiles of k strides, with their context
        return fits(proto, min(h, k * stride + 2 * margin), min(w, k * stride + 2 * margin), budget, gpu)
    if not fits_tiles(1):
        need = peak_memory(proto, min(h, stride + 2 * margin), min(w, stride + 2 * margin), gpu)
        raise cli.BadInput(f'--max-memory {budget >> 20} MB is below what one tile needs: {math.ceil(need / 2 ** 20)} '
                           f'MB ({stride}-pixel tiles with {margin} pixels of context each side); allow more')
    low, high = 1, max(h, w) // stride + 1
    while low < high:  # the largest k that fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits_tiles(mid) else (low, mid - 1)
    return low * stride, margin


def windows(h, w, tile, margin):
    """((y0, y1, x0, x1) of a part of the output, (ya, yb, xa, xb) of the input the tile reads) for every tile."""
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            part = (y0, min(y0 + tile, h), x0, min(x0 + tile, w))
            yield part, (max(0, y0 - margin), min(h, part[1] + margin), max(0, x0 - margin),
                         min(w, part[3] + margin))


def tiled(scores, inputs, tile, margin):
    """(part, {output: C x h x w scores of that part}) for every tile of the inputs {top: C x H x W}, from
    `scores` (an engine's: {top: C x H x W} -> {output: C x H x W})."""
    h, w = next(iter(inputs.values())).shape[1:]
    for part, (ya, yb, xa, xb) in windows(h, w, tile, margin):
        got = scores({top: np.ascontiguousarray(a[:, ya:yb, xa:xb]) for top, a in inputs.items()})
        y0, y1, x0, x1 = part
        yield part, {out: s[:, y0 - ya:y1 - ya, x0 - xa:x1 - xa] for out, s in got.items()}


def softmax(scores):
    """Class probabilities of C x h x w scores (over the classes, computed in float32)."""
    e = np.exp(scores - scores.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)
