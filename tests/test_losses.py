"""Class balancing (CVPR 2015 sec. 4.3): the weighted softmax loss is Caffe's SoftmaxWithLoss when every weight is 1,
weights each pixel by its class otherwise (checked against numerical gradients), and fcn-train --class-balance
trains with weights from the training split's frequencies."""
import json

import numpy as np
import pytest

from solvers.losses import class_weights
from common import ENV, checked, child

def loss_net(normalize, weights):
    """A net of an Input score (2x3x4x5) and label, scored by Caffe's SoftmaxWithLoss ("plain") and by the weighted
    loss ("weighted"), with gradients down to the score."""
    import caffe
    import surgery
    from caffe import layers as L
    from netgen import pieces

    n = caffe.NetSpec()
    n.score = L.Input(shape=dict(dim=[2, 3, 4, 5]))
    n.label = L.Input(shape=dict(dim=[2, 1, 4, 5]))
    n.plain = pieces.softmax_loss(n.score, n.label, normalize)
    n.weighted = pieces.softmax_loss(n.score, n.label, normalize, weights)
    proto = n.to_proto()
    proto.force_backward = True  # gradients down to the Input score
    return surgery.instantiate(proto)


def print_losses_and_gradients(weights, normalize):
    """Both losses of loss_net (class weights: the JSON list `weights`; `normalize`: 'True' or 'False') on random
    scores and labels, the gradient backward gives and the numerical one; printed as JSON."""
    weights, normalize = json.loads(weights), normalize == 'True'
    net = loss_net(normalize, weights)
    rng = np.random.default_rng(0)
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


def run_nets(weights, normalize):
    stdout = checked(child(print_losses_and_gradients, json.dumps(weights), normalize, env=ENV, timeout=300))
    return json.loads(stdout.strip().splitlines()[-1])


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
