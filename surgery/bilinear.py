"""Bilinear upsampling kernels for the Deconvolution layers (fixed, lr_mult 0, filled before training)."""
import numbers

import numpy as np

from .weights import WeightsError


def upsample_filt(size):
    """A (size, size) bilinear kernel: upsampling by (size + 1) // 2, odd or even size.

    The kernel is the outer product of a 1D tent centred on the kernel; with stride (size + 1) // 2 the
    Deconvolution interpolates linearly between neighbouring inputs along each axis.
    """
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
        raise ValueError(f'upsample_filt needs a positive integer kernel size, got {size!r}')
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    tent = 1 - np.abs(np.arange(size) - center) / factor
    return np.outer(tent, tent)


def interp(net, layers=None):
    """Fill each named layer's kernel (default: every upsampling layer) with bilinear interpolation, one kernel
    per channel.

    For a channel-to-channel Deconvolution (weights C x C x k x k) channel c only feeds channel c; a
    grouped one (C x 1 x k x k, group C) gets the same kernel in every group. A bias, if any, is zeroed so
    the layer interpolates exactly. Raises WeightsError for a layer it cannot fill.
    """
    if layers is None:
        layers = upsampling_layers(net)
    if isinstance(layers, str):
        layers = [layers]
    for name in layers:
        kernel = _interp_kernel(net, name)
        m, k, h, _ = kernel.shape
        kernel[...] = 0
        kernel[range(m), range(k) if k == m else 0] = upsample_filt(h)
        for blob in net.params[name][1:]:
            blob.data[...] = 0


def upsampling_layers(net):
    """The net's Deconvolution layers: the upsampling that surgery.interp makes bilinear."""
    return [name for name, layer in net.layer_dict.items() if layer.type == 'Deconvolution']


def _interp_kernel(net, name):
    if name not in net.params:
        raise WeightsError(f'interp: the net has no layer {name!r} with parameters (Deconvolution layers: '
                           f'{upsampling_layers(net)})')
    kernel = net.params[name][0].data
    if kernel.ndim != 4:
        raise WeightsError(f'interp: layer {name!r} has weights of shape {kernel.shape}, not a 2D kernel bank')
    m, k, h, w = kernel.shape
    if h != w:
        raise WeightsError(f'interp: layer {name!r} has a {h}x{w} kernel; bilinear filling needs a square one')
    if k != m and k != 1:
        raise WeightsError(f'interp: layer {name!r} maps {m} to {k} channels; bilinear filling needs as many '
                           'outputs as inputs, or one output per group (group = num_output)')
    return kernel
