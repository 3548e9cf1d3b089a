"""Caffe on the GPU computes what it computes on the CPU: every layer type the FCNs use, forward and backward, a
full-width FCN-8s, training and resuming through the driver, scoring and inference.

The tests marked `gpu` need a CUDA build of pycaffe and a visible device (GPU 0, or $FCN_TEST_GPU); elsewhere they
are skipped with the reason.  The comparison harness (tests/compare_devices.py: the nets, their weights and inputs,
the forward and backward runs in child processes, the error measure) is the same either way, and the tests
without the mark run it CPU against CPU here, whole-image against tiled im2col, so its nets and gradient plumbing
are known to work where no GPU is.  The tools' refusal of --gpu on a CPU-only build is checked here too.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import test_solvers
from caffe_fcn.bench import nets
from caffe_fcn.bench.worker import rel_error
from caffe_fcn.cli import BadInput
from solvers.device import check_gpu
from common import QUIET, REPO, checked, child

HARNESS = Path(__file__).with_name('compare_devices.py')
GPU = int(os.environ.get('FCN_TEST_GPU', '0'))
LAYER_TOLERANCE = 1e-5  # relative L2 error of every compared array
WHOLE, TINY = '100000', '0.01'  # CAFFE_COL_TILE_MB: one im2col buffer; tiles of a few rows (CAFFE_COL_TILES builds)

data_root, he8_weights = test_solvers.data_root, test_solvers.he8_weights  # the training tests' synthetic data


@pytest.fixture(scope='session')
def gpu():
    """GPU N, probed in a child (a CPU-only Caffe aborts on set_device); skips the test where it is not usable."""
    try:
        check_gpu(GPU)
    except BadInput as err:
        pytest.skip(f'no CUDA device for Caffe: {err}')
    return GPU


# --- the layers: each type the FCNs use, in shapes that take the patched paths -----------------------------------

def conv(name, bottom, top, params, lr=''):
    return f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" {lr} ' \
           f'convolution_param {{ {params} }} }}'


def deconv(params, lr=''):
    return f'layer {{ name: "d" type: "Deconvolution" bottom: "x" top: "y" {lr} convolution_param {{ {params} }} }}'


def pool(params):
    return f'layer {{ name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param {{ {params} }} }}'


def loss(normalize):
    return ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" '
            f'loss_param {{ ignore_label: 255 normalize: {normalize} }} }}')


FIXED = 'param { lr_mult: 0 }'  # as the FCNs' bilinear upsampling and at-once skip scales
ABC = {'a': (2, 5, 13, 17), 'b': (2, 5, 13, 17), 'c': (2, 5, 13, 17)}

# name: ({input: shape}, layers).  The CPU side's im2col buffer exceeds the 4 MB tile threshold in the first two
# convolutions (tiled, scripts/patches/col-tiles.patch); 1x1 convolutions skip im2col; one net chains convolutions of
# different buffer sizes through the shared col buffer (SHARE_COL_PATCHES), forward and backward.
LAYER_CASES = {
    'conv-vgg-3x3-tiled': ({'x': (2, 32, 64, 80)}, conv('c', 'x', 'y', 'num_output: 16 kernel_size: 3 pad: 1')),
    'conv-first-pad-100': ({'x': (1, 3, 24, 20)}, conv('c', 'x', 'y', 'num_output: 8 kernel_size: 3 pad: 100')),
    'conv-fc6-7x7': ({'x': (1, 32, 16, 16)}, conv('c', 'x', 'y', 'num_output: 24 kernel_size: 7')),
    'conv-1x1-score': ({'x': (2, 24, 20, 20)}, conv('c', 'x', 'y', 'num_output: 12 kernel_size: 1')),
    'conv-alexnet-11x11-stride-4': ({'x': (1, 3, 67, 67)},
                                    conv('c', 'x', 'y', 'num_output: 8 kernel_size: 11 stride: 4 pad: 100')),
    'conv-alexnet-grouped': ({'x': (2, 6, 31, 27)},
                             conv('c', 'x', 'y', 'num_output: 8 kernel_size: 5 pad: 2 group: 2')),
    'conv-googlenet-7x7-stride-2': ({'x': (1, 3, 45, 45)},
                                    conv('c', 'x', 'y', 'num_output: 8 kernel_size: 7 stride: 2 pad: 3')),
    'convs-sharing-the-col-buffer': ({'x': (1, 8, 48, 48)}, '\n'.join([
        conv('c1', 'x', 'h1', 'num_output: 16 kernel_size: 3 pad: 1'),
        'layer { name: "r1" type: "ReLU" bottom: "h1" top: "h1" }',
        conv('c2', 'h1', 'h2', 'num_output: 8 kernel_size: 5 pad: 2'),
        conv('c3', 'h2', 'h3', 'num_output: 8 kernel_size: 3 stride: 2'),
        conv('c4', 'h3', 'y', 'num_output: 4 kernel_size: 1')])),
    'deconv-fcn-upscore-fixed': ({'x': (1, 6, 9, 11)},
                                 deconv('num_output: 6 kernel_size: 4 stride: 2 bias_term: false', FIXED)),
    'deconv-alexnet-63-stride-32': ({'x': (1, 4, 3, 3)},
                                    deconv('num_output: 4 kernel_size: 63 stride: 32 bias_term: false', FIXED)),
    'deconv-grouped-learned': ({'x': (2, 6, 9, 11)},
                               deconv('num_output: 6 kernel_size: 16 stride: 8 group: 3 bias_term: false')),
    'crop': ({'a': (2, 4, 30, 27), 'b': (2, 4, 20, 16)},
             'layer { name: "c" type: "Crop" bottom: "a" bottom: "b" top: "y" crop_param { axis: 2 offset: 5 '
             'offset: 3 } }'),
    'eltwise-sum-coeffs': (ABC, 'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" '
                                'eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 } }'),
    'max-pool-2x2-ceil': ({'x': (2, 6, 23, 17)}, pool('pool: MAX kernel_size: 2 stride: 2')),
    'max-pool-3x3-stride-2': ({'x': (2, 6, 23, 17)}, pool('pool: MAX kernel_size: 3 stride: 2')),
    'max-pool-3x3-pad-1': ({'x': (2, 6, 23, 17)}, pool('pool: MAX kernel_size: 3 stride: 1 pad: 1')),
    'ave-pool-googlenet-7x7': ({'x': (2, 16, 7, 7)}, pool('pool: AVE kernel_size: 7 stride: 1')),
    'ave-pool-3x3-stride-2-pad-1': ({'x': (2, 6, 23, 17)}, pool('pool: AVE kernel_size: 3 stride: 2 pad: 1')),
    'relu-in-place': ({'x': (2, 8, 19, 23)}, 'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }'),
    'dropout-test-phase': ({'x': (2, 8, 19, 23)},
                           'layer { name: "d" type: "Dropout" bottom: "x" top: "x" dropout_param { '
                           'dropout_ratio: 0.5 } }'),
    'softmax-loss-valid': ({'x': (2, 4, 13, 11), 'label': (2, 1, 13, 11)}, loss('true')),
    'softmax-loss-batch-size': ({'x': (2, 4, 13, 11), 'label': (2, 1, 13, 11)}, loss('false')),
    'concat': ({'a': (1, 3, 9, 9), 'b': (1, 5, 9, 9), 'c': (1, 2, 9, 9)},
               'layer { name: "c" type: "Concat" bottom: "a" bottom: "b" bottom: "c" top: "y" }'),
    'scale-fixed-at-once': ({'x': (2, 6, 9, 9)},
                            f'layer {{ name: "s" type: "Scale" bottom: "x" top: "y" {FIXED} scale_param {{ '
                            'filler { type: "constant" value: 0.01 } } }'),
    'scale-learned-with-bias': ({'x': (2, 6, 9, 9)},
                                'layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { '
                                'bias_term: true } }'),
    'lrn-alexnet-googlenet': ({'x': (2, 16, 13, 13)},
                              'layer { name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 5 '
                              'alpha: 0.0001 beta: 0.75 } }'),
    'lrn-strong': ({'x': (2, 16, 13, 13)},
                   'layer { name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 5 alpha: 2 '
                   'beta: 0.75 } }'),
}
NO_INPUT_GRADIENT = {'softmax-loss-valid': {'label'}, 'softmax-loss-batch-size': {'label'}, 'crop': {'b'}}


def layer_net(inputs, layers):
    text = 'force_backward: true\n'
    for name, shape in inputs.items():
        dims = ' '.join(f'dim: {d}' for d in shape)
        text += f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'
    return text + layers + '\n'


def write_cases(folder, nets_text, blobs=None):
    """Each case's prototxt in `folder`; the harness's case list."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, text in nets_text.items():
        path = folder / f'{name}.prototxt'
        path.write_text(text)
        cases.append({'name': name, 'net': str(path), 'blobs': blobs})
    return cases


def run_on(device, cases, out, tile_mb=None, seed=0):
    """The harness in a child process on `device` (None: the CPU); {case: {key: array}}."""
    out.mkdir(parents=True, exist_ok=True)
    job = out / 'job.json'
    job.write_text(json.dumps({'gpu': device, 'seed': seed, 'out': str(out), 'cases': cases}))
    env = QUIET if tile_mb is None else {**QUIET, 'CAFFE_COL_TILE_MB': tile_mb}
    result = subprocess.run([sys.executable, str(HARNESS), str(job)], capture_output=True, text=True, env=env,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = {}
    for case in cases:
        with np.load(out / f'{case["name"]}.npz') as npz:
            loaded[case['name']] = {key.replace('|', '/'): npz[key] for key in npz.files}
    return loaded


def errors(got, want):
    """{array: relative L2 error of `got` against `want`}; both runs must have kept the same arrays."""
    assert sorted(got) == sorted(want)
    return {key: rel_error(got[key], want[key]) for key in want}


def assert_close(got, want, tolerance, what):
    found = errors(got, want)
    worst = sorted(found.items(), key=lambda item: -item[1])[:5]
    assert worst[0][1] <= tolerance, f'{what}: worst relative errors {worst} (tolerance {tolerance:g})'


def assert_gradients_flow(arrays, case):
    """The backward pass reached every input (but those a layer takes no gradient for) and every parameter
    (force_backward computes the fixed ones' too): the comparison is not of zeros."""
    inputs, _ = LAYER_CASES[case]
    for name in set(inputs) - NO_INPUT_GRADIENT.get(case, set()):
        assert np.any(arrays[f'diff/{name}']), f'{case}: no gradient reached input {name}'
    for key, diff in arrays.items():
        assert np.any(diff) or not key.startswith('param/'), f'{case}: {key} has no gradient'


@pytest.fixture(scope='module')
def layer_cases(tmp_path_factory):
    return write_cases(tmp_path_factory.mktemp('layer-nets'), {k: layer_net(*v) for k, v in LAYER_CASES.items()})


@pytest.fixture(scope='module')
def cpu_layers(layer_cases, tmp_path_factory):
    """The reference: every layer net on the CPU, whole-image im2col."""
    return run_on(None, layer_cases, tmp_path_factory.mktemp('cpu-whole'), tile_mb=WHOLE)


# --- the harness, CPU against CPU (runs everywhere) --------------------------------------------------------------

@pytest.fixture(scope='module')
def cpu_tiled_layers(layer_cases, tmp_path_factory):
    return run_on(None, layer_cases, tmp_path_factory.mktemp('cpu-tiny-tiles'), tile_mb=TINY)


@pytest.mark.parametrize('case', LAYER_CASES)
def test_harness_runs_each_layer_net_and_its_gradients_cpu_against_cpu(case, cpu_layers, cpu_tiled_layers):
    assert_gradients_flow(cpu_layers[case], case)
    assert_close(cpu_tiled_layers[case], cpu_layers[case], LAYER_TOLERANCE, f'{case}, tiled against whole im2col')


def test_harness_sees_a_difference(layer_cases, cpu_layers, tmp_path):
    """Other weights and inputs (another seed) are far outside the tolerance: the comparison can fail."""
    case = [c for c in layer_cases if c['name'] == 'conv-vgg-3x3-tiled']
    other = run_on(None, case, tmp_path, seed=1)['conv-vgg-3x3-tiled']
    assert min(errors(other, cpu_layers['conv-vgg-3x3-tiled']).values()) > 0.1


# --- the layers on the GPU ---------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def gpu_layers(gpu, layer_cases, tmp_path_factory):
    return run_on(gpu, layer_cases, tmp_path_factory.mktemp('gpu'))


@pytest.mark.gpu
@pytest.mark.parametrize('case', LAYER_CASES)
def test_layer_forward_and_backward_on_the_gpu_equal_the_cpu(case, cpu_layers, gpu_layers):
    assert_gradients_flow(gpu_layers[case], case)
    assert_close(gpu_layers[case], cpu_layers[case], LAYER_TOLERANCE, f'{case} on GPU {GPU} against the CPU')


# --- a whole FCN-8s ------------------------------------------------------------------------------------------------

FCN_SIZE = 64
# Through 16 layers and a sum over every pixel in float32, a whole net's outputs and weight gradients differ more
# than one layer's between any two orders of summation (two CPU builds: the bench saw 8e-7 and 2e-4 at 500 x 500).
FCN_TOLERANCE = {'data/score': 1e-4, 'data/loss': 1e-4, 'param/': 1e-3, 'diff/data': 1e-3}


def fcn8s_case(folder, width):
    param = nets.train_net('voc-fcn8s', FCN_SIZE, width)
    param.force_backward = True
    return write_cases(folder, {f'voc-fcn8s-w{width:g}': text_format.MessageToString(param)},
                       blobs=['data', 'score', 'loss'])


def assert_fcn_close(got, want, what):
    found = errors(got, want)
    for prefix, tolerance in FCN_TOLERANCE.items():
        worst = max((e, k) for k, e in found.items() if k.startswith(prefix))
        assert worst[0] <= tolerance, f'{what}: {worst[1]} differs by {worst[0]:.1e} (tolerance {tolerance:g})'
    assert np.any(want['param/conv1_1/0']) and np.any(want['diff/data'])


def test_harness_runs_fcn8s_cpu_against_cpu(tmp_path):
    """The GPU test's net at 1/16 width: tiled against whole im2col."""
    case = fcn8s_case(tmp_path / 'net', 1 / 16)
    name = case[0]['name']
    whole = run_on(None, case, tmp_path / 'whole', tile_mb=WHOLE)[name]
    tiled = run_on(None, case, tmp_path / 'tiled', tile_mb=TINY)[name]
    assert_fcn_close(tiled, whole, 'reduced-width FCN-8s, tiled against whole im2col')


@pytest.mark.gpu
def test_full_width_fcn8s_on_the_gpu_equals_the_cpu(gpu, tmp_path):
    case = fcn8s_case(tmp_path / 'net', 1.0)
    name = case[0]['name']
    cpu = run_on(None, case, tmp_path / 'cpu')[name]
    on_gpu = run_on(gpu, case, tmp_path / 'gpu')[name]
    assert_fcn_close(on_gpu, cpu, f'full-width FCN-8s {FCN_SIZE}x{FCN_SIZE} on GPU {gpu} against the CPU')


# --- training, resuming, scoring and inference through the tools on the GPU ---------------------------------------

@pytest.fixture(scope='module')
def gpu_run(gpu, data_root, he8_weights, tmp_path_factory):
    """voc-fcn8s/solve.py --gpu N: two rounds of five steps at reduced width on the synthetic data."""
    out = tmp_path_factory.mktemp('gpu-run')
    result = test_solvers.solve('voc-fcn8s', '--gpu', gpu, '--width', test_solvers.WIDTH, '--weights', he8_weights,
                                '--data-root', data_root, '--rounds', 2, '--steps', 5, '--base-lr', 2e-8,
                                '--seed', 0, '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.gpu
def test_solve_py_trains_on_the_gpu(gpu_run, gpu):
    rows = test_solvers.read_log(gpu_run / 'log.jsonl')
    assert [row['iter'] for row in rows] == [5, 10]
    assert all(np.isfinite(row['train_loss_per_pixel']) for row in rows)
    assert (gpu_run / 'train_iter_10.caffemodel').is_file() and (gpu_run / 'train_iter_10.solverstate').is_file()
    assert json.loads((gpu_run / 'run.json').read_text())['gpu'] == gpu


@pytest.mark.gpu
def test_resume_on_the_gpu_restores_iteration_weights_momentum_and_continues_identically(gpu, data_root, tmp_path):
    """tests/test_solvers.py's resume check (two rounds straight against one, a snapshot and one more), on the GPU."""
    stdout = checked(child(test_solvers.print_resumed_difference, data_root, tmp_path, gpu, timeout=1200))
    worst = json.loads(stdout.strip().splitlines()[-1])['worst']
    assert worst == 0.0, f'the resumed run on the GPU differs from the uninterrupted one by {worst}'


def score(weights, data_root, out, *device):
    result = subprocess.run([test_solvers.SCORE, 'voc-fcn8s', '--weights', weights, '--width', test_solvers.WIDTH,
                             '--data-root', data_root, '--json', out, *map(str, device)], capture_output=True,
                            text=True, env=QUIET, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(Path(out).read_text())['score']


@pytest.mark.gpu
def test_fcn_score_on_the_gpu_scores_as_the_cpu(gpu_run, gpu, data_root, tmp_path):
    weights = gpu_run / 'train_iter_10.caffemodel'
    on_cpu = score(weights, data_root, tmp_path / 'cpu.json')
    on_gpu = score(weights, data_root, tmp_path / 'gpu.json', '--gpu', gpu)
    for metric in ('overall_acc', 'mean_acc', 'mean_iu', 'fwavacc'):  # a pixel on a near-tie may flip
        assert on_gpu[metric] == pytest.approx(on_cpu[metric], abs=1e-3), metric


@pytest.mark.gpu
def test_fcn_infer_on_the_gpu_segments_as_the_cpu(gpu_run, gpu, data_root, tmp_path):
    from PIL import Image

    image = next((data_root / 'pascal' / 'VOC2011' / 'JPEGImages').glob('*.jpg'))
    labels = {}
    for name, device in (('cpu', []), ('gpu', ['--gpu', str(gpu)])):
        result = subprocess.run([str(Path(sys.executable).parent / 'fcn-infer'), 'voc-fcn8s', '--weights',
                                 gpu_run / 'train_iter_10.caffemodel', '--width', test_solvers.WIDTH, image,
                                 '--out', tmp_path / name, *device], capture_output=True, text=True, env=QUIET,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        labels[name] = np.array(Image.open(tmp_path / name / f'{image.stem}.png'))
    assert np.mean(labels['gpu'] != labels['cpu']) < 1e-3


# --- every tool refuses --gpu on a CPU-only build, saying how to rebuild --------------------------------------------

def tools(tmp_path):
    image = tmp_path / 'image.png'
    from PIL import Image
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(image)
    python, bin_ = sys.executable, Path(sys.executable).parent
    return {
        'solve.py': [python, REPO / 'voc-fcn8s' / 'solve.py', '--out', tmp_path / 'run'],
        'fcn-train': [bin_ / 'fcn-train', 'voc-fcn8s', '--out', tmp_path / 'run'],
        'fcn-score': [bin_ / 'fcn-score', 'voc-fcn8s'],
        'fcn-infer': [bin_ / 'fcn-infer', 'voc-fcn8s', image, '--out', tmp_path / 'labels'],
        'demo': [python, '-m', 'solvers.demo', '--out', tmp_path / 'demo'],
    }


@pytest.mark.parametrize('tool', ['solve.py', 'fcn-train', 'fcn-score', 'fcn-infer', 'demo'])
def test_gpu_on_a_cpu_only_build_says_how_to_rebuild(tool, tmp_path):
    try:
        check_gpu(GPU)
        pytest.skip(f'this pycaffe can use GPU {GPU}')
    except BadInput as err:
        if 'CPU-only' not in str(err):
            pytest.skip(f'a CUDA build without a usable GPU {GPU}: {err}')
    result = subprocess.run([*map(str, tools(tmp_path)[tool]), '--gpu', str(GPU)], capture_output=True, text=True,
                            env=QUIET, cwd='/', timeout=300)
    assert result.returncode == 2, (tool, result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'CPU-only' in lines[0] and 'CUDA=1 make caffe' in lines[0], result.stderr
    assert not list(tmp_path.glob('*/')), 'nothing is written before the device is checked'
