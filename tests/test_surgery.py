"""Surgery on small nets built here: fc -> conv transplant and its equivalence, bilinear interp, NYUDv2
initializations, checked caffemodel loading, the untrained-trunk guard and the fcn-surgery CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from caffe import coord_map
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from scipy.ndimage import map_coordinates

import surgery
import surgery.cli
from surgery import WeightsError
from common import QUIET, child

C, FC, K = 6, 16, 5  # pool5 channels, fully connected width, classes of the tiny nets


def build(n):
    return surgery.instantiate(n.to_proto())


def randomize(net, seed=0, scale=0.1):
    """Random weights with a heavy tail, so that no filler's statistics match them."""
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.standard_t(3, blob.data.shape) * scale
    return net


def conv(bottom, nout, ks, **kw):
    return L.Convolution(bottom, num_output=nout, kernel_size=ks, **kw)


def head(n, bottom, fully_connected, score='fc8', classes=K):
    """fc6 (7x7 window) -> fc7 -> score, as InnerProduct (classifier) or as convolution (FCN)."""
    if fully_connected:
        n.fc6 = L.InnerProduct(bottom, num_output=FC)
        n.relu6 = L.ReLU(n.fc6, in_place=True)
        n.fc7 = L.InnerProduct(n.relu6, num_output=FC)
        n.relu7 = L.ReLU(n.fc7, in_place=True)
        n[score] = L.InnerProduct(n.relu7, num_output=classes)
    else:
        n.fc6 = conv(bottom, FC, 7)
        n.relu6 = L.ReLU(n.fc6, in_place=True)
        n.fc7 = conv(n.relu6, FC, 1)
        n.relu7 = L.ReLU(n.fc7, in_place=True)
        n[score] = conv(n.relu7, classes, 1)
    return n


def pool5_net(fully_connected, size=(7, 7)):
    n = caffe.NetSpec()
    n.pool5 = L.Input(shape=dict(dim=[1, C, *size]))
    return head(n, n.pool5, fully_connected)


def classifier_and_fcn(score='score_fr'):
    """A tiny 'ILSVRC' classifier (conv1, pool, fc6/fc7/fc8) and its FCN twin (fc as conv, score_fr)."""
    nets = []
    for fully_connected in (True, False):
        n = caffe.NetSpec()
        size = 14 if fully_connected else 20
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
        n.conv1 = conv(n.data, C, 3, pad=1)
        n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        nets.append(head(n, n.pool1, fully_connected, score='fc8' if fully_connected else score))
    return nets


# transplant and the fc -> conv equivalence ---------------------------------------------------------


def test_transplant_coerces_fully_connected_into_convolution_bit_for_bit():
    cls_spec, fcn_spec = classifier_and_fcn()
    cls, fcn = randomize(build(cls_spec)), build(fcn_spec)
    report = surgery.transplant(fcn, cls)
    for name in ('fc6', 'fc7'):
        kernel, weights = fcn.params[name][0].data, cls.params[name][0].data
        assert kernel.ndim == 4 and weights.ndim == 2
        assert np.array_equal(kernel, weights.reshape(kernel.shape))
        assert np.array_equal(fcn.params[name][1].data, cls.params[name][1].data)
    assert np.array_equal(fcn.params['conv1'][0].data, cls.params['conv1'][0].data)
    assert {(m.dst, m.index) for m in report.copied} == {('conv1', 0), ('conv1', 1), ('fc6', 1), ('fc7', 1)}
    assert {(m.dst, m.index) for m in report.coerced} == {('fc6', 0), ('fc7', 0)}
    assert {m.src for m in report.dropped} == {'fc8'}
    assert {layer for layer, _, _ in report.initial} == {'score_fr'}
    assert not fcn.params['score_fr'][0].data.any()
    text = str(report)
    assert 'coerced  fc6 -> fc6 weights (16, 294) -> (16, 6, 7, 7)' in text
    assert 'dropped  fc8' in text and 'initial  score_fr' in text


def test_convolutionalized_head_computes_the_classifier_at_every_window():
    cls_spec, fcn_spec = pool5_net(True), pool5_net(False, size=(10, 12))
    cls, fcn = randomize(build(cls_spec)), build(fcn_spec)
    surgery.transplant(fcn, cls)
    features = np.random.default_rng(1).standard_normal(fcn.blobs['pool5'].data.shape).astype(np.float32)
    fcn.blobs['pool5'].data[...] = features
    scores = fcn.forward()['fc8'][0]
    # the window of each output position, from the graph: its centre, and the classifier's input size
    _, a, b = coord_map.coord_map_from_to(fcn_spec.fc8, fcn_spec.pool5)
    window = cls.blobs['pool5'].data.shape[2]
    assert scores.shape[1:] == (10 - window + 1, 12 - window + 1)
    for i in range(scores.shape[1]):
        for j in range(scores.shape[2]):
            top, left = (int(a[0] * x + b[0] - (window - 1) / 2) for x in (i, j))
            cls.blobs['pool5'].data[...] = features[:, :, top:top + window, left:left + window]
            expected = cls.forward()['fc8'][0]
            assert np.abs(scores[:, i, j] - expected).max() / np.abs(expected).max() < 1e-5


def test_transplant_with_suffix_and_size_mismatch():
    cls_spec, _ = classifier_and_fcn()
    cls = randomize(build(cls_spec))
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 14, 14]))
    n.conv1hha = conv(n.data, C, 3, pad=1)
    n.fc6hha = L.InnerProduct(n.conv1hha, num_output=FC + 1)  # wrong width
    wide = build(n)
    with pytest.raises(WeightsError, match=r"'fc6' blob 0 of shape \(16, 294\).*'fc6hha' blob 0 of shape \(17, 1176\)"):
        surgery.transplant(wide, cls, suffix='hha', strict=True)
    report = surgery.transplant(wide, cls, suffix='hha')
    assert np.array_equal(wide.params['conv1hha'][0].data, cls.params['conv1'][0].data)
    assert {(m.src, m.index) for m in report.dropped if m.dst == 'fc6hha'} == {('fc6', 0), ('fc6', 1)}
    assert {layer for layer, _, _ in report.initial} == {'fc6hha'}


def test_expand_score_keeps_the_old_classes_first():
    old_spec, new_spec = pool5_net(False), caffe.NetSpec()
    new_spec.pool5 = L.Input(shape=dict(dim=[1, C, 7, 7]))
    head(new_spec, new_spec.pool5, False, score='score_fr', classes=K + 3)
    old, new = randomize(build(old_spec)), build(new_spec)
    before = new.params['score_fr'][0].data.copy()
    surgery.expand_score(new, 'score_fr', old, 'fc8')
    assert np.array_equal(new.params['score_fr'][0].data[:K], old.params['fc8'][0].data)
    assert np.array_equal(new.params['score_fr'][1].data[:K], old.params['fc8'][1].data)
    assert np.array_equal(new.params['score_fr'][0].data[K:], before[K:])
    with pytest.raises(WeightsError, match='at least as many classes'):
        surgery.expand_score(old, 'fc8', new, 'score_fr')
    with pytest.raises(WeightsError, match="no layer 'score'"):
        surgery.expand_score(new, 'score', old, 'fc8')


# bilinear upsampling ---------------------------------------------------------------------------------


def test_upsample_filt_is_a_normalized_tent():
    assert np.allclose(surgery.upsample_filt(4)[0], np.array([1, 3, 3, 1]) / 16)
    assert np.allclose(surgery.upsample_filt(3)[1], [0.5, 1, 0.5])
    for size in (4, 16, 63, 64):
        stride = (size + 1) // 2
        # every input contributes with total weight stride**2 to the output: interpolation keeps constants
        assert np.isclose(surgery.upsample_filt(size).sum(), stride ** 2)
    for bad in (0, -2, 2.5, '4', True):
        with pytest.raises(ValueError, match='positive integer'):
            surgery.upsample_filt(bad)


def deconv_net(channels, size, kernel, stride, group=1, nout=None):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, channels, size, size]))
    n.up = L.Deconvolution(n.data, convolution_param=dict(
        num_output=nout or channels, kernel_size=kernel, stride=stride, bias_term=False, group=group))
    return n


@pytest.mark.parametrize('kernel, stride', [(4, 2), (16, 8), (32, 16), (64, 32), (63, 32)])
def test_interp_upsamples_like_bilinear_interpolation(kernel, stride):
    channels, size = 3, 6
    spec = deconv_net(channels, size, kernel, stride)
    net = build(spec)
    surgery.interp(net, ['up'])
    y, x = np.mgrid[:size, :size].astype(np.float32)
    ramps = np.stack([2 * y + 0.5 * x, -x + 3, np.sin(y / 2) * np.cos(x / 3)])  # the last one smooth, not linear
    net.blobs['data'].data[0] = ramps
    up = net.forward()['up'][0]
    # input coordinate of each output pixel, from the graph
    _, a, b = coord_map.coord_map_from_to(spec.up, spec.data)
    coords = a[0] * np.arange(up.shape[-1]) + b[0]
    inside = (coords >= 0) & (coords <= size - 1)  # away from the borders: both neighbours exist
    assert inside.sum() > stride * (size - 2)
    ys, xs = np.meshgrid(coords[inside], coords[inside], indexing='ij')
    for c in range(channels):
        expected = map_coordinates(ramps[c].astype(np.float64), [ys, xs], order=1)
        assert np.allclose(up[c][np.ix_(inside, inside)], expected, atol=1e-5), c
    assert np.allclose(up[0][np.ix_(inside, inside)], 2 * ys + 0.5 * xs, atol=1e-5)  # the ramp, exactly


def test_interp_fills_grouped_deconvolution_per_channel():
    net = build(deconv_net(4, 5, 4, 2, group=4))
    assert net.params['up'][0].data.shape == (4, 1, 4, 4)
    surgery.interp(net, 'up')
    net.blobs['data'].data[...] = np.arange(4).reshape(1, 4, 1, 1)
    up = net.forward()['up'][0]
    assert np.allclose(up[:, 4:8, 4:8], np.arange(4).reshape(4, 1, 1))  # constants stay constant per channel


def test_interp_errors_name_the_layer():
    net = build(deconv_net(3, 5, 4, 2, nout=2))
    with pytest.raises(WeightsError, match="'up' maps 3 to 2 channels"):
        surgery.interp(net, ['up'])
    with pytest.raises(WeightsError, match=r"no layer 'upscore'.*\['up'\]"):
        surgery.interp(net, ['upscore'])
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 5, 5]))
    n.up = L.Deconvolution(n.data, convolution_param=dict(num_output=3, kernel_h=4, kernel_w=2, stride=2))
    with pytest.raises(WeightsError, match='4x2 kernel'):
        surgery.interp(build(n), ['up'])
    fc = build(pool5_net(True))
    with pytest.raises(WeightsError, match=r"'fc6' has weights of shape \(16, 294\)"):
        surgery.interp(fc, ['fc6'])


# NYUDv2 initializations ------------------------------------------------------------------------------


def vgg_like(n, bottom, suffix='', first='conv1_1'):
    n[first + suffix] = conv(bottom, 4, 3, pad=1)
    n['conv1_2' + suffix] = conv(n[first + suffix], 4, 3, pad=1)
    n['score_fr' + suffix] = conv(n['conv1_2' + suffix], K, 1)
    return n


def trained_vgg_like():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    return randomize(build(vgg_like(n, n.data)))


def test_init_color_d_depth_channel_is_the_mean_of_rgb():
    vgg = trained_vgg_like()
    n = caffe.NetSpec()
    n.color = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.depth = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.data = L.Concat(n.color, n.depth)
    color_d = build(vgg_like(n, n.data, first='conv1_1_bgrd'))
    report = surgery.init_color_d(color_d, vgg)
    rgb, bgrd = vgg.params['conv1_1'][0].data, color_d.params['conv1_1_bgrd'][0].data
    assert bgrd.shape == (4, 4, 3, 3)
    assert np.array_equal(bgrd[:, :3], rgb)
    assert np.allclose(bgrd[:, 3], rgb.mean(axis=1))
    assert np.array_equal(color_d.params['conv1_1_bgrd'][1].data, vgg.params['conv1_1'][1].data)
    assert np.array_equal(color_d.params['conv1_2'][0].data, vgg.params['conv1_2'][0].data)
    assert [(m.src, m.dst) for m in report.derived] == [('conv1_1', 'conv1_1_bgrd')]
    assert not report.initial  # every layer got weights, conv1_1_bgrd included
    with pytest.raises(WeightsError, match='one more input channel'):
        surgery.init_color_d(vgg, vgg, layer='score_fr')


def test_init_two_stream_transplants_both_suffixes():
    vgg = trained_vgg_like()
    n = caffe.NetSpec()
    n.color = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.hha = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    vgg_like(n, n.color, 'color')
    vgg_like(n, n.hha, 'hha')
    two = build(n)
    report = surgery.init_two_stream(two, vgg)
    for suffix in ('color', 'hha'):
        for name in ('conv1_1', 'conv1_2', 'score_fr'):
            for i in range(2):
                assert np.array_equal(two.params[name + suffix][i].data, vgg.params[name][i].data)
    assert not report.initial and not report.dropped
    with pytest.raises(WeightsError, match=r"no layer of the net ends with \['depth'\]"):
        surgery.init_two_stream(two, vgg, suffixes=('color', 'depth'))


# caffemodel validation -------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """A tiny classifier with random weights saved as a caffemodel, and its FCN twin."""
    cls_spec, fcn_spec = classifier_and_fcn()
    cls = randomize(build(cls_spec))
    path = tmp_path / 'cls.caffemodel'
    cls.save(str(path))
    return cls, cls_spec, fcn_spec, path


def test_load_weights_round_trip_reports_missing_and_ignored(saved, tmp_path):
    cls, cls_spec, _, path = saved
    again = build(cls_spec)
    report = surgery.load_weights(again, path)
    assert report.loaded == ['conv1', 'fc6', 'fc7', 'fc8'] and not report.missing
    for name in cls.params:
        assert np.array_equal(again.params[name][0].data, cls.params[name][0].data)


def rewrite(path, out, edit):
    param = surgery.read_caffemodel(path)
    edit(param)
    out.write_bytes(param.SerializeToString())
    return out


def test_validate_names_layer_blob_and_both_shapes(saved, tmp_path):
    _, _, fcn_spec, path = saved
    fcn = build(fcn_spec)
    with pytest.raises(WeightsError, match=r"layer 'fc6' blob 0 has shape \(16, 294\) in the file but "
                                           r"\(16, 6, 7, 7\) in the net"):
        surgery.validate(fcn, surgery.read_caffemodel(path), path)


def test_validate_rejects_truncated_missing_empty_and_foreign_files(saved, tmp_path):
    cls, cls_spec, _, path = saved
    net = build(cls_spec)
    data = path.read_bytes()
    cut = tmp_path / 'cut.caffemodel'
    for end in (len(data) // 2, len(data) - 3, 7):
        cut.write_bytes(data[:end])
        with pytest.raises(WeightsError, match='truncated or corrupt'):
            surgery.validate(net, surgery.read_caffemodel(cut), cut)
    with pytest.raises(WeightsError, match='does not exist'):
        surgery.read_caffemodel(tmp_path / 'nothing.caffemodel')
    (tmp_path / 'empty.caffemodel').write_bytes(b'')
    with pytest.raises(WeightsError, match='is empty'):
        surgery.read_caffemodel(tmp_path / 'empty.caffemodel')
    (tmp_path / 'text.caffemodel').write_text('this is not a caffemodel\n' * 10)
    with pytest.raises(WeightsError, match='not a valid caffemodel'):
        surgery.read_caffemodel(tmp_path / 'text.caffemodel')
    other = build(deconv_net(3, 5, 4, 2))
    with pytest.raises(WeightsError, match='none of its layers matches'):
        surgery.validate(other, surgery.read_caffemodel(path), path)
    no_bias = rewrite(path, tmp_path / 'nobias.caffemodel', lambda p: p.layer[1].blobs.pop())
    with pytest.raises(WeightsError, match="layer 'conv1' has 1 blobs in the file but 2 in the net"):
        surgery.validate(net, surgery.read_caffemodel(no_bias), no_bias)


def to_v1_legacy(param):
    """The old format of the published VGG16 caffemodel: V1 `layers`, blobs with num/channels/height/width."""
    old = caffe_pb2.NetParameter(name=param.name)
    for layer in param.layer:
        v1 = old.layers.add(name=layer.name, bottom=layer.bottom, top=layer.top)
        for blob in layer.blobs:
            dims = (1,) * (4 - len(blob.shape.dim)) + tuple(blob.shape.dim)
            v1.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=blob.data)
    return old


def test_validate_reads_v1_layers_with_legacy_shapes(saved, tmp_path):
    _, cls_spec, fcn_spec, path = saved
    legacy = tmp_path / 'v1.caffemodel'
    legacy.write_bytes(to_v1_legacy(surgery.read_caffemodel(path)).SerializeToString())
    param = surgery.read_caffemodel(legacy)
    assert not param.layer and sum(len(v1.blobs) > 0 for v1 in param.layers) == 4
    report = surgery.validate(build(cls_spec), param, legacy)
    assert report.loaded == ['conv1', 'fc6', 'fc7', 'fc8']
    with pytest.raises(WeightsError, match=r"'fc6' blob 0 has shape \(1, 1, 16, 294\) in the file but "
                                           r"\(16, 6, 7, 7\)"):
        surgery.validate(build(fcn_spec), param, legacy)


def test_blob_shape_reads_both_shape_forms():
    assert surgery.blob_shape(caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=[16, 294]))) == (16, 294)
    assert surgery.blob_shape(caffe_pb2.BlobProto(num=1, channels=1, height=16, width=294)) == (1, 1, 16, 294)


def test_read_prototxt_reads_nets_and_solvers(tmp_path):
    path = tmp_path / 'solver.prototxt'
    path.write_text('base_lr: 1e-10 train_net: "train.prototxt"\n')
    solver = surgery.read_prototxt(path, caffe_pb2.SolverParameter())
    assert solver.train_net == 'train.prototxt'
    with pytest.raises(WeightsError, match='not a valid net prototxt'):
        surgery.read_prototxt(path)
    with pytest.raises(WeightsError, match='solver definition .* does not exist'):
        surgery.read_prototxt(tmp_path / 'missing.prototxt', caffe_pb2.SolverParameter())


def load_cls_weights(weights, legacy):
    """Run from a folder holding cls.prototxt, fcn.prototxt and fc6.npy: load_weights on the classifier from
    `legacy` (V1 layers), then from both files as if they exceeded Caffe's read limit, then refusing a limit too small
    and the FCN's shapes; prints what happened."""
    net = surgery.instantiate('cls.prototxt')
    surgery.load_weights(net, legacy)  # V1 layers and legacy shapes load as Caffe upgrades them
    assert np.array_equal(net.params['fc6'][0].data, np.load('fc6.npy'))
    print('v1 ok')
    for path in (weights, legacy):  # larger than Caffe's read limit: handed over layer by layer
        again = surgery.instantiate('cls.prototxt')
        limit = os.path.getsize(path)
        surgery.load_weights(again, path, read_limit=limit)
        assert np.array_equal(again.params['fc6'][0].data, np.load('fc6.npy'))
    print('by layer ok')
    try:
        surgery.load_weights(again, weights, read_limit=1000)
    except surgery.WeightsError as e:
        print('too big', e)
    try:
        surgery.load_weights(surgery.instantiate('fcn.prototxt'), weights)
    except surgery.WeightsError as e:
        print('raised', e)


def test_load_weights_raises_instead_of_caffe_aborting(saved, tmp_path):
    """In a subprocess: if the validation missed anything, Caffe's CHECK would abort (SIGABRT)."""
    cls, cls_spec, fcn_spec, path = saved
    (tmp_path / 'cls.prototxt').write_text(str(cls_spec.to_proto()))
    (tmp_path / 'fcn.prototxt').write_text(str(fcn_spec.to_proto()))
    legacy = tmp_path / 'v1.caffemodel'
    legacy.write_bytes(to_v1_legacy(surgery.read_caffemodel(path)).SerializeToString())
    np.save(tmp_path / 'fc6.npy', cls.params['fc6'][0].data)
    result = child(load_cls_weights, path, legacy, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'v1 ok' in result.stdout and 'by layer ok' in result.stdout
    assert "too big" in result.stdout and "fc6 (" in result.stdout and 'nothing was loaded' in result.stdout
    assert "raised" in result.stdout and "'fc6' blob 0" in result.stdout


# the guard before training ---------------------------------------------------------------------------


def test_check_trained_trunk_refuses_zero_and_filler_weights():
    cls_spec, fcn_spec = classifier_and_fcn()
    fcn = build(fcn_spec)  # no fillers: Caffe's default constant 0
    with pytest.raises(WeightsError, match='every trunk weight of the net is zero.*fcn-surgery convert'):
        surgery.check_trained_trunk(fcn)
    surgery.transplant(fcn, randomize(build(cls_spec)))
    assert surgery.check_trained_trunk(fcn) == ['conv1', 'fc6', 'fc7']  # score_fr may stay at zero
    fcn.params['fc7'][0].data[...] = 0.5
    with pytest.raises(WeightsError, match='still at their fillers: fc7; .*fcn-surgery convert'):
        surgery.check_trained_trunk(fcn)


# the command line ------------------------------------------------------------------------------------


def fcn_surgery(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'surgery.cli', *map(str, args)], cwd=cwd, env=QUIET,
                          capture_output=True, text=True, timeout=120)


def test_cli_transplant_writes_weights_for_the_destination(saved, tmp_path):
    cls, cls_spec, fcn_spec, path = saved
    (tmp_path / 'cls.prototxt').write_text(str(cls_spec.to_proto()))
    fcn_param = fcn_spec.to_proto()
    up = fcn_param.layer.add(name='upscore', type='Deconvolution', bottom=['score_fr'], top=['upscore'])
    text_format.Parse('num_output: 5 kernel_size: 4 stride: 2 bias_term: false', up.convolution_param)
    (tmp_path / 'fcn.prototxt').write_text(str(fcn_param))
    out = tmp_path / 'out' / 'fcn.caffemodel'
    result = fcn_surgery('transplant', '--src-net', 'cls.prototxt', '--src-weights', path,
                         '--dst-net', 'fcn.prototxt', '--out', out, '--interp', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'coerced  fc6 -> fc6 weights (16, 294) -> (16, 6, 7, 7)' in result.stdout
    assert 'dropped  fc8' in result.stdout and 'initial  score_fr' in result.stdout
    assert 'bilinear upscore' in result.stdout
    fcn = surgery.instantiate(tmp_path / 'fcn.prototxt', weights=out)
    assert np.array_equal(fcn.params['fc6'][0].data.reshape(FC, -1), cls.params['fc6'][0].data)
    assert np.allclose(fcn.params['upscore'][0].data[1, 1], surgery.upsample_filt(4))


def test_cli_errors_exit_nonzero_and_write_nothing(saved, tmp_path, capsys, monkeypatch):
    _, cls_spec, fcn_spec, path = saved
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'fcn.prototxt').write_text(str(fcn_spec.to_proto()))
    (tmp_path / 'bad.prototxt').write_text('layer { name: "x" type: \n')
    out = tmp_path / 'out.caffemodel'
    # a shape mismatch would abort inside Caffe if it got there: run that one in a subprocess
    result = fcn_surgery('transplant', '--src-net', 'fcn.prototxt', '--src-weights', path,
                         '--dst-net', 'fcn.prototxt', '--out', out, cwd=tmp_path)
    assert result.returncode == 2 and "'fc6' blob 0 has shape (16, 294) in the file" in result.stderr
    cases = [  # these fail in Python before Caffe sees anything
        (['--src-net', 'missing.prototxt', '--src-weights', path], 'missing.prototxt does not exist'),
        (['--src-net', 'bad.prototxt', '--src-weights', path], 'not a valid net prototxt'),
        (['--src-net', 'fcn.prototxt', '--src-weights', 'none.caffemodel'], 'none.caffemodel does not exist'),
    ]
    for args, message in cases:
        assert surgery.cli.main(['transplant', *map(str, args), '--dst-net', 'fcn.prototxt', '--out', str(out)]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()
    assert surgery.cli.main(['transplant', '--src-net', 'fcn.prototxt', '--src-weights', str(path),
                             '--dst-net', 'fcn.prototxt', '--out', str(path)]) == 2
    assert 'would destroy that input' in capsys.readouterr().err
    net_text = (tmp_path / 'fcn.prototxt').read_text()
    assert surgery.cli.main(['transplant', '--src-net', str(tmp_path / 'fcn.prototxt'), '--src-weights', str(path),
                             '--dst-net', str(tmp_path / 'fcn.prototxt'), '--out', str(tmp_path / 'fcn.prototxt')]) == 2
    assert 'fcn.prototxt is also an input' in capsys.readouterr().err
    assert (tmp_path / 'fcn.prototxt').read_text() == net_text
    with pytest.raises(SystemExit) as exit_:
        surgery.cli.main(['convert', 'alexnet', '--weights', str(path), '--out', str(out)])
    assert exit_.value.code == 2 and "invalid choice: 'alexnet'" in capsys.readouterr().err
