"""Class balancing (CVPR 2015 sec. 4.3): the weighted softmax loss is Caffe's SoftmaxWithLoss when every weight is 1,
weights each pixel by its class otherwise (checked against numerical gradients), and fcn-train --class-balance
trains with weights from the training split's frequencies."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from solvers.losses import class_weights
from common import ENV

NETS = """
    import sys, json
    import caffe, numpy as np
    from caffe import layers as L
    import surgery
    from netgen import pieces

    weights, normalize = json.loads(sys.argv[1]), sys.argv[2] == 'True'
    rng = np.random.default_rng(0)
    n = caffe.NetSpec()
    n.score = L.Input(shape=dict(dim=[2, 3, 4, 5]))
    n.label = L.Input(shape=dict(dim=[2, 1, 4, 5]))
    n.plain = pieces.softmax_loss(n.score, n.label, normalize)
    n.weighted = pieces.softmax_loss(n.score, n.label, normalize, weights)
    proto = n.to_proto()
    proto.force_backward = True  # gradients down to the Input score
    net = surgery.instantiate(proto)
    score = rng.normal(0, 2, (2, 3, 4, 5)).astype(np.float32)
    label = rng.integers(0, 3, (2, 1, 4, 5)).astype(np.float32)
    label[0, 0, 0] = 255  # ignored
    net.blobs['score'].data[...], net.blobs['label'].data[...] = score, label

    def losses(delta=None):
        if delta is not None:
            net.blobs['score'].data[...] = score + delta
        net.forward()
        return float(net.blobs['plain'].data.flat[0]), float(net.blobs['weighted'].data.flat[0])

    plain, weighted = losses()
    net.backward()
    grad = net.blobs['score'].diff.copy()  # the sum of both losses' gradients
    numeric, eps = np.zeros_like(score, dtype=np.float64), 1e-2
    for index in np.ndindex(score.shape):
        delta = np.zeros_like(score)
        delta[index] = eps
        up, down = sum(losses(delta)), sum(losses(-delta))
        numeric[index] = (up - down) / (2 * eps)
    print(json.dumps({'plain': plain, 'weighted': weighted, 'grad': grad.tolist(), 'numeric': numeric.tolist(),
                      'label': label.tolist(), 'score': score.tolist()}))
"""


def run_nets(weights, normalize):
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(NETS), json.dumps(weights), str(normalize)],
                            capture_output=True, text=True, env=ENV, cwd='/', timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('normalize', [False, True])
def test_unit_weights_give_caffes_softmax_loss(normalize):
    out = run_nets([1.0, 1.0, 1.0], normalize)
    assert out['weighted'] == pytest.approx(out['plain'], rel=1e-5)
    np.testing.assert_allclose(out['grad'], out['numeric'], rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize('normalize', [False, True])
def test_weights_scale_each_pixel_by_its_class(normalize):
    weights = [0.5, 2.0, 0.0]
    out = run_nets(weights, normalize)
    score, label = np.array(out['score'], np.float64), np.array(out['label'])[:, 0]
    logp = score - np.log(np.exp(score).sum(axis=1, keepdims=True))
    valid = label != 255
    safe = np.where(valid, label, 0).astype(int)
    w = np.where(valid, np.array(weights)[safe], 0)
    nll = -np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    expected = (w * nll).sum() / (w.sum() if normalize else len(label))  # Caffe: per image of the batch
    assert out['weighted'] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(out['grad'], out['numeric'], rtol=2e-2, atol=2e-3)  # backward of both losses


def test_median_frequency_balancing():
    assert class_weights([10, 30, 0, 60]) == [3.0, 1.0, 1.0, 0.5]  # median of 0.1, 0.3, 0.6 is 0.3; absent: 1
    with pytest.raises(ValueError, match='no labelled pixel'):
        class_weights([0, 0])
