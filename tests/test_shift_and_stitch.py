"""Shift-and-stitch (CVPR 2015 sec. 3.2) and the paper's claim that filter rarefaction is equivalent: a pooling
layer at stride 1 and the following filters dilated give the same dense output as stitching the outputs of
shifted inputs; and fcn-infer --shift-and-stitch on a real FCN."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

INFER = str(Path(sys.executable).parent / 'fcn-infer')


def small_net(rarefied):
    """conv 3x3 -> ReLU -> max pool 2x2 (stride 2, or 1 when rarefied) -> conv 3x3 (dilated 2 when rarefied)."""
    import caffe
    from caffe import layers as L
    from caffe import params as P

    import surgery

    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 32, 32]))
    n.conv1 = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=1 if rarefied else 2)
    dilated = dict(dilation=2, pad=2) if rarefied else dict(pad=1)
    n.score = L.Convolution(n.pool1, num_output=3, kernel_size=3, **dilated)
    net = surgery.instantiate(n.to_proto())
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.5, blob.data.shape)
    return net


def run(net, image):
    """C x h x w scores of the net for a C x H x W image."""
    net.blobs['data'].reshape(1, *image.shape)
    net.reshape()
    net.blobs['data'].data[0] = image
    net.forward()
    return net.blobs['score'].data[0].copy()


def test_shift_and_stitch_equals_filter_rarefaction():
    from solvers.infer import shift_and_stitch

    image = np.random.default_rng(1).normal(0, 1, (3, 32, 32)).astype(np.float32)
    coarse_net = small_net(rarefied=False)
    stitched = shift_and_stitch(lambda im: run(coarse_net, im.transpose(2, 0, 1)), image.transpose(1, 2, 0), 2, 1)
    dense = run(small_net(rarefied=True), image)
    assert stitched.shape[1:] == (32, 32) and dense.shape[1:] == (31, 31)
    inner = (slice(None), slice(4, 27), slice(4, 27))  # away from the zero padding, which shifting moves
    np.testing.assert_allclose(stitched[inner], dense[inner], rtol=1e-4, atol=1e-5)
    assert not np.allclose(stitched[inner], run(coarse_net, image).repeat(2, 1).repeat(2, 2)[:, :32, :32][inner])


@pytest.fixture(scope='module')
def fcn8s_weights(tmp_path_factory):
    import netgen
    import surgery

    net = surgery.instantiate(netgen.net('voc-fcn8s', 'deploy', width=1 / 16))
    surgery.stand_in_trunk(net, seed=0)
    surgery.interp(net)
    path = tmp_path_factory.mktemp('w') / 'fcn8s.caffemodel'
    net.save(str(path))
    return path


def test_fcn_infer_shift_and_stitch(fcn8s_weights, tmp_path):
    from PIL import Image

    image = tmp_path / 'image.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 70, 3), np.uint8)).save(image)
    base = [INFER, 'voc-fcn8s', '--weights', str(fcn8s_weights), '--width', '1/16', str(image)]
    result = subprocess.run(base + ['--out', str(tmp_path / 'dense'), '--shift-and-stitch', '2'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array(Image.open(tmp_path / 'dense' / 'image.png')).shape == (60, 70)
    result = subprocess.run(base + ['--out', str(tmp_path / 'x'), '--shift-and-stitch', '3'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and 'fuse_pool3 has stride 8, which 3 does not divide' in result.stderr
