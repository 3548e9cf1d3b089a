"""Surgery on the project's nets (netgen), width-reduced, with random ILSVRC weights made here.

fcn-surgery convert end to end, the fc -> conv equivalence on the real head, the NYUDv2 initializations
and bilinear filling of every upsampling layer.
"""
import subprocess
import sys

import numpy as np
import pytest

import netgen
import surgery
from surgery import WeightsError
from common import QUIET

WIDTH = 1 / 16  # same topology as the paper's nets, a sixteenth of the channels
CONVERSIONS = {'vgg16': 'voc-fcn32s', 'caffenet': 'voc-fcn-alexnet', 'googlenet': 'voc-fcn-googlenet'}


def make(name, width=WIDTH, weights=None):
    """The deploy net; `weights` (a converted trunk) fill what they have, the rest stays at initialization."""
    return surgery.instantiate(netgen.net(name, 'deploy', width=width), weights=weights, partial=True)


def randomize(net, seed=0):
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.standard_t(3, blob.data.shape) * 0.02
    return net


@pytest.fixture(scope='module')
def ilsvrc(tmp_path_factory):
    """{trunk: (classifier net with random weights, its caffemodel path)}."""
    root = tmp_path_factory.mktemp('ilsvrc')
    nets = {}
    for seed, trunk in enumerate(CONVERSIONS):
        net = randomize(make('ilsvrc-' + trunk), seed)
        path = root / f'{trunk}.caffemodel'
        net.save(str(path))
        nets[trunk] = net, path
    return nets


def convert(trunk, weights, out):
    return subprocess.run([sys.executable, '-m', 'surgery.cli', 'convert', trunk, '--weights', str(weights),
                           '--out', str(out), '--width', str(WIDTH)], env=QUIET, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope='module')
def vgg16_fcn(ilsvrc, tmp_path_factory):
    """The reduced vgg16-fcn.caffemodel made by fcn-surgery convert."""
    out = tmp_path_factory.mktemp('fcn') / 'vgg16-fcn.caffemodel'
    result = convert('vgg16', ilsvrc['vgg16'][1], out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_convert_vgg16_makes_fc6_fc7_the_reshaped_inner_products(ilsvrc, vgg16_fcn):
    cls, _ = ilsvrc['vgg16']
    out, stdout = vgg16_fcn
    assert 'coerced  fc6 -> fc6 weights' in stdout and 'dropped  fc8' in stdout and 'initial  score_fr' in stdout
    fcn = make('voc-fcn32s')
    with pytest.raises(WeightsError, match='fcn-surgery convert'):
        surgery.check_trained_trunk(fcn)
    with pytest.raises(WeightsError, match='no weights for 2 layer.*score_fr, upscore'):
        surgery.load_weights(fcn, out)  # a full load wants every layer
    report = surgery.load_weights(fcn, out, partial=True)
    assert set(report.missing) == {'score_fr', 'upscore'}  # only the trunk is in the file
    for name in ('fc6', 'fc7'):
        kernel = fcn.params[name][0].data
        assert kernel.ndim == 4
        assert np.array_equal(kernel, cls.params[name][0].data.reshape(kernel.shape))  # bit for bit
        assert np.array_equal(fcn.params[name][1].data, cls.params[name][1].data)
    for name in surgery.check_trained_trunk(fcn):
        assert np.array_equal(fcn.params[name][0].data.ravel(), cls.params[name][0].data.ravel()), name
    # the trunk file fits any class count: NYUDv2's 40 classes
    assert 'score_fr' in surgery.load_weights(make('nyud-fcn32s-color'), out, partial=True).missing


@pytest.mark.parametrize('trunk', ['caffenet', 'googlenet'])
def test_convert_caffenet_and_googlenet(trunk, ilsvrc, tmp_path):
    cls, path = ilsvrc[trunk]
    out = tmp_path / f'{trunk}-fcn.caffemodel'
    result = convert(trunk, path, out)
    assert result.returncode == 0, result.stderr
    fcn = make(CONVERSIONS[trunk], weights=out)
    trunk_layers = surgery.check_trained_trunk(fcn)
    for name in trunk_layers:
        assert np.array_equal(fcn.params[name][0].data.ravel(), cls.params[name][0].data.ravel()), name
    assert ('fc6' in trunk_layers) == (trunk == 'caffenet')  # FCN-GoogLeNet drops the classifier entirely


def test_convert_targets_come_from_the_registry():
    from surgery.cli import conversions

    assert {trunk: fcn.name for trunk, fcn in conversions().items()} == CONVERSIONS
    for trunk, fcn in conversions().items():
        assert fcn.classifier == f'ilsvrc-{trunk}' and fcn.classifier in netgen.MODELS


def test_convert_refuses_weights_of_another_classifier(ilsvrc, tmp_path):
    out = tmp_path / 'x.caffemodel'
    result = convert('vgg16', ilsvrc['caffenet'][1], out)
    assert result.returncode == 2 and "layer 'conv1' has" not in result.stdout
    assert 'fcn-surgery: error:' in result.stderr and not out.exists()


def test_convolutionalized_vgg16_head_computes_the_classifier_at_every_window(ilsvrc, vgg16_fcn):
    cls, _ = ilsvrc['vgg16']
    fcn = make('voc-fcn32s', weights=vgg16_fcn[0])
    classes = fcn.params['score_fr'][0].data.shape[0]
    # score_fr as the first classes of fc8, so that the whole fc6 -> fc7 -> score path can be compared
    fcn.params['score_fr'][0].data[...] = cls.params['fc8'][0].data[:classes].reshape(classes, -1, 1, 1)
    fcn.params['score_fr'][1].data[...] = cls.params['fc8'][1].data[:classes]
    features = np.random.default_rng(3).random(fcn.blobs['pool5'].data.shape, dtype=np.float32)
    fcn.blobs['pool5'].data[...] = features
    scores = fcn.forward(start='fc6', end='score_fr')['score_fr'][0]
    window = cls.blobs['pool5'].data.shape[-1]
    assert scores.shape[1:] == tuple(s - window + 1 for s in features.shape[2:])
    cls_scores = np.empty_like(scores)
    for i in range(scores.shape[1]):
        for j in range(scores.shape[2]):
            cls.blobs['pool5'].data[...] = features[:, :, i:i + window, j:j + window]
            cls_scores[:, i, j] = cls.forward(start='fc6', end='fc8')['fc8'][0, :classes]
    assert np.abs(scores - cls_scores).max() / np.abs(cls_scores).max() < 1e-5


def test_nyud_color_d_and_color_hha_initializations(vgg16_fcn):
    vgg = make('voc-fcn32s', weights=vgg16_fcn[0])  # the reference's solve scripts start from vgg16-fcn
    color_d = make('nyud-fcn32s-color-d')
    surgery.transplant(color_d, vgg)
    with pytest.raises(WeightsError, match='conv1_1_bgrd'):
        surgery.check_trained_trunk(color_d)  # forgetting the 4-channel conv is caught before training
    surgery.init_color_d(color_d, vgg)
    rgb, bgrd = vgg.params['conv1_1'][0].data, color_d.params['conv1_1_bgrd'][0].data
    assert np.array_equal(bgrd[:, :3], rgb) and np.allclose(bgrd[:, 3], rgb.mean(axis=1))
    surgery.check_trained_trunk(color_d)

    color_hha = make('nyud-fcn32s-color-hha')
    report = surgery.init_two_stream(color_hha, vgg, suffixes=('color', 'hha'))
    for name in vgg.params:
        if name.startswith(('conv', 'fc')):
            for suffix in ('color', 'hha'):
                assert np.array_equal(color_hha.params[name + suffix][0].data, vgg.params[name][0].data)
    assert {layer for layer, _, _ in report.initial} == {'score_frcolor', 'score_frhha', 'upscore'}
    surgery.check_trained_trunk(color_hha)


@pytest.mark.parametrize('model', ['voc-fcn8s', 'voc-fcn-alexnet'])
def test_interp_fills_every_upsampling_layer(model):
    net = make(model)
    deconvs = [name for name, layer in net.layer_dict.items() if layer.type == 'Deconvolution']
    surgery.interp(net, deconvs)
    for name in deconvs:
        kernel = net.params[name][0].data
        filt = surgery.upsample_filt(kernel.shape[-1])
        assert all(np.array_equal(kernel[c, c], filt) for c in range(kernel.shape[0]))
        assert np.count_nonzero(kernel.sum(axis=(2, 3))) == kernel.shape[0]  # no cross-channel taps
    if model == 'voc-fcn-alexnet':
        assert net.params['upscore'][0].data.shape[-1] == 63
