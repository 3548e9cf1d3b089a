"""Hostile weights: NaN or infinite values and files that lack layers (a file cut at a layer boundary parses)
are refused by every tool that reads weights, naming the layers, before they can give a plausible result."""
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from common import BIN, ENV, REPO, child, child_command

WIDTH = '1/16'
EXPORT = all(importlib.util.find_spec(m) for m in ('torch', 'onnx', 'onnxruntime'))  # fcn-export's extra


def tool(*args, timeout=300):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=ENV, cwd='/', timeout=timeout)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Synthetic data; good, NaN and truncated voc-fcn8s weights; a good and a truncated voc-fcn32s file (the cut
    one without fc7, score_fr and the 32s upscore, as a file cut at a layer boundary)."""
    import netgen
    import surgery
    from caffe.proto import caffe_pb2
    from caffe_fcn.bench.worker import init_weights
    from caffe_fcn.datalayers.synth import synthesize

    root = tmp_path_factory.mktemp('hostile')
    synthesize('sbdd', root / 'data' / 'sbdd', count=8, seed=0, size=(64, 64))
    synthesize('voc', root / 'data' / 'pascal', count=8, seed=0, size=(64, 64))
    paths = {'data': root / 'data'}
    for name in ('voc-fcn8s', 'voc-fcn32s'):
        net = surgery.instantiate(netgen.net(name, 'deploy', width=1 / 16))
        surgery.stand_in_trunk(net, seed=0)
        surgery.interp(net)
        paths[name] = root / f'{name}.caffemodel'
        net.save(str(paths[name]))
        whole = caffe_pb2.NetParameter.FromString(paths[name].read_bytes())
        cut = caffe_pb2.NetParameter(name=whole.name)
        cut.layer.extend(layer for layer in whole.layer if layer.name not in ('fc7', 'score_fr', 'upscore'))
        paths[f'{name}-cut'] = root / f'{name}-cut.caffemodel'
        paths[f'{name}-cut'].write_bytes(cut.SerializeToString())
        if name == 'voc-fcn8s':
            huge = {layer: [blob.data.copy() for blob in blobs] for layer, blobs in net.params.items()}
            net.params['conv3_1'][0].data[...] = 3e38  # finite, but the forward pass overflows
            paths['huge'] = root / 'huge.caffemodel'
            net.save(str(paths['huge']))
            for blobs in net.params.values():
                for blob in blobs:
                    blob.data[...] = 0
            paths['zero'] = root / 'zero.caffemodel'
            net.save(str(paths['zero']))
            init_weights(net, 0)
            paths['random'] = root / 'random.caffemodel'
            net.save(str(paths['random']))
            for layer, arrays in huge.items():
                for blob, array in zip(net.params[layer], arrays, strict=True):
                    blob.data[...] = array
            net.params['conv3_1'][0].data[0, 0, 0, 0] = np.nan
            net.params['score_fr'][1].data[0] = np.inf
            paths['nan'] = root / 'nan.caffemodel'
            net.save(str(paths['nan']))
    image = root / 'image.png'
    from PIL import Image
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(image)
    paths['image'] = image
    return paths


def score(files, weights):
    return tool(BIN / 'fcn-score', 'voc-fcn8s', '--weights', weights, '--width', WIDTH, '--data-root', files['data'])


def infer(files, weights, out):
    return tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', weights, '--width', WIDTH, files['image'], '--out', out)


def refused(result, *words):
    assert result.returncode == 2, (result.returncode, result.stdout[-1000:], result.stderr[-2000:])
    assert all(word in result.stderr for word in words), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and 'mean_iu' not in result.stdout


def test_good_weights_score_and_segment(files, tmp_path):
    assert score(files, files['voc-fcn8s']).returncode == 0
    assert infer(files, files['voc-fcn8s'], tmp_path).returncode == 0


def test_nan_weights_do_not_score_or_segment(files, tmp_path):
    refused(score(files, files['nan']), 'NaN or infinite weights in conv3_1, score_fr')
    refused(infer(files, files['nan'], tmp_path), 'NaN or infinite weights in conv3_1, score_fr')
    assert not list(tmp_path.iterdir())


def test_weights_whose_output_overflows_do_not_score_segment_or_export(files, tmp_path):
    """Finite weights pass every weights check, but the scores they give are not numbers: refused, one line,
    naming the first layer whose output is not finite, and nothing written."""
    for result in (score(files, files['huge']), infer(files, files['huge'], tmp_path / 'infer'),
                   tool(BIN / 'fcn-export', 'voc-fcn8s', '--weights', files['huge'], '--width', WIDTH, '--format',
                        'onnx', '--out', tmp_path / 'huge.onnx') if EXPORT else None):
        if result is None:
            continue
        assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
        assert "non-finite outputs (NaN or infinity): the first is layer 'conv3_1'" in result.stderr
        errors = [line for line in result.stderr.splitlines() if 'error' in line]
        assert errors == [result.stderr.strip().splitlines()[-1]]  # one line, the last
        assert 'Traceback' not in result.stderr and 'mean_iu' not in result.stdout
    assert not list(tmp_path.rglob('*.png')) and not list(tmp_path.rglob('*.onnx'))


def test_all_zero_weights_score_and_segment_with_a_warning(files, tmp_path):
    for result in (score(files, files['zero']), infer(files, files['zero'], tmp_path)):
        assert result.returncode == 0, result.stderr[-2000:]
        assert 'warning: the net scores every pixel alike' in result.stderr
    assert 'warning' not in score(files, files['random']).stderr  # scores that vary get none


def test_a_file_lacking_layers_does_not_score_or_segment(files, tmp_path):
    refused(score(files, files['voc-fcn8s-cut']), 'has no weights for 2 layer(s) of the net: fc7, score_fr')
    refused(infer(files, files['voc-fcn8s-cut'], tmp_path), 'has no weights for 2 layer(s)')


def test_surgery_refuses_nan_and_incomplete_sources(files, tmp_path):
    import netgen

    net = tmp_path / 'fcn8s.prototxt'
    net.write_text(str(netgen.net('voc-fcn8s', 'deploy', width=1 / 16)))
    for weights, words in ((files['nan'], 'NaN or infinite'), (files['voc-fcn8s-cut'], 'no weights for 2')):
        result = tool(sys.executable, '-m', 'surgery.cli', 'transplant', '--src-net', net, '--src-weights', weights,
                      '--dst-net', net, '--out', tmp_path / 'out.caffemodel')
        refused(result, words)
        assert not (tmp_path / 'out.caffemodel').exists()


def test_training_refuses_nan_and_a_previous_stage_lacking_layers(files, tmp_path):
    common = ['--width', WIDTH, '--data-root', files['data'], '--rounds', 1, '--steps', 1, '--out', tmp_path]
    refused(tool(sys.executable, REPO / 'voc-fcn8s' / 'solve.py', '--weights', files['nan'], *common),
            'NaN or infinite weights in conv3_1')
    refused(tool(sys.executable, REPO / 'voc-fcn16s' / 'solve.py', '--weights', files['voc-fcn32s-cut'], *common),
            'lacks fc7, score_fr of the trained voc-fcn32s')
    started = tool(sys.executable, REPO / 'voc-fcn16s' / 'solve.py', '--weights', files['voc-fcn32s'], *common)
    assert started.returncode == 0, started.stderr[-2000:]
    left = started.stdout.split('left at initialization: ')[1].splitlines()[0].split(', ')
    assert sorted(left) == ['score_pool4', 'upscore16', 'upscore2']  # the 16s layers the 32s net lacks


def test_score_refuses_more_images_than_the_split_has(files):
    result = tool(BIN / 'fcn-score', 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--width', WIDTH, '--data-root',
                  files['data'], '--images', 1000)
    refused(result, '--images 1000: the val split has')
    assert tool(BIN / 'fcn-score', 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--images', -1).returncode == 2


def test_an_unexpected_error_is_one_line_and_a_log(capsys):
    from caffe_fcn import cli

    def broken():
        raise RuntimeError('something nobody planned for')
    assert cli.tool('fcn-x')(broken)() == cli.FAILURE
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('fcn-x: error: RuntimeError: something nobody planned for')
    log = Path(err.split('the traceback is in ')[1].split(';')[0])
    assert 'Traceback' in log.read_text() and 'raise RuntimeError' in log.read_text()
    log.unlink()


# --- training runs: resume states, the --out lock, signals, disk space -------------------------------------

def train_voc_fcn8s(patch, *argv):
    """voc-fcn8s/solve.py's main on ARGV, its status the exit status; first, where `patch` names one, that patch
    (a function of this module)."""
    if patch:
        globals()[patch]()
    from solvers.driver import main
    sys.exit(main('voc-fcn8s', list(argv)))


def slow_snapshots():
    """A patch: each snapshot takes 3 s longer."""
    from solvers import driver

    save = driver.snapshot
    driver.snapshot = lambda *a: (time.sleep(3), save(*a))[1]


def a_full_disk():
    """A patch: the disk has 1 MB free."""
    import collections
    import shutil

    usage = collections.namedtuple('Usage', 'total used free')
    shutil.disk_usage = lambda path: usage(10 ** 9, 10 ** 9, 1 << 20)


def killed_after_the_iteration_4_snapshot():
    """A patch: the process is killed (SIGKILL) when train_iter_4's snapshot is complete, its log row not written."""
    from solvers import driver

    keep = driver.keep_best

    def keep_best(model, mean_iu, best):
        if model.name.endswith('_iter_4.caffemodel'):
            os.kill(os.getpid(), signal.SIGKILL)
        return keep(model, mean_iu, best)
    driver.keep_best = keep_best


def a_slow_run_record():
    """A patch: writing the run record prints 'recording' and takes 30 s longer."""
    from solvers import runs

    record = runs.record
    runs.record = lambda *a: (print('recording', flush=True), time.sleep(30), record(*a))[2]


def train(files, out, *extra, patch=None, popen=False):
    """voc-fcn8s/solve.py's main in a child (train_voc_fcn8s), after `patch` (one of the patches above)."""
    start = [] if '--resume' in extra else ['--weights', files['voc-fcn8s']]
    argv = [*start, '--width', WIDTH, '--data-root', files['data'], '--out', out, *extra]
    args = (train_voc_fcn8s, patch.__name__ if patch else '', *argv)
    if popen:
        return subprocess.Popen(child_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=ENV, cwd='/')
    return child(*args, env=ENV, timeout=300)


@pytest.fixture(scope='module')
def snapshot(files, tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    result = train(files, out, '--rounds', 1, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / 'train_iter_2.solverstate'


def edited_state(snapshot, tmp_path, edit):
    from caffe.proto import caffe_pb2

    state = caffe_pb2.SolverState.FromString(snapshot.read_bytes())
    edit(state)
    for suffix in ('.caffemodel', '.data.json'):
        (tmp_path / f'train_iter_2{suffix}').write_bytes(snapshot.with_suffix(suffix).read_bytes())
    path = tmp_path / 'train_iter_2.solverstate'
    path.write_bytes(state.SerializeToString())
    return path


@pytest.mark.parametrize('case, message', [
    ('negative', 'it says iteration -5'), ('short history', 'holds fewer values than its shape says')])
def test_resume_refuses_a_state_it_cannot_trust(files, snapshot, tmp_path, case, message):
    edits = {'negative': lambda s: setattr(s, 'iter', -5),
             'short history': lambda s: s.history[0].data.__delitem__(slice(1, None))}
    state = edited_state(snapshot, tmp_path, edits[case])
    refused(train(files, tmp_path / 'out', '--resume', state, '--rounds', 2, '--steps', 2), message)


def test_resuming_a_finished_run_says_so(files, snapshot, tmp_path):
    state = edited_state(snapshot, tmp_path, lambda s: setattr(s, 'iter', 10 ** 9))
    result = train(files, tmp_path / 'out', '--resume', state, '--rounds', 2, '--steps', 2)
    assert result.returncode == 0 and 'already finished at iteration 1000000000' in result.stdout, result.stderr
    assert not list((tmp_path / 'out').glob('*.caffemodel'))


def wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert path.exists(), proc.communicate()[1][-2000:]


def test_a_second_run_into_the_same_out_is_refused(files, tmp_path):
    first = train(files, tmp_path, '--rounds', 1, '--steps', 100000, popen=True)
    try:
        wait_for(tmp_path / 'run' / 'solver.prototxt', first)
        refused(train(files, tmp_path, '--rounds', 1, '--steps', 1), f'is in use by another run (PID {first.pid})')
    finally:
        first.kill()
        first.communicate()
    # killed before its first snapshot: nothing of it to keep, so a plain retry goes on (the lock died too)
    assert train(files, tmp_path, '--rounds', 1, '--steps', 1).returncode == 0
    refused(train(files, tmp_path, '--rounds', 1, '--steps', 1), 'holds a previous run (best.caffemodel')
    assert train(files, tmp_path, '--rounds', 1, '--steps', 1, '--overwrite').returncode == 0


def test_sigterm_saves_a_snapshot_and_a_second_signal_waits_for_it(files, tmp_path):
    proc = train(files, tmp_path, '--rounds', 1, '--steps', 100000, patch=slow_snapshots, popen=True)
    wait_for(tmp_path / 'run' / 'solver.prototxt', proc)
    time.sleep(6)  # into the steps
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)  # inside the (slowed) snapshot
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 'saving a snapshot first' in err and 'resume with --resume' in out
    (model,) = tmp_path.glob('train_iter_*.caffemodel')
    assert model.with_suffix('.solverstate').is_file()


def test_a_full_disk_stops_before_caffe_writes(files, tmp_path):
    result = train(files, tmp_path, '--rounds', 1, '--steps', 1, patch=a_full_disk)
    assert result.returncode == 1 and 'MB free, a snapshot needs' in result.stderr, result.stderr[-2000:]
    assert not list(tmp_path.glob('*.caffemodel')) and 'Traceback' not in result.stderr


# --- nets Caffe would abort on, and Python layers that run arbitrary code ----------------------------------

BAD_NETS = {
    'unknown bottom': ('layer { name: "c" type: "Convolution" bottom: "nowhere" top: "c" '
                       'convolution_param { num_output: 2 kernel_size: 3 } }', 'Unknown bottom blob'),
    'unknown type': ('layer { name: "x" type: "NoSuchLayer" bottom: "data" top: "x" }', 'Unknown layer type'),
    'kernel larger than input': ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                 'convolution_param { num_output: 2 kernel_size: 9 } }', 'Check failed'),
}


@pytest.mark.parametrize('case', BAD_NETS)
def test_transplant_refuses_a_net_caffe_cannot_build(files, tmp_path, case):
    text, reason = BAD_NETS[case]
    bad = tmp_path / 'bad.prototxt'
    bad.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 '
                   'dim: 4 } } }\n' + text)
    good = tmp_path / 'good.prototxt'
    import netgen
    good.write_text(str(netgen.net('voc-fcn8s', 'deploy', width=1 / 16)))
    result = tool(sys.executable, '-m', 'surgery.cli', 'transplant', '--src-net', good, '--src-weights',
                  files['voc-fcn8s'], '--dst-net', bad, '--out', tmp_path / 'out.caffemodel')
    refused(result, 'Caffe cannot build this net', reason)


def test_a_python_layer_may_only_name_fcns_modules(files, tmp_path):
    evil = tmp_path / 'evil.prototxt'
    evil.write_text('layer { name: "p" type: "Python" top: "p" python_param { module: "builtins" layer: "print" } }')
    args = [sys.executable, '-m', 'surgery.cli', 'transplant', '--src-net', evil, '--src-weights', files['nan'],
            '--dst-net', evil, '--out', tmp_path / 'out.caffemodel']
    refused(tool(*args), "would import and run the Python module 'builtins'", 'FCN_PYTHON_LAYERS=builtins')


# --- images too large ---------------------------------------------------------------------------------------

def test_blob_sizes_are_caffes():
    import netgen
    import surgery
    from netgen.geometry import blob_sizes

    for name in ('voc-fcn8s', 'voc-fcn-alexnet', 'voc-fcn-googlenet', 'nyud-fcn32s-color-hha'):
        proto = netgen.net(name, 'deploy', width=1 / 16)
        net = surgery.instantiate(proto)
        for top in net.inputs:
            net.blobs[top].reshape(1, net.blobs[top].channels, 123, 77)
        net.reshape()
        sizes = blob_sizes(proto, 123, 77)
        assert {name: blob.count for name, blob in net.blobs.items() if name in sizes} == \
            {name: count for name, count in sizes.items() if name in net.blobs}, name


def test_an_image_over_caffes_blob_limit_is_refused_before_any_allocation():
    import netgen
    from solvers import deploy

    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (12000, 12000, 3))  # a 12000 x 12000 photo, no memory
    with pytest.raises(deploy.cli.BadInput, match=r'12000x12000 image is too large for this net: its blob conv1_1 '
                                                 r'would hold \d+ values, over Caffe\'s limit of 2147483647'):
        deploy.check_fits(netgen.net('voc-fcn8s', 'deploy'), huge, 'photo.jpg')
    deploy.check_fits(netgen.net('voc-fcn8s', 'deploy'), huge[:500, :500], 'small.jpg')


def infer_where_48x48_is_a_bomb(*argv):
    """fcn-infer's main on ARGV, its status the exit status, with PIL's limit so low that a 48 x 48 image counts as
    a decompression bomb."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 100
    from solvers.infer import main
    sys.exit(main(list(argv)))


def test_a_decompression_bomb_is_refused(files, tmp_path):
    refused(child(infer_where_48x48_is_a_bomb, 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--width', WIDTH,
                  files['image'], '--out', tmp_path, env=ENV, timeout=300), 'is too large to read safely')


# --- small silent wrongs ------------------------------------------------------------------------------------

def fcn_data(*args):
    return tool(sys.executable, '-m', 'caffe_fcn.datalayers.cli', *args)


def test_fcn_data_refuses_what_it_used_to_accept(files, tmp_path):
    sbdd = files['data'] / 'sbdd' / 'dataset'
    refused(fcn_data('check', 'sbdd', sbdd, '--limit', -1), 'a whole number > 0 is needed')
    refused(fcn_data('check', 'sbdd', sbdd, '--split', 'nosuchsplit'), 'missing split file')
    refused(fcn_data('check', 'sbdd', sbdd, '--split', '../../etc/passwd'), 'is not a plain name')
    refused(fcn_data('synth', 'voc', '--out', tmp_path, '--size', '100000x100000'), 'each side must be 16 to 4096')
    import shutil

    import scipy.io
    bad = tmp_path / 'sbdd'
    shutil.copytree(sbdd, bad)
    mat = next((bad / 'cls').glob('*.mat'))
    gt = scipy.io.loadmat(mat)
    gt['GTcls'][0]['Segmentation'][0][0, 0] = 200
    scipy.io.savemat(mat, {'GTcls': gt['GTcls']})
    refused(fcn_data('sbdd-png', bad, '--out', tmp_path / 'png'), 'label values [200] are not valid here')


def test_a_split_file_cannot_lead_out_of_the_dataset(files, tmp_path):
    import shutil

    from caffe_fcn.datalayers import DatasetError
    from caffe_fcn.datalayers.datasets import SBDD
    root = tmp_path / 'sbdd'
    shutil.copytree(files['data'] / 'sbdd' / 'dataset', root)
    (root / 'train.txt').write_text('../../../etc/passwd\n')
    with pytest.raises(DatasetError, match='an image id is a plain file name'):
        SBDD(root).ids('train')


def test_a_mean_must_be_finite():
    from caffe_fcn.datalayers import ParamError
    from caffe_fcn.datalayers.layers import VOCSegDataLayer
    from caffe_fcn.datalayers.params import parse

    with pytest.raises(ParamError, match='three finite numbers'):
        parse("{'voc_dir': 'x', 'split': 'val', 'mean': (1e999, 0, 0)}", VOCSegDataLayer.spec, 'VOCSegDataLayer')


def test_netdiff_refuses_what_it_cannot_read_to_the_end(tmp_path):
    big = tmp_path / 'big.prototxt'
    with open(big, 'wb') as f:
        f.truncate(65 << 20)  # sparse: no disk used
    for path, message in (('/dev/zero', 'is not a regular file'), (big, 'too large for a net or solver prototxt')):
        refused(tool(sys.executable, '-m', 'netgen.netdiff', path, big), message)


def test_a_resume_of_a_net_with_dropout_says_why_it_is_not_exact(files, snapshot, tmp_path):
    state = edited_state(snapshot, tmp_path, lambda state: None)
    result = train(files, tmp_path / 'more', '--resume', state, '--rounds', 2, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Caffe keeps its random state out of the solverstate' in result.stderr


def test_unwritable_outputs_are_one_line_errors(files):
    cases = [
        [BIN / 'fcn-score', 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--width', WIDTH, '--data-root',
         files['data'], '--json', '/proc/no/score.json'],
        [BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--width', WIDTH, files['image'], '--out',
         '/proc/no'],
        [sys.executable, REPO / 'voc-fcn8s' / 'solve.py', '--weights', files['voc-fcn8s'], '--width', WIDTH,
         '--data-root', files['data'], '--out', '/proc/no'],
    ]
    for args in cases:
        result = tool(*args)
        assert result.returncode == 1 and 'error:' in result.stderr and 'Traceback' not in result.stderr, \
            (args[0], result.stderr[-2000:])


def test_a_dataset_image_too_large_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    from caffe_fcn.datalayers import DatasetError, io
    path = tmp_path / 'big.png'
    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(path)
    monkeypatch.setattr(io, 'MAX_PIXELS', 100 * 100)
    with pytest.raises(DatasetError, match='is 200x300: larger than any FCN dataset'):
        io.read_rgb(path)


# --- protected runs: --resume auto, a round finished not restarted, best.caffemodel, run.json -----------------

def test_resume_auto_finishes_the_interrupted_round_and_keeps_the_best(files, snapshot, tmp_path):
    import json

    state = edited_state(snapshot, tmp_path, lambda s: setattr(s, 'iter', 3))  # inside round 2 of 2-step rounds
    result = train(files, tmp_path, '--resume', 'auto', '--rounds', 3, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert state.exists() and (tmp_path / 'train_iter_4.caffemodel').is_file()  # round 2 finished at 4, not 5
    assert not (tmp_path / 'train_iter_5.caffemodel').exists()
    rows = [json.loads(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert [row['iter'] for row in rows] == [4, 6]
    best = max(rows, key=lambda row: row['scores']['score']['mean_iu'])
    assert (tmp_path / 'best.caffemodel').read_bytes() == \
        (tmp_path / f'train_iter_{best["iter"]}.caffemodel').read_bytes()
    record = json.loads((tmp_path / 'run.json').read_text())
    assert record['model'] == 'voc-fcn8s' and record['rounds'] == 3 and record['resume'].endswith('iter_2.solverstate')
    assert {'python', 'numpy', 'caffe', 'fcn'} <= set(record['versions'])


def test_resume_auto_needs_a_snapshot(files, tmp_path):
    refused(train(files, tmp_path, '--resume', 'auto', '--rounds', 1, '--steps', 1), 'holds no complete snapshot')


def test_fcn_infer_takes_folders_and_globs_and_keeps_same_names_apart(files, tmp_path):
    from PIL import Image

    image = Image.open(files['image'])
    for relative in ('a/img.png', 'b/img.png', 'c/x.jpg', 'c/x.png'):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        image.save(tmp_path / relative)
    result = tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--width', WIDTH,
                  tmp_path / 'a', tmp_path / 'b' / '*.png', tmp_path / 'c' / 'x.jpg', tmp_path / 'c' / 'x.png',
                  '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'out').glob('*.png') if 'overlay' not in p.name) == \
        ['a_img.png', 'b_img.png', 'x_jpg.png', 'x_png.png']
    refused(tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['voc-fcn8s'], tmp_path / 'none' / '*.png',
                 '--out', tmp_path / 'out'), 'no images in')


def test_tools_find_the_fetched_published_weights(files, tmp_path):
    """A cached file is used as it was fetched: voc-fcn32s's (no checksum published) as its pin says; a stand-in put
    in the place of voc-fcn8s's is not its published md5, so it is moved aside, not used."""
    cache = tmp_path / 'cache'
    (cache / 'weights').mkdir(parents=True)
    data = files['voc-fcn32s'].read_bytes()
    (cache / 'weights' / 'fcn32s-heavy-pascal.caffemodel').write_bytes(data)
    (cache / 'weights' / 'pins.json').write_text(json.dumps({'fcn32s-heavy-pascal.caffemodel':
                                                             hashlib.sha256(data).hexdigest()}))
    (cache / 'weights' / 'fcn8s-heavy-pascal.caffemodel').write_bytes(files['voc-fcn8s'].read_bytes())
    env = {**ENV, 'FCN_CACHE': str(cache)}

    def infer(model):
        return subprocess.run([str(BIN / 'fcn-infer'), model, '--width', WIDTH, str(files['image']), '--out',
                               str(tmp_path / model)], capture_output=True, text=True, env=env, timeout=300)
    result = infer('voc-fcn32s')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'voc-fcn32s: using the published weights' in result.stderr and 'fcn32s-heavy-pascal' in result.stderr
    refused(infer('voc-fcn8s'), 'not the file that was fetched (md5 differs', 'fcn-weights fetch voc-fcn8s')
    assert (cache / 'weights' / 'fcn8s-heavy-pascal.caffemodel.changed').is_file()
    result = subprocess.run([str(BIN / 'fcn-score'), 'voc-fcn16s', '--width', WIDTH], capture_output=True, text=True,
                            env=env, timeout=300)
    refused(result, 'fcn-weights fetch voc-fcn16s')


def test_fcn_infer_runs_the_nyud_models_with_their_twin_images(tmp_path):
    import netgen
    import surgery
    from caffe_fcn.datalayers.synth import synthesize
    from caffe_fcn import registry
    from solvers import deploy, infer

    root = synthesize('nyud', tmp_path / 'nyud', count=4, seed=0, size=(48, 64))
    color = sorted((root / 'data' / 'images').glob('*.png'))[0]
    for name, twins in (('nyud-fcn32s-color-hha', 'hha'), ('nyud-fcn32s-color-d', 'depth')):
        net = surgery.instantiate(netgen.net(name, 'deploy', width=1 / 16))
        surgery.stand_in_trunk(net, seed=0)
        net.save(str(tmp_path / f'{name}.caffemodel'))
        base = [BIN / 'fcn-infer', name, '--weights', tmp_path / f'{name}.caffemodel', '--width', WIDTH, color,
                '--out', tmp_path / name]
        refused(tool(*base), f'pass --twins DIR, the folder holding each color image\'s {twins} twin')
        result = tool(*base, '--twins', root / 'data' / twins)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (tmp_path / name / f'{color.stem}.png').is_file()
    hha = root / 'data' / 'hha' / color.name  # the HHA-only net gets HHA as its data layer does: not flipped
    arrays = infer.model_inputs(registry.get('nyud-fcn32s-hha'), hha, deploy.read_image(hha))
    from caffe_fcn.datalayers.datasets import NYUD
    np.testing.assert_array_equal(arrays['data'], NYUD(root).load(color.stem[4:], ['hha'])['hha'])


def test_a_twin_image_of_another_size_is_refused(tmp_path):
    """A depth or HHA twin of another size would abort Caffe's Concat (color-d) or be fused misaligned."""
    from PIL import Image

    from caffe_fcn.datalayers.synth import synthesize
    from caffe_fcn import cli, registry
    from solvers import deploy, infer

    root = synthesize('nyud', tmp_path / 'nyud', count=4, seed=0, size=(48, 64))
    color = sorted((root / 'data' / 'images').glob('*.png'))[0]
    for name, twin in (('nyud-fcn32s-color-hha', 'hha'), ('nyud-fcn32s-color-d', 'depth')):
        (tmp_path / twin).mkdir()
        Image.open(root / 'data' / twin / color.name).resize((60, 40)).save(tmp_path / twin / color.name)
        with pytest.raises(cli.BadInput, match=f'{color.name} and its twin in .*{twin} differ in size: color 48x64, '
                                               f'{twin} 40x60'):
            infer.model_inputs(registry.get(name), color, deploy.read_image(color), tmp_path / twin)


def test_a_fifo_is_read_once_as_an_image_and_refused_as_weights(files, tmp_path):
    """An image from a FIFO (or /dev/stdin from a pipe) is read once, whole, and checked as any image (what was
    written here is no image: one line); weights from one would be waited on: refused at once, one line."""
    import threading

    fifo = tmp_path / 'photo.jpg'
    os.mkfifo(fifo)
    threading.Thread(target=fifo.write_bytes, args=(b'not an image',), daemon=True).start()
    refused(tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['voc-fcn8s'], '--width', WIDTH, fifo, '--out',
                 tmp_path / 'out', timeout=60), 'photo.jpg is not an image Pillow can read')
    refused(score(files, fifo), 'photo.jpg is not a regular file')
    assert not (tmp_path / 'out').exists()


def test_counts_beyond_what_caffe_or_a_synthetic_set_takes_are_usage_errors(tmp_path):
    """A 32-bit iteration counter and a synthetic set for tests: past them, one line, exit 2, nothing written."""
    for result, words in [(fcn_data('synth', 'voc', '--out', tmp_path / 'a', '--count', 10 ** 20), 'to 1000000'),
                          (tool(BIN / 'fcn-train', 'voc-fcn32s', '--rounds', 10 ** 20, '--steps', 3, '--out',
                                tmp_path / 'b'), 'Caffe counts them in a 32-bit int'),
                          (tool(BIN / 'fcn-train', 'voc-fcn32s', '--rounds', 2, '--steps', 2 ** 31, '--out',
                                tmp_path / 'b'), 'at most 2147483647')]:
        refused(result, words)
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def run_copy(snapshot, out):
    """A copy of the snapshot fixture's run folder (its snapshot, data state and log) in `out`."""
    out.mkdir()
    for path in snapshot.parent.glob('*'):
        if path.is_file() and path.suffix in ('.caffemodel', '.solverstate', '.json', '.jsonl'):
            (out / path.name).write_bytes(path.read_bytes())
    return out


def test_a_torn_last_log_line_is_dropped_and_a_broken_one_named(files, snapshot, tmp_path):
    import json

    out = run_copy(snapshot, tmp_path / 'torn')
    good = (out / 'log.jsonl').read_text()
    (out / 'log.jsonl').write_text(good + '{"stage": "voc-fcn8s", "round": 2, "sco')  # killed mid-write
    result = train(files, out, '--resume', 'auto', '--rounds', 2, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'its last line is torn' in result.stderr
    assert [json.loads(line)['iter'] for line in (out / 'log.jsonl').read_text().splitlines()] == [2, 4]
    broken = run_copy(snapshot, tmp_path / 'broken')
    (broken / 'log.jsonl').write_text('not json\n' + good)
    refused(train(files, broken, '--resume', 'auto', '--rounds', 2, '--steps', 2), 'log.jsonl line 1 is not a log row')


def test_a_round_killed_between_its_snapshot_and_its_log_row_is_logged_on_resume(files, snapshot, tmp_path):
    import json

    out = run_copy(snapshot, tmp_path / 'run')
    result = train(files, out, '--resume', 'auto', '--rounds', 2, '--steps', 2,
                   patch=killed_after_the_iteration_4_snapshot)
    assert result.returncode == -signal.SIGKILL and (out / 'train_iter_4.solverstate').is_file()
    assert [json.loads(line)['iter'] for line in (out / 'log.jsonl').read_text().splitlines()] == [2]
    result = train(files, out, '--resume', 'auto', '--rounds', 3, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'round 2 (iteration 4) was saved but not logged' in result.stdout
    rows = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    assert [row['iter'] for row in rows] == [2, 4, 6]
    csv_iters = [line.split(',')[2] for line in (out / 'log.csv').read_text().splitlines()[1:]]
    assert csv_iters == ['4', '6']  # run_copy leaves the csv out: it starts at the recovered row
    best = max(rows, key=lambda row: row['scores']['score']['mean_iu'])
    assert (out / 'best.caffemodel').read_bytes() == (out / f'train_iter_{best["iter"]}.caffemodel').read_bytes()


def test_resume_goes_on_in_the_state_folder_and_never_mixes_two_runs(files, snapshot, tmp_path):
    import json

    a, b = run_copy(snapshot, tmp_path / 'a'), run_copy(snapshot, tmp_path / 'b')
    refused(train(files, b, '--resume', a / 'train_iter_2.solverstate', '--rounds', 2, '--steps', 2),
            f'continues the run in {a}', 'the two logs would mix')
    # no --out: the run goes on where its state is
    result = child(train_voc_fcn8s, '', '--width', WIDTH, '--data-root', files['data'], '--resume',
                   a / 'train_iter_2.solverstate', '--rounds', 2, '--steps', 2, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [json.loads(line)['iter'] for line in (a / 'log.jsonl').read_text().splitlines()] == [2, 4]
    assert [json.loads(line)['iter'] for line in (b / 'log.jsonl').read_text().splitlines()] == [2]
    branch = train(files, tmp_path / 'c', '--resume', a / 'train_iter_4.solverstate', '--rounds', 3, '--steps', 2)
    assert branch.returncode == 0 and (tmp_path / 'c' / 'train_iter_6.caffemodel').is_file(), branch.stderr[-2000:]


def test_a_corrupt_data_state_or_pin_file_is_named(files, snapshot, tmp_path):
    out = run_copy(snapshot, tmp_path / 'run')
    (out / 'train_iter_2.data.json').write_text('{"data": ')
    refused(train(files, out, '--resume', 'auto', '--rounds', 2, '--steps', 2),
            'train_iter_2.data.json is not a data state', 'delete it to restart the data order')
    (tmp_path / 'cache' / 'weights').mkdir(parents=True)
    (tmp_path / 'cache' / 'weights' / 'pins.json').write_text('{"x": ')
    result = subprocess.run([str(BIN / 'fcn-weights'), 'list'], capture_output=True, text=True, timeout=60,
                            env={**ENV, 'FCN_CACHE': str(tmp_path / 'cache')})
    refused(result, 'pins.json is not a weights pin file', 'delete it')


def test_fcn_score_needs_only_the_evaluation_split(files, tmp_path):
    """Scoring reads the evaluation split alone: a data root with pascal/ and no sbdd/ scores."""
    (tmp_path / 'pascal').symlink_to(files['data'] / 'pascal')
    result = tool(BIN / 'fcn-score', 'voc-fcn8s', '--weights', files['random'], '--width', WIDTH, '--data-root',
                  tmp_path)
    assert result.returncode == 0 and 'mean_iu' in result.stdout, result.stderr[-2000:]
    refused(tool(BIN / 'fcn-score', 'voc-fcn8s', '--weights', files['random'], '--width', WIDTH, '--data-root',
                 tmp_path / 'pascal'), 'pascal/VOC2011')


def limited(kilobytes):
    """A child's file-size limit (RLIMIT_FSIZE): past it a write fails with EFBIG, where Caffe aborts."""
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kilobytes << 10, kilobytes << 10))
    return apply


def test_caffes_own_writes_fail_in_one_line_and_keep_what_was_there(files, tmp_path):
    """net.save (fcn-surgery) and solver.snapshot (training) under a file-size limit: Caffe would abort (134) and
    leave a truncated file; the room is proved first, so it is one line, exit 1, and the old file stays."""
    out = tmp_path / 'init.caffemodel'
    out.write_bytes(b'the good file that was here')
    init = [BIN / 'fcn-surgery', 'init', 'voc-fcn8s', '--random', '--width', WIDTH, '--out', out]
    result = subprocess.run(list(map(str, init)), capture_output=True, text=True, env=ENV, timeout=120,
                            preexec_fn=limited(64))
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert 'error: cannot write' in result.stderr and 'File too large' in result.stderr
    assert out.read_bytes() == b'the good file that was here' and not list(tmp_path.glob('.*'))
    run = tmp_path / 'run'
    args = ['--weights', files['voc-fcn8s'], '--width', WIDTH, '--data-root', files['data'], '--out', run,
            '--rounds', 1, '--steps', 1]
    result = subprocess.run([sys.executable, str(REPO / 'voc-fcn8s' / 'solve.py'), *map(str, args)],
                            capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limited(1024))
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert 'cannot write a snapshot at iteration 1' in result.stderr and 'Traceback' not in result.stderr
    assert not list(run.glob('*.caffemodel')) and not list((run / '.partial').iterdir())
    assert subprocess.run(list(map(str, init)), capture_output=True, env=ENV, timeout=120).returncode == 0
    assert out.stat().st_size > 1 << 16  # without the limit the same command writes the file


@pytest.mark.skipif(not EXPORT, reason='the export extra is not installed')
@pytest.mark.parametrize('fmt,suffixes', [('onnx', ['.onnx']), ('torch', ['.py', '.pt'])])
def test_an_export_onto_a_full_disk_keeps_what_was_there(files, tmp_path, fmt, suffixes):
    """torch.save failed there with an internal RuntimeError of its zip writer; onnx.save with a bare errno."""
    for suffix in suffixes:
        (tmp_path / f'net{suffix}').write_text('kept')
    result = subprocess.run([str(BIN / 'fcn-export'), 'voc-fcn8s', '--weights', str(files['voc-fcn8s']), '--width',
                             WIDTH, '--format', fmt, '--out', str(tmp_path / f'net{suffixes[0]}')],
                            capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limited(50))
    assert result.returncode == 1 and 'cannot write the' in result.stderr and 'File too large' in result.stderr, \
        result.stderr[-2000:]
    assert all((tmp_path / f'net{s}').read_text() == 'kept' for s in suffixes)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f'net{s}' for s in suffixes)


def test_label_pngs_are_written_whole_or_not_at_all(files, tmp_path):
    """fcn-data sbdd-png under a file-size limit: one line, exit 1, and the file that was there stays."""
    sbdd = files['data'] / 'sbdd' / 'dataset'
    out = tmp_path / 'png'
    out.mkdir()
    first = sorted((sbdd / 'cls').glob('*.mat'))[0].stem
    (out / f'{first}.png').write_bytes(b'kept')
    result = subprocess.run([str(BIN / 'fcn-data'), 'sbdd-png', str(sbdd), '--out', str(out)], capture_output=True,
                            text=True, env=ENV, timeout=120, preexec_fn=limited(0))
    assert result.returncode == 1 and 'File too large' in result.stderr, (result.returncode, result.stderr)
    assert (out / f'{first}.png').read_bytes() == b'kept' and [p.name for p in out.iterdir()] == [f'{first}.png']


def test_an_output_that_would_land_on_an_input_is_refused(files, tmp_path):
    """--json onto the weights, an export onto the weights (also through a hard link): refused before any work,
    and the input stays as it was."""
    weights = tmp_path / 'w.caffemodel'
    weights.write_bytes(files['random'].read_bytes())
    os.link(weights, tmp_path / 'link.onnx')
    before = weights.read_bytes()
    refused(tool(BIN / 'fcn-score', 'voc-fcn8s', '--weights', weights, '--width', WIDTH, '--data-root', files['data'],
                 '--json', weights), 'w.caffemodel is also an input', 'would destroy that input')
    if EXPORT:
        refused(tool(BIN / 'fcn-export', 'voc-fcn8s', '--weights', weights, '--width', WIDTH, '--format', 'onnx',
                     '--out', tmp_path / 'link.onnx'), 'link.onnx is also an input')
    assert weights.read_bytes() == before


def test_fcn_infer_never_writes_over_its_images(files, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    (photos / 'a.png').write_bytes(files['image'].read_bytes())
    before = (photos / 'a.png').read_bytes()
    refused(tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['random'], '--width', WIDTH, photos, '--out',
                 photos), 'a.png is also an input')
    assert (photos / 'a.png').read_bytes() == before and sorted(p.name for p in photos.iterdir()) == ['a.png']
    result = tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['random'], '--width', WIDTH, photos, '--out',
                  tmp_path / 'labels')
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'labels').iterdir()) == ['a.png', 'a_overlay.png']  # no temp left


def test_overwrite_keeps_the_weights_the_run_starts_from(files, snapshot, tmp_path):
    out = run_copy(snapshot, tmp_path / 'run')
    (out / 'best.caffemodel').write_bytes((out / 'train_iter_2.caffemodel').read_bytes())
    refused(train(files, out, '--overwrite', '--rounds', 1, '--steps', 1, '--weights', out / 'best.caffemodel'),
            'would delete', 'best.caffemodel, the weights this run starts from')
    assert (out / 'best.caffemodel').is_file() and (out / 'log.jsonl').is_file()


def test_weights_of_another_model_are_named_and_the_at_once_scales_refused(files, tmp_path):
    """voc-fcn8s-atonce weights loaded into voc-fcn8s lose its skip scales, which change the output: refused. A
    file with other extra layers loads with a warning naming them."""
    import netgen
    import surgery
    from caffe.proto import caffe_pb2

    atonce = surgery.instantiate(netgen.net('voc-fcn8s-atonce', 'deploy', width=1 / 16))
    surgery.stand_in_trunk(atonce, seed=0)
    surgery.save_net(atonce, tmp_path / 'atonce.caffemodel')
    refused(score(files, tmp_path / 'atonce.caffemodel'), 'holds Scale layers this net lacks (scale_pool4, '
            'scale_pool3)')
    refused(infer(files, tmp_path / 'atonce.caffemodel', tmp_path / 'out'), 'voc-fcn8s-atonce?')
    extra = caffe_pb2.NetParameter.FromString(files['random'].read_bytes())
    layer = extra.layer.add(name='fc8_old', type='Convolution')
    layer.blobs.add().CopyFrom(next(old for old in extra.layer if old.blobs).blobs[0])
    (tmp_path / 'extra.caffemodel').write_bytes(extra.SerializeToString())
    result = score(files, tmp_path / 'extra.caffemodel')
    assert result.returncode == 0 and 'left out: fc8_old' in result.stderr, result.stderr[-2000:]


def test_written_weights_name_their_model_and_loading_says_when_it_is_another(files, snapshot, tmp_path):
    from caffe.proto import caffe_pb2

    assert caffe_pb2.NetParameter.FromString(snapshot.with_suffix('.caffemodel').read_bytes()).name == 'voc-fcn8s'
    fixed = tmp_path / 'fixed.caffemodel'
    made = tool(BIN / 'fcn-surgery', 'init', 'voc-fcn32s-fixed', '--random', '--width', WIDTH, '--out', fixed)
    assert made.returncode == 0 and caffe_pb2.NetParameter.FromString(fixed.read_bytes()).name == 'voc-fcn32s-fixed'
    for model, warned in (('voc-fcn32s', True), ('voc-fcn32s-fixed', False)):  # the same layers and shapes
        result = tool(BIN / 'fcn-infer', model, '--weights', fixed, '--width', WIDTH, files['image'],
                      '--out', tmp_path / model)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (f'was written for voc-fcn32s-fixed (the model its file names), not for {model}' in result.stderr) \
            == warned, result.stderr


def test_a_copied_run_resumes_from_its_own_weights(files, snapshot, tmp_path):
    from caffe.proto import caffe_pb2

    original = run_copy(snapshot, tmp_path / 'original')
    state = caffe_pb2.SolverState.FromString((original / snapshot.name).read_bytes())
    state.learned_net = str(original / 'train_iter_2.caffemodel')
    (original / snapshot.name).write_bytes(state.SerializeToString())
    copy = run_copy(original / snapshot.name, tmp_path / 'copy')
    (original / 'train_iter_2.caffemodel').write_bytes(b'')  # the original's weights are gone bad since
    result = train(files, copy, '--resume', 'auto', '--rounds', 2, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]


def test_resume_refuses_a_run_of_another_model_or_width(files, tmp_path):
    out = tmp_path / 'run32'
    base = ['--width', WIDTH, '--data-root', files['data'], '--rounds', 1, '--steps', 1, '--out', out]
    result = tool(sys.executable, REPO / 'voc-fcn32s' / 'solve.py', '--weights', files['voc-fcn32s'], *base)
    assert result.returncode == 0, result.stderr[-2000:]
    state = out / 'train_iter_1.solverstate'
    refused(tool(sys.executable, REPO / 'voc-fcn32s-fixed' / 'solve.py', '--resume', state, *base, '--rounds', 2),
            'is a run of voc-fcn32s at width 0.0625, not of voc-fcn32s-fixed')


def test_sigterm_in_the_set_up_stops_cleanly_and_a_retry_goes_on(files, tmp_path):
    """A kill during set-up (here: while the run record is written) is a clean stop, and the folder it leaves
    takes a plain retry."""
    proc = train(files, tmp_path, '--rounds', 1, '--steps', 1, patch=a_slow_run_record, popen=True)
    assert proc.stdout.readline().strip() == 'recording'
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'interrupted' in err and 'Traceback' not in err, err[-2000:]
    (tmp_path / 'run.json').write_text('{}')  # as if the kill came just after the record was written
    result = train(files, tmp_path, '--rounds', 1, '--steps', 1)
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_export_module_may_not_shadow_an_installed_one(files, tmp_path):
    if not EXPORT:
        pytest.skip("fcn-export's extra (torch, onnx, onnxruntime) is not installed")
    refused(tool(BIN / 'fcn-export', 'voc-fcn8s', '--weights', files['random'], '--width', WIDTH, '--format', 'torch',
                 '--out', tmp_path / 'torch.py'), 'a module named torch would shadow the installed one')
    assert not list(tmp_path.iterdir())


def test_a_run_removes_what_a_killed_one_left_half_written(files, tmp_path):
    (tmp_path / '.partial').mkdir()
    leftovers = [tmp_path / '.log.jsonl.abc.tmp', tmp_path / '.partial' / 'train_iter_7.caffemodel']
    for path in leftovers:
        path.write_bytes(b'half')
    result = train(files, tmp_path, '--rounds', 1, '--steps', 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not any(path.exists() for path in leftovers) and (tmp_path / 'train_iter_1.caffemodel').is_file()


def test_an_exif_rotated_photo_is_segmented_as_stored_and_says_so(files, tmp_path):
    from PIL import Image

    image = Image.open(files['image'])
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees, as a phone stores it
    image.save(tmp_path / 'phone.jpg', exif=exif)
    result = tool(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', files['random'], '--width', WIDTH,
                  tmp_path / 'phone.jpg', '--out', tmp_path / 'out')
    assert result.returncode == 0 and 'has an EXIF orientation; it is segmented as stored' in result.stderr
    assert Image.open(tmp_path / 'out' / 'phone.png').size == image.size  # the stored pixels, not turned
