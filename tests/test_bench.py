"""The benchmark's own code: FLOPs from the net, sgemm through Caffe's BLAS, the Caffe -> PyTorch copy.

Reduced width and small inputs: the same topology as the benchmarked nets, a fraction of the work.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

import caffe

from caffe_fcn.bench import ceiling, flops, nets, worker
from common import REPO


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

    from caffe_fcn.bench import torchnet
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
    from caffe_fcn.bench import torchnet
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
    from caffe_fcn.bench import torchnet
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
    from caffe_fcn.bench import torchnet
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
    return subprocess.run([sys.executable, '-m', 'caffe_fcn.bench', *args], capture_output=True, text=True, cwd=cwd)


def test_cli_help_and_bad_arguments(tmp_path):
    out = run_bench('--help', cwd=REPO)
    assert out.returncode == 0 and '--caffe LABEL=PYTHON' in out.stdout
    out = run_bench('--caffe', 'nolabel', cwd=REPO)
    assert out.returncode != 0 and 'LABEL=PYTHON' in out.stderr
    out = run_bench('--sgemm-shapes', '12x12', '--no-torch', cwd=REPO)
    assert out.returncode != 0 and '4096x4096x4096' in out.stderr


@pytest.mark.slow
def test_bench_end_to_end_tiny(tmp_path):
    """The whole run at tiny width and size: results.json, the table and the scaling plot."""
    pytest.importorskip('torch')
    out = run_bench('--models', 'voc-fcn8s', '--size', '32', '--scaling', '32', '48', '--width', '0.0625',
                    '--repeat', '1', '--warmup', '0', '--sgemm-shapes', '128x128x128',
                    '--out', str(tmp_path / 'r.json'), '--plot', str(tmp_path / 's.png'),
                    '--scratch', str(tmp_path / 'scratch'), cwd=REPO)
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
    code = 'from caffe_fcn.bench.worker import maxrss_mb; print(maxrss_mb())'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, check=True)
    assert worker.maxrss_mb() > 300 > float(out.stdout) > 1
    del ballast


# --- the GPU option ------------------------------------------------------------------------------------------------

def cpu_only_caffe():
    from caffe_fcn.cli import BadInput
    from solvers.device import check_gpu
    try:
        check_gpu(0)
    except BadInput as err:
        return 'CPU-only' in str(err)
    return False


def test_gpu_option_defaults_to_the_papers_nets_and_no_scaling():
    from caffe_fcn.bench.__main__ import GPU_MODELS, MODELS, SCALING_SIZES, parse_args
    args, _ = parse_args(['--no-torch'])
    assert args.gpu is None and args.models == list(MODELS) and args.scaling == list(SCALING_SIZES)
    args, _ = parse_args(['--no-torch', '--gpu', '0'])
    assert args.gpu == 0 and args.models == list(GPU_MODELS) and args.scaling == []
    assert {'voc-fcn-alexnet', 'voc-fcn-googlenet'} < set(GPU_MODELS)
    args, _ = parse_args(['--no-torch', '--gpu', '1', '--models', 'voc-fcn8s', '--scaling', '500'])
    assert (args.gpu, args.models, args.scaling) == (1, ['voc-fcn8s'], [500])
    out = run_bench('--gpu', 'first', cwd=REPO)
    assert out.returncode == 2 and "--gpu: invalid int value: 'first'" in out.stderr


@pytest.mark.build_kind
def test_gpu_option_on_a_cpu_only_build_is_one_line_before_any_job(tmp_path):
    if not cpu_only_caffe():
        pytest.skip('this pycaffe is a CUDA build')
    for extra in ([], ['--no-torch']):
        out = run_bench('--gpu', '0', *extra, '--scratch', str(tmp_path / 'scratch'), '--out', str(tmp_path / 'r.json'),
                        cwd=REPO)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines() == [
            'python -m caffe_fcn.bench: error: --gpu 0: this pycaffe is a CPU-only build. Rebuild it with CUDA '
            '(`CUDA=1 make caffe`, needs the CUDA toolkit), or leave out --gpu to run on the CPU.']
        assert not (tmp_path / 'scratch').exists() and not (tmp_path / 'r.json').exists()


@pytest.mark.build_kind
def test_gpu_option_refuses_a_cpu_only_pytorch(monkeypatch):
    """With a Caffe that can use the GPU, a PyTorch that cannot is named before any job starts."""
    torch = pytest.importorskip('torch')
    if torch.version.cuda is not None:
        pytest.skip('this PyTorch is a CUDA build')
    import solvers.device
    from caffe_fcn.bench.__main__ import check_gpu, parse_args
    from caffe_fcn.cli import BadInput
    monkeypatch.setattr(solvers.device, 'check_gpu', lambda gpu, python: None)
    args, builds = parse_args(['--gpu', '0'])
    with pytest.raises(BadInput, match=r'this PyTorch \(.*\) is a CPU-only build.*--no-torch'):
        check_gpu(args, builds)
    check_gpu(*parse_args(['--gpu', '0', '--no-torch']))  # Caffe alone needs no CUDA PyTorch


def gpu_run(label, model, mode, ms, gpu_mb, **extra):
    run = {'label': label, 'model': model, 'size': 500, 'mode': mode, 'gpu': 0, 'median_s': ms / 1000,
           'maxrss_mb': 900.0, 'baseline_mb': 400.0, 'gpu_mb': gpu_mb, 'others_load': 0.0, 'others_niced_load': 0.0,
           'check': None if label == 'caffe' else {'output' if mode == 'forward' else 'grad/conv1_1': 1e-6}}
    return run | ({'flops': {'forward': 4e11, 'train': 1.2e12}} if label == 'caffe' else {}) | extra


def test_gpu_table_carries_the_papers_k40c_times(capsys):
    """The summary of GPU runs (made up here): ms, GPU memory, both PyTorch ratios, Table 1's time beside it."""
    from caffe_fcn.bench.__main__ import print_gpu_table, summarize
    runs = [gpu_run(label, model, mode, ms * (2 if mode == 'train' else 1), mb)
            for model in ('voc-fcn32s', 'voc-fcn8s')
            for label, ms, mb in (('caffe', 40, 3000), ('pytorch', 50, 2500), ('pytorch-tf32', 20, 2600))
            for mode in ('forward', 'train')]
    rows = {(r['model'], r['build']): r for r in summarize(runs, {})}
    caffe32 = rows['voc-fcn32s', 'caffe']
    assert caffe32['paper_k40c_forward_ms'] == 210 and rows['voc-fcn8s', 'caffe']['paper_k40c_forward_ms'] is None
    assert caffe32['forward_ms'] == pytest.approx(40) and caffe32['train_ms'] == pytest.approx(80)
    assert caffe32['forward_gpu_mb'] == 3000 and rows['voc-fcn32s', 'pytorch']['train_gpu_mb'] == 2500
    assert caffe32['speedup_vs_pytorch'] == pytest.approx(1.25)
    assert caffe32['forward_speedup_vs_pytorch_tf32'] == pytest.approx(0.5)
    assert 'fraction_of_ceiling' not in caffe32
    print_gpu_table(list(rows.values()))
    table = capsys.readouterr().out
    assert 'voc-fcn32s | 500 | caffe | 40.0 | 210 | 80.0 | 3000/3000 | 1.25/1.25 | 0.50/0.50' in table
    assert 'K40c fwd ms (paper)' in table


@pytest.mark.parametrize('model, checked', [('voc-fcn8s', ['conv1_1', 'score_fr']),
                                            ('voc-fcn-alexnet', ['conv1', 'score_fr']),
                                            ('voc-fcn-googlenet', ['conv1/7x7_s2', 'score_fr'])])
def test_checked_gradients_are_the_first_learned_layers_and_score_fr(model, checked):
    graph = nets.graph(nets.train_net(model, SIZE, WIDTH))
    assert worker.checked_params([(s['name'], s['type'], s['lr_mult']) for s in graph]) == checked


def test_the_cuda_runtime_is_found_in_the_process_maps():
    from caffe_fcn.bench.cuda import loaded_cudart
    maps = ('7f00-7f01 r-xp 00000000 08:01 1 /usr/local/cuda/lib64/libcudart.so.13.0.48\n'
            '7f02-7f03 r-xp 00000000 08:01 2 /x/.venv/lib/python3.11/site-packages/caffe/libcaffe.so\n')
    assert loaded_cudart(maps) == '/usr/local/cuda/lib64/libcudart.so.13.0.48'
    with pytest.raises(RuntimeError, match='is this pycaffe a CUDA build'):
        loaded_cudart(maps.split('\n')[1])


@pytest.mark.parametrize('tf32', [False, True])
def test_pytorch_on_the_gpu_sets_tf32_and_cudnn_benchmark_together(tf32):
    """float32 as Caffe computes it (TF32 off everywhere, cuDNN's default algorithms), or PyTorch's fast setting."""
    from types import SimpleNamespace as Space
    calls = []
    torch = Space(backends=Space(cuda=Space(matmul=Space(allow_tf32=not tf32)),
                                 cudnn=Space(allow_tf32=not tf32, benchmark=not tf32)),
                  device=lambda kind, index=None: Space(type=kind, index=index),
                  cuda=Space(set_device=lambda device: calls.append(('set_device', device.index))),
                  zeros=lambda n, device: calls.append(('context', device.index)))
    device = worker.torch_device(torch, {'gpu': 1, 'tf32': tf32})
    assert (device.type, device.index) == ('cuda', 1) and calls == [('set_device', 1), ('context', 1)]
    assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
    assert torch.backends.cudnn.benchmark is tf32
    assert worker.torch_device(torch, {'gpu': None}).type == 'cpu'
