"""The benchmark's own code: FLOPs from the net, sgemm through Caffe's BLAS, the Caffe -> PyTorch copy.

Reduced width and small inputs: the same topology as the benchmarked nets, a fraction of the work.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import caffe

from bench import ceiling, flops, nets, worker

ROOT = Path(__file__).resolve().parents[1]

WIDTH, SIZE = 0.0625, 48
MODELS = ('voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s')


def caffe_net(tmp_path, param):
    path = tmp_path / 'net.prototxt'
    path.write_text(text_format.MessageToString(param))
    return caffe.Net(str(path), caffe.TEST)


def fed_net(tmp_path, param):
    """A Caffe net with the benchmark's weights and inputs."""
    net = caffe_net(tmp_path, param)
    weights = worker.init_weights(net, seed=0)
    feed = worker.inputs({b: net.blobs[b].data.shape for b in net.inputs}, seed=0)
    for name, value in feed.items():
        net.blobs[name].data[...] = value
    return net, weights, feed


def test_train_net_is_the_deploy_net_plus_label_and_loss():
    deploy, train = nets.deploy_net('voc-fcn8s', 96, WIDTH), nets.train_net('voc-fcn8s', 96, WIDTH)
    assert [list(s.dim) for s in deploy.layer[0].input_param.shape] == [[1, 3, 96, 96]]
    names = [layer.name for layer in train.layer]
    assert names == [deploy.layer[0].name, 'label'] + [layer.name for layer in deploy.layer[1:]] + ['loss']
    loss = train.layer[-1]
    assert loss.type == 'SoftmaxWithLoss' and list(loss.bottom) == ['score', 'label']
    assert loss.loss_param.ignore_label == 255 and not loss.loss_param.normalize


def test_flops_of_each_conv_follow_from_its_shapes(tmp_path):
    param = nets.train_net('voc-fcn8s', SIZE, WIDTH)
    net = caffe_net(tmp_path, param)
    rows = {r['name']: r for r in flops.per_layer(param, net)}
    cout, cin, kh, kw = net.params['conv1_2'][0].data.shape
    _, _, h, w = net.blobs['conv1_2'].data.shape
    assert rows['conv1_2']['forward'] == 2 * cout * cin * kh * kw * h * w
    # conv1_1: no gradient into the data, only its weights; conv1_2: both
    assert rows['conv1_1']['backward'] == rows['conv1_1']['forward']
    assert rows['conv1_2']['backward'] == 2 * rows['conv1_2']['forward']
    # the bilinear Deconvolutions are fixed (lr_mult 0): gradient to their bottom only
    cin, cout, kh, kw = net.params['upscore8'][0].data.shape
    _, _, h, w = net.blobs['fuse_pool3'].data.shape
    assert rows['upscore8']['forward'] == 2 * cin * cout * kh * kw * h * w
    assert rows['upscore8']['backward'] == rows['upscore8']['forward']
    assert rows['relu1_1']['forward'] == rows['pool1']['backward'] == 0
    forward, train = flops.totals(rows.values())
    assert train == forward + sum(r['backward'] for r in rows.values())


@pytest.mark.parametrize('model', MODELS)
def test_flops_agree_with_torch_flop_counter(tmp_path, model):
    """An independent count: PyTorch's FlopCounterMode over the copied model, forward and backward."""
    torch = pytest.importorskip('torch')
    from torch.utils.flop_counter import FlopCounterMode

    from bench import torchnet
    param = nets.train_net(model, SIZE, WIDTH)
    net, weights, feed = fed_net(tmp_path, param)
    forward, train = flops.totals(flops.per_layer(param, net))
    model_t = torchnet.build(nets.graph(param), weights)
    inputs = {k: torch.from_numpy(v) for k, v in feed.items()}
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model_t(**inputs)
    assert counter.get_total_flops() == forward
    with FlopCounterMode(display=False) as counter:
        model_t(**inputs)['loss'].backward()
    assert counter.get_total_flops() == train


@pytest.mark.parametrize('model', MODELS)
def test_torch_copy_matches_caffe(tmp_path, model):
    """Same weights, same input: outputs, loss and every weight gradient agree to 1e-4."""
    torch = pytest.importorskip('torch')
    from bench import torchnet
    param = nets.train_net(model, SIZE, WIDTH)
    net, weights, feed = fed_net(tmp_path, param)
    net.forward()
    net.backward()
    model_t = torchnet.build(nets.graph(param), {k: [a.copy() for a in v] for k, v in weights.items()})
    blobs = model_t(**{k: torch.from_numpy(v) for k, v in feed.items()})
    blobs['loss'].backward()
    assert worker.rel_error(blobs['score'].detach().numpy(), net.blobs['score'].data) < 1e-4
    assert worker.rel_error(blobs['loss'].item(), net.blobs['loss'].data) < 1e-4
    for name, params in net.params.items():
        grad = model_t.param(name, 0).grad
        if name.startswith('upscore'):  # fixed bilinear weights: no gradient on either side
            assert grad is None
            continue
        assert worker.rel_error(grad.numpy(), params[0].diff) < 1e-4, name
        assert worker.rel_error(model_t.param(name, 1).grad.numpy(), params[1].diff) < 1e-4, name


def test_torch_copy_detects_a_wrong_weight(tmp_path):
    """The cross-check can fail: one perturbed filter shows in the output."""
    torch = pytest.importorskip('torch')
    from bench import torchnet
    param = nets.deploy_net('voc-fcn8s', SIZE, WIDTH)
    net, weights, feed = fed_net(tmp_path, param)
    net.forward()
    weights = {k: [a.copy() for a in v] for k, v in weights.items()}
    weights['conv3_1'][0][0] *= 1.5
    with torch.no_grad():
        out = torchnet.build(nets.graph(param), weights)(data=torch.from_numpy(feed['data']))['score']
    assert worker.rel_error(out.numpy(), net.blobs['score'].data) > 1e-3


def test_unsupported_layer_is_named():
    pytest.importorskip('torch')
    from bench import torchnet
    with pytest.raises(ValueError, match='prob: no PyTorch expression for Softmax'):
        torchnet.build([{'name': 'prob', 'type': 'Softmax', 'bottom': ['x'], 'top': ['y'], 'lr_mult': []}], {})


def test_sgemm_through_caffes_blas_is_correct():
    blas = ceiling.loaded_blas('libcaffe')
    assert 'blas' in blas or 'mkl' in blas or 'blis' in blas
    sgemm = ceiling.cblas_sgemm(blas)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((37, 53), dtype=np.float32)
    b = rng.standard_normal((53, 29), dtype=np.float32)
    c = np.empty((37, 29), np.float32)
    sgemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    assert ceiling.gflops(sgemm, (64, 64, 64), repeat=2) > 0


def run_bench(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'bench', *args], capture_output=True, text=True, cwd=cwd)


def test_cli_help_and_bad_arguments(tmp_path):
    out = run_bench('--help', cwd=ROOT)
    assert out.returncode == 0 and '--caffe LABEL=PYTHON' in out.stdout
    out = run_bench('--caffe', 'nolabel', cwd=ROOT)
    assert out.returncode != 0 and 'LABEL=PYTHON' in out.stderr
    out = run_bench('--sgemm-shapes', '12x12', '--no-torch', cwd=ROOT)
    assert out.returncode != 0 and '4096x4096x4096' in out.stderr


@pytest.mark.slow
def test_bench_end_to_end_tiny(tmp_path):
    """The whole run at tiny width and size: results.json, the table and the scaling plot."""
    pytest.importorskip('torch')
    out = run_bench('--models', 'voc-fcn8s', '--size', '32', '--scaling', '32', '48', '--width', '0.0625',
                    '--repeat', '1', '--warmup', '0', '--sgemm-shapes', '128x128x128',
                    '--out', str(tmp_path / 'r.json'), '--plot', str(tmp_path / 's.png'),
                    '--scratch', str(tmp_path / 'scratch'), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / 'r.json').read_text())
    assert (tmp_path / 's.png').stat().st_size > 1000
    rows = {(r['model'], r['size'], r['build']): r for r in results['summary']}
    assert set(rows) == {('voc-fcn8s', s, b) for s in (32, 48) for b in ('caffe', 'pytorch')}
    for r in rows.values():
        assert r['train_s'] > 0 and r['train_peak_mb'] >= r['baseline_mb'] > 0
    assert [p['size'] for p in results['scaling']['caffe']] == [32, 48]
    assert all(r['output_rel_error'] < 1e-4 and r['grad_rel_error'] < 1e-4
               for r in rows.values() if r['build'] == 'pytorch')
    assert results['ceilings']['caffe']['ceiling']['best'] > 0
    assert {r['name'] for r in results['profile']['caffe']} >= {'conv1_1', 'upscore8', 'loss'}
    assert results['data_layer']['shape'] == [1, 3, 32, 32] and results['data_layer']['median_s'] > 0
    assert 'voc-fcn8s' in out.stdout and 'sgemm ceilings' in out.stdout


def test_peak_memory_is_the_child_process_own():
    """A fresh worker process reports its own peak, not its (larger) parent's."""
    ballast = np.ones(300 * 2**20 // 8)  # 300 MB resident in this process
    code = 'from bench.worker import maxrss_mb; print(maxrss_mb())'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert worker.maxrss_mb() > 300 > float(out.stdout) > 1
    del ballast
