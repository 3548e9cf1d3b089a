"""The layers the build recipe patches for speed (Crop, ReLU, max Pooling, Convolution) compute what numpy computes,
forward and backward, in whatever build is installed (scripts/patches/: crop-once, openmp-im2col, openmp-relu,
openmp-max-pool, shared-col-buffer, col-tiles)."""

import math
import os
import textwrap

import numpy as np
import pytest

import caffe
from common import child

RNG = np.random.RandomState(0)


def net_with(tmp_path, inputs, layer):
    """A net of Input layers (name -> shape) and one more layer, with gradients down to the inputs."""
    text = 'force_backward: true\n'
    for name, shape in inputs.items():
        dims = ' '.join(f'dim: {d}' for d in shape)
        text += f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'
    path = tmp_path / 'net.prototxt'
    path.write_text(text + textwrap.dedent(layer))
    return caffe.Net(str(path), caffe.TEST)


def run(net, data, top):
    """Forward with random inputs, backward with a random top diff; returns (inputs, top diff)."""
    x = RNG.randn(*net.blobs[data].data.shape).astype(np.float32)
    net.blobs[data].data[...] = x
    net.forward()
    dy = RNG.randn(*net.blobs[top].data.shape).astype(np.float32)
    net.blobs[top].diff[...] = dy
    net.backward()
    return x, dy


def test_crop_copies_the_window_and_routes_its_gradient_back(tmp_path):
    net = net_with(tmp_path, {'a': (2, 3, 9, 11), 'b': (2, 3, 5, 6)},
                   'layer { name: "c" type: "Crop" bottom: "a" bottom: "b" top: "c" crop_param { axis: 2 offset: 3 '
                   'offset: 2 } }')
    x, dy = run(net, 'a', 'c')
    np.testing.assert_array_equal(net.blobs['c'].data, x[:, :, 3:8, 2:8])
    expected = np.zeros_like(x)
    expected[:, :, 3:8, 2:8] = dy
    np.testing.assert_array_equal(net.blobs['a'].diff, expected)


def test_relu_forward_and_backward(tmp_path):
    net = net_with(tmp_path, {'x': (2, 64, 40, 40)},
                   'layer { name: "r" type: "ReLU" bottom: "x" top: "y" relu_param { negative_slope: 0.1 } }')
    x, dy = run(net, 'x', 'y')
    np.testing.assert_array_equal(net.blobs['y'].data, np.where(x > 0, x, np.float32(0.1) * x))
    np.testing.assert_array_equal(net.blobs['x'].diff, np.where(x > 0, dy, np.float32(0.1) * dy))


def max_pool(x, kernel, stride):
    """Caffe's max pooling (no padding, ceil-mode output size, first maximum wins) and its argmax indices."""
    n, c, h, w = x.shape
    oh, ow = (math.ceil((d - kernel) / stride) + 1 for d in (h, w))
    out, arg = np.empty((n, c, oh, ow), x.dtype), np.empty((n, c, oh, ow), int)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride, j * stride
            window = x[:, :, hs:hs + kernel, ws:ws + kernel]
            flat = window.reshape(n, c, -1)
            k = flat.argmax(-1)
            out[:, :, i, j] = flat.max(-1)
            arg[:, :, i, j] = (hs + k // window.shape[3]) * w + ws + k % window.shape[3]
    return out, arg


@pytest.mark.parametrize('kernel, stride', [(2, 2), (3, 2)])  # VGG's, and overlapping windows
def test_max_pooling_forward_and_backward(tmp_path, kernel, stride):
    net = net_with(tmp_path, {'x': (2, 8, 23, 17)},
                   f'layer {{ name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param {{ pool: MAX '
                   f'kernel_size: {kernel} stride: {stride} }} }}')
    x, dy = run(net, 'x', 'y')
    out, arg = max_pool(x, kernel, stride)
    np.testing.assert_array_equal(net.blobs['y'].data, out)
    expected = np.zeros(x.shape[:2] + (x.shape[2] * x.shape[3],), np.float32)
    for index in np.ndindex(*out.shape):
        expected[index[0], index[1], arg[index]] += dy[index]
    np.testing.assert_allclose(net.blobs['x'].diff, expected.reshape(x.shape), rtol=1e-6, atol=1e-6)


def conv_reference(x, w, stride, pad, dilation, group):
    """Caffe's convolution in numpy: y[n, o] = sum over the group's channels and the kernel of w * shifted x."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = ((d + 2 * pad - (dilation * (k - 1) + 1)) // stride + 1 for d, k in ((h, kh), (wd, kw)))
    y = np.zeros((n, o, oh, ow))
    og = o // group
    for g in range(group):
        for i in range(kh):
            for j in range(kw):
                window = xp[:, g * cg:(g + 1) * cg, i * dilation:i * dilation + stride * oh:stride,
                            j * dilation:j * dilation + stride * ow:stride]
                y[:, g * og:(g + 1) * og] += np.einsum('oc,nchw->nohw', w[g * og:(g + 1) * og, :, i, j], window)
    return y


CONV_CASES = {  # (input shape, num_output, kernel, stride, pad, dilation, group)
    'vgg-3x3': ((1, 16, 37, 29), 8, 3, 1, 1, 1, 1),
    'fcn-pad-100': ((1, 3, 20, 24), 8, 3, 1, 100, 1, 1),
    'alexnet-strided-grouped': ((2, 6, 161, 95), 4, 5, 2, 2, 1, 2),
    'dilated': ((1, 4, 70, 40), 6, 3, 1, 2, 2, 1),
}


def save_forward_backward(prototxt, out):
    """The net of `prototxt` (layer "c" from x to y) forward and backward with random data (x, c's parameters and
    y's diff); x, y, their diffs and c's weights, its diff and bias saved as the .npz `out`."""
    net = caffe.Net(prototxt, caffe.TEST)
    rng = np.random.RandomState(1)
    for blob in (net.blobs['x'], *net.params['c']):
        blob.data[...] = rng.randn(*blob.data.shape)
    net.forward()
    net.blobs['y'].diff[...] = rng.randn(*net.blobs['y'].diff.shape)
    net.backward()
    np.savez(out, x=net.blobs['x'].data, y=net.blobs['y'].data, dx=net.blobs['x'].diff, dy=net.blobs['y'].diff,
             w=net.params['c'][0].data, dw=net.params['c'][0].diff,
             b=net.params['c'][1].data if len(net.params['c']) > 1 else 0)


def run_in_child(tmp_path, shape, layer, tile_mb):
    """Layer "c" from x to y, run forward and backward with random data in a fresh process, where
    CAFFE_COL_TILE_MB (read once per process) sets the tiles: returns x, y, their diffs and c's weights."""
    net_with(tmp_path, {'x': shape}, layer)
    env = dict(os.environ, CAFFE_COL_TILE_MB=tile_mb, GLOG_minloglevel='2')
    out = child(save_forward_backward, tmp_path / 'net.prototxt', tmp_path / 'out.npz', env=env)
    assert out.returncode == 0, out.stderr
    return dict(np.load(tmp_path / 'out.npz'))


def inner(a, b):
    return float((np.asarray(a, np.float64) * b).sum())


TILES = pytest.mark.parametrize('tile_mb', ['0.01', '100000'])  # tiny tiles; one buffer (CAFFE_COL_TILES builds)


@TILES
@pytest.mark.parametrize('case', sorted(CONV_CASES))
def test_convolution_forward_and_backward(tmp_path, case, tile_mb):
    shape, num_output, kernel, stride, pad, dilation, group = CONV_CASES[case]
    geometry = (stride, pad, dilation, group)
    r = run_in_child(tmp_path, shape, f'''
        layer {{ name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param {{ num_output: {num_output}
          kernel_size: {kernel} stride: {stride} pad: {pad} dilation: {dilation} group: {group} }} }}''', tile_mb)
    x, w, dy = r['x'], r['w'], r['dy']
    y = conv_reference(x, w, *geometry) + r['b'][None, :, None, None]
    np.testing.assert_allclose(r['y'], y, rtol=1e-4, atol=1e-4)
    # <y, dy> is linear in x and in w: its gradients are the adjoints, <conv(x'), dy> = <x', dx> for any x'.
    probe_x, probe_w = RNG.randn(*x.shape), RNG.randn(*w.shape)
    np.testing.assert_allclose(inner(conv_reference(probe_x, w, *geometry), dy), inner(probe_x, r['dx']), rtol=1e-4)
    np.testing.assert_allclose(inner(conv_reference(x, probe_w, *geometry), dy), inner(probe_w, r['dw']), rtol=1e-4)


@TILES
def test_deconvolution_is_the_adjoint_of_convolution(tmp_path, tile_mb):
    """FCN's upsampling layers: a Deconvolution runs Caffe's convolution code backwards."""
    r = run_in_child(tmp_path, (1, 6, 61, 37), '''
        layer { name: "c" type: "Deconvolution" bottom: "x" top: "y" convolution_param { num_output: 4
          kernel_size: 4 stride: 2 group: 2 bias_term: false } }''', tile_mb)
    x, w, dy = r['x'], r['w'], r['dy']
    geometry = (2, 0, 1, 2)
    assert r['y'].shape == (1, 4, 124, 76)
    probe_y = RNG.randn(*r['y'].shape)
    np.testing.assert_allclose(inner(r['y'], probe_y), inner(x, conv_reference(probe_y, w, *geometry)), rtol=1e-4)
    np.testing.assert_allclose(r['dx'], conv_reference(dy, w, *geometry), rtol=1e-4, atol=1e-4)
    probe_w = RNG.randn(*w.shape)
    np.testing.assert_allclose(inner(x, conv_reference(dy, probe_w, *geometry)), inner(probe_w, r['dw']), rtol=1e-4)
