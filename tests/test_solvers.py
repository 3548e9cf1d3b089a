"""The training driver: the user's command (MODEL/solve.py) on reduced-width nets and synthetic data.

Everything that builds a Caffe net runs in a child process: a failed Caffe CHECK aborts the process.
"""
import ast
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from data_helpers import voc_data
from common import QUIET, REPO, checked, child, save_stand_in

PYTHON = sys.executable
WIDTH = '0.125'
SCORE = str(Path(PYTHON).parent / 'fcn-score')  # the console script installed beside this Python


def solve(model, *args, timeout=300):
    """python MODEL/solve.py ARGS, from an unrelated working directory."""
    return subprocess.run([PYTHON, str(REPO / model / 'solve.py'), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=QUIET, cwd='/')


@pytest.fixture(scope='session')
def data_root(tmp_path_factory):
    return voc_data(tmp_path_factory.mktemp('data'))


def init_weights(model, path, width=WIDTH):
    """A reduced-width caffemodel with a He-initialized trunk (the stand-in for the converted ILSVRC trunk)."""
    checked(child(save_stand_in, model, width, path, timeout=300))
    return path


@pytest.fixture(scope='session')
def he_weights(tmp_path_factory):
    return init_weights('voc-fcn32s', tmp_path_factory.mktemp('weights') / 'he32.caffemodel')


def read_log(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope='session')
def he8_weights(tmp_path_factory):
    return init_weights('voc-fcn8s', tmp_path_factory.mktemp('weights') / 'he8.caffemodel')


@pytest.fixture(scope='session')
def trained(tmp_path_factory, data_root, he8_weights):
    """Three rounds of the driver's full loop on a reduced-width voc-fcn8s."""
    out = tmp_path_factory.mktemp('run8')
    result = solve('voc-fcn8s', '--width', WIDTH, '--weights', he8_weights, '--data-root', data_root,
                   '--rounds', 3, '--steps', 40, '--base-lr', 2e-8, '--seed', 0, '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


# --- the loop ------------------------------------------------------------------------------------------------

def test_loop_scores_rise_and_writes_log_curve_snapshots(trained):
    out, result = trained
    rows = read_log(out / 'log.jsonl')
    assert [r['round'] for r in rows] == [1, 2, 3] and [r['iter'] for r in rows] == [40, 80, 120]
    first, last = rows[0]['scores']['score'], rows[-1]['scores']['score']
    assert rows[-1]['train_loss_per_pixel'] < rows[0]['train_loss_per_pixel']
    assert last['mean_iu'] > first['mean_iu'] + 0.05 and last['overall_acc'] > first['overall_acc']
    for metric in ('overall_acc', 'mean_acc', 'mean_iu', 'fwavacc'):
        assert f'{metric} ' in result.stdout  # the four metrics printed after each round
    assert (out / 'log.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    for it in (40, 80, 120):
        assert (out / f'train_iter_{it}.caffemodel').is_file() and (out / f'train_iter_{it}.solverstate').is_file()
    assert not list((out / '.partial').iterdir())  # nothing half-written left behind
    state = caffe_pb2.SolverState.FromString((out / 'train_iter_120.solverstate').read_bytes())
    assert state.iter == 120 and Path(state.learned_net) == out / 'train_iter_120.caffemodel'


def test_next_stage_starts_from_the_previous(he_weights, data_root, tmp_path):
    """FCN-16s from an FCN-32s file: every layer the two share comes from that file (a rate of 1e-30 moves weights
    by less than 1e-20 in the steps); the new score_pool4 starts at zero, as the reference's net has no filler."""
    import surgery
    stage = tmp_path / '16s'
    result = solve('voc-fcn16s', '--width', WIDTH, '--weights', he_weights,
                   '--data-root', data_root, '--rounds', 1, '--steps', 5, '--base-lr', 1e-30, '--out', stage)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_log(stage / 'log.jsonl')[0]['iter'] == 5

    def blobs(path):
        return {layer.name: [np.array(b.data) for b in layer.blobs]
                for layer in surgery.read_caffemodel(path).layer if layer.blobs}
    before, after = blobs(he_weights), blobs(stage / 'train_iter_5.caffemodel')
    shared = sorted(set(before) & set(after))
    assert len(shared) == 16 and {'conv1_1', 'fc7', 'score_fr'} <= set(shared)  # 13 conv, fc6, fc7, score_fr
    for name in shared:
        for old, new in zip(before[name], after[name], strict=True):
            assert np.abs(new - old).max() < 1e-20, name
    assert np.abs(after['score_pool4'][0]).max() < 1e-20
    assert np.abs(before['conv1_1'][0]).max() > 1e-3  # the file's own random weights, not zeros


def test_fcn_score_prints_the_metrics(trained, data_root):
    out, _ = trained
    result = subprocess.run([SCORE, 'voc-fcn8s', '--weights', out / 'train_iter_120.caffemodel', '--width',
                             WIDTH, '--data-root', data_root, '--json', out / 'score.json'],
                            capture_output=True, text=True, env=QUIET, timeout=300)
    assert result.returncode == 0, result.stderr
    scored = json.loads((out / 'score.json').read_text())['score']
    logged = read_log(out / 'log.jsonl')[-1]['scores']['score']
    assert scored['mean_iu'] == pytest.approx(logged['mean_iu'])  # same weights, same split, same numbers
    assert 'mean_iu' in result.stdout and 'per-class IU' in result.stdout
    assert '  background ' in result.stdout and '  tvmonitor ' in result.stdout  # class names, not indices
    assert list(scored['per_class_iu'])[:2] == ['background', 'aeroplane']


def test_fcn_score_bad_inputs(trained, data_root, tmp_path):
    out, _ = trained
    base = [SCORE, 'voc-fcn8s', '--width', WIDTH, '--data-root', data_root]
    cases = [(['--weights', tmp_path / 'none.caffemodel'], 'not found'),
             (['--weights', out / 'train_iter_120.caffemodel', '--split', 'test'], 'splits'),
             (['--weights', out / 'train_iter_120.caffemodel', '--width', '0.25'], 'shape')]
    for args, message in cases:
        result = subprocess.run(base + args, capture_output=True, text=True, env=QUIET, timeout=120)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr[-2000:])


# --- resume --------------------------------------------------------------------------------------------------

def no_dropout(param):
    """A net transform: the net without its Dropout layers (random masks would keep two runs from agreeing)."""
    kept = [layer for layer in param.layer if layer.type != 'Dropout']
    del param.layer[:]
    param.layer.extend(kept)


def dropout_free_solver(data, out):
    """A Caffe SGD solver of voc-fcn8s at width 1/16 without dropout (base_lr 1e-7, the data folders `data`),
    prepared in `out`; and its training net."""
    import caffe
    from caffe_fcn import registry
    from solvers import runs

    prepared = runs.prepare(registry.get('voc-fcn8s'), out, 0.0625, overrides=data,
                            solver_overrides={'base_lr': 1e-7}, transform=no_dropout)
    return caffe.SGDSolver(str(prepared.solver)), prepared.train_net


def params_of(net):
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}


def check_restored(resumed, out):
    """`resumed`, restored from OUT/straight's snapshot at iteration 7, holds that snapshot's weights, and a snapshot
    of it holds the saved momentum history (not all zero)."""
    import caffe
    from solvers import driver

    assert resumed.iter == 7, resumed.iter
    at7 = caffe.Net(str(out / 'straight' / 'run' / 'train.prototxt'),
                    str(out / 'straight' / 'train_iter_7.caffemodel'), caffe.TEST)
    for k, blobs in at7.params.items():
        for a, b in zip(blobs, resumed.net.params[k], strict=True):
            assert np.array_equal(a.data, b.data), k
    driver.snapshot(resumed, out / 'resumed')  # momentum history as restored, before any step
    saved = caffe_pb2.SolverState.FromString((out / 'straight' / 'train_iter_7.solverstate').read_bytes())
    again = caffe_pb2.SolverState.FromString((out / 'resumed' / 'train_iter_7.solverstate').read_bytes())
    assert len(saved.history) == len(again.history) > 0
    for h1, h2 in zip(saved.history, again.history, strict=True):
        assert np.array_equal(np.array(h1.data), np.array(h2.data))
    assert any(np.any(np.array(h.data)) for h in saved.history)  # there is momentum to restore


def print_resumed_difference(root, out, gpu=None):
    """Two rounds of 7 steps straight (OUT/straight), and the same resumed from the first round's snapshot
    (OUT/resumed, checked by check_restored); prints {"worst": the largest difference of their weights}. On GPU
    `gpu` where one is given (chosen before anything else)."""
    if gpu is not None:
        from solvers.device import use_device
        use_device(int(gpu))
    import surgery
    from solvers import driver, score

    root, out = Path(root), Path(out)
    data = {'sbdd_dir': str(root / 'sbdd' / 'dataset'), 'voc_dir': str(root / 'pascal' / 'VOC2011')}
    solver, param = dropout_free_solver(data, out / 'straight')
    surgery.stand_in_trunk(solver.net, seed=0)
    surgery.interp(solver.net)
    outs = score.outputs(param)
    driver.train(solver, 2, 7, out / 'straight', outs, n_val=2)
    straight = params_of(solver.net)

    resumed, _ = dropout_free_solver(data, out / 'resumed')
    driver.resume(resumed, out / 'straight' / 'train_iter_7.solverstate')
    check_restored(resumed, out)
    driver.train(resumed, 2, 7, out / 'resumed', outs, n_val=2)
    assert resumed.iter == 14
    after = params_of(resumed.net)
    worst = max(float(np.abs(a - b).max()) for k in straight for a, b in zip(straight[k], after[k], strict=True))
    print(json.dumps({'worst': worst}))


def test_resume_restores_iteration_weights_momentum_and_continues_identically(data_root, tmp_path):
    stdout = checked(child(print_resumed_difference, data_root, tmp_path))
    worst = json.loads(stdout.strip().splitlines()[-1])['worst']
    assert worst == 0.0, f'resumed run differs from the uninterrupted one by {worst}'


def test_resume_through_the_command(trained, data_root):
    out, _ = trained
    more = out.parent / (out.name + '-more')
    result = solve('voc-fcn8s', '--width', WIDTH, '--resume', out / 'train_iter_80.solverstate', '--data-root',
                   data_root, '--rounds', 3, '--steps', 40, '--base-lr', 2e-8, '--out', more)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r['iter'] for r in read_log(more / 'log.jsonl')] == [120]  # only the third round was left


# --- bad input: a clear message and exit status 2, before any Caffe call can abort -------------------------------

@pytest.fixture(scope='session')
def garbage(tmp_path_factory):
    path = tmp_path_factory.mktemp('bad') / 'garbage.solverstate'
    path.write_bytes(b'\xff\x00not a solver state' * 10)
    return path


BAD_CASES = {
    'missing data': (['--data-root', '/nonexistent-data'], 'pass --data-root DIR holding sbdd/dataset'),
    'missing weights': (['--weights', '/nonexistent.caffemodel'], 'not found'),
    'missing resume': (['--resume', '/nonexistent.solverstate'], 'no such file'),
    'garbage resume': (['--resume', 'GARBAGE'], 'not a Caffe solverstate'),
    'resume another model': (['--resume', 'STATE'], 'is a run of voc-fcn8s at width 0.125, not of voc-fcn32s'),
    'weights other width': (['--weights', 'WEIGHTS', '--width', '0.25'], 'shape'),
    'gpu on cpu build': (['--gpu', '0'], 'CPU-only'),
    'zero rounds': (['--rounds', '0'], 'a whole number > 0 is needed'),
    'zero learning rate': (['--base-lr', '0'], 'a number > 0 is needed'),
    'negative seed': (['--seed', '-5'], 'a seed is a whole number from 0'),
    'huge seed': (['--seed', '1e23'], 'a seed is a whole number from 0'),
    'zero width': (['--width', '0'], 'width must be in (0, 1]'),
}


@pytest.mark.parametrize('case', BAD_CASES)
def test_bad_input_is_a_clear_error(case, data_root, trained, he_weights, garbage):
    args, message = BAD_CASES[case]
    swap = {'GARBAGE': garbage, 'STATE': trained[0] / 'train_iter_40.solverstate', 'WEIGHTS': he_weights}
    args = [swap.get(a, a) for a in args]
    defaults = {'--data-root': data_root, '--weights': he_weights, '--width': WIDTH, '--rounds': 1, '--steps': 2,
                '--out': trained[0] / 'bad'}
    if '--resume' in args:
        del defaults['--weights']  # the two exclude each other
    extra = [str(v) for flag, value in defaults.items() if flag not in args for v in (flag, value)]
    result = solve('voc-fcn32s', *args, *extra)
    assert result.returncode == 2, (case, result.returncode, result.stderr[-2000:])
    assert message in result.stderr, (case, result.stderr[-2000:])
    assert 'Check failed' not in result.stderr and 'Traceback' not in result.stderr


def exit_with_main(repo, model, *args):
    """sys.exit(solvers.main(model, args)); where `repo` is given, fcn's registry.REPO is set to it (a checkout
    where nothing was trained yet) before solvers is imported."""
    if repo:
        from caffe_fcn import registry
        registry.REPO = Path(repo)
    import solvers
    sys.exit(solvers.main(model, list(args)))


def test_unknown_model_lists_the_models():
    result = child(exit_with_main, '', 'voc-fcn4s', timeout=300)
    assert result.returncode == 2 and 'voc-fcn32s' in result.stderr and 'Traceback' not in result.stderr


def test_missing_previous_stage_says_train_it_first(data_root, tmp_path):
    result = child(exit_with_main, tmp_path, 'voc-fcn16s', '--data-root', data_root, '--width', WIDTH, timeout=300)
    assert result.returncode == 2 and 'train it first' in result.stderr and 'voc-fcn32s' in result.stderr


def test_nan_loss_stops_with_the_last_good_snapshot(trained, data_root, tmp_path):
    out, _ = trained
    run = tmp_path / 'nan'
    run.mkdir()
    for suffix in ('caffemodel', 'solverstate', 'data.json'):
        (run / f'train_iter_40.{suffix}').write_bytes((out / f'train_iter_40.{suffix}').read_bytes())
    result = solve('voc-fcn8s', '--width', WIDTH, '--resume', run / 'train_iter_40.solverstate', '--data-root',
                   data_root, '--rounds', 3, '--steps', 40, '--base-lr', 1e3, '--out', run)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'loss' in result.stderr and 'last good snapshot is' in result.stderr
    assert str(run / 'train_iter_40.caffemodel') in result.stderr
    assert sorted(p.name for p in run.glob('*.caffemodel')) == ['train_iter_40.caffemodel']


def test_ctrl_c_saves_a_snapshot_first(data_root, he_weights, tmp_path):
    proc = subprocess.Popen([PYTHON, str(REPO / 'voc-fcn32s' / 'solve.py'), '--width', WIDTH, '--weights',
                             str(he_weights), '--data-root', str(data_root), '--rounds', '1', '--steps', '100000',
                             '--base-lr', '1e-9', '--out', str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=QUIET, cwd='/')
    deadline = time.time() + 120
    while not (tmp_path / 'run' / 'solver.prototxt').exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # well into the steps
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    saved = list(tmp_path.glob('train_iter_*.caffemodel'))
    assert len(saved) == 1 and (tmp_path / saved[0].name.replace('caffemodel', 'solverstate')).is_file()
    assert 'resume with --resume' in out


def use_gpu(gpu):
    """solvers.device.use_device(gpu): a CPU-only pycaffe exits, saying how to rebuild."""
    from solvers.device import use_device
    use_device(int(gpu))


@pytest.mark.build_kind
def test_gpu_message_says_how_to_rebuild():
    result = child(use_gpu, 0, timeout=300)
    if result.returncode == 0:
        pytest.skip('this pycaffe has a usable GPU')
    assert 'CUDA=1 make caffe' in result.stderr and 'leave out --gpu' in result.stderr


@pytest.mark.build_kind
def test_the_references_command_line_from_inside_the_folder(tmp_path):
    """`cd voc-fcn32s && python solve.py 0`: sys.argv[1] is the GPU, as in the reference."""
    def inside(*args):
        return subprocess.run([PYTHON, 'solve.py', *args], capture_output=True, text=True, timeout=300, env=QUIET,
                              cwd=REPO / 'voc-fcn32s')
    positional, option = inside('0', '--out', tmp_path / 'a'), inside('--gpu', '0', '--out', tmp_path / 'b')
    if positional.returncode == 0:
        pytest.skip('this pycaffe has a usable GPU')
    assert positional.returncode == option.returncode == 2
    assert positional.stderr == option.stderr and len(positional.stderr.splitlines()) == 1
    assert 'GPU 1 and --gpu 0 disagree' in inside('1', '--gpu', '0').stderr


def test_a_run_reads_its_data_under_the_data_root(tmp_path, monkeypatch):
    from caffe_fcn import registry
    from solvers import runs

    with pytest.raises(runs.SetupError) as err:
        runs.data_dirs(registry.get('voc-fcn32s'), '/nowhere')
    assert '/nowhere/sbdd/dataset' in str(err.value) and 'pass --data-root DIR holding sbdd/dataset' in str(err.value)
    assert 'pass --data-root DIR holding pascal/VOC2011' in str(err.value)  # every missing folder at once
    assert 'get it from http://host.robots.ox.ac.uk/pascal/VOC/voc2011/' in str(err.value)
    for folder in ('pascal-context', 'pascal'):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv('FCN_DATA', str(tmp_path))  # the reference's '../../data' quirk does not leak into runs
    assert runs.data_dirs(registry.get('pascalcontext-fcn8s')) == {
        'context_dir': str(tmp_path / 'pascal-context'), 'voc_dir': str(tmp_path / 'pascal')}
    assert registry.data_root('/elsewhere') == Path('/elsewhere')


def test_default_schedules_are_the_references():
    from caffe_fcn import registry

    def schedule(name):
        return registry.get(name).rounds_steps

    assert schedule('voc-fcn32s') == (25, 4000) and schedule('voc-fcn8s-atonce') == (75, 4000)
    assert schedule('nyud-fcn32s-color') == (50, 2000) and schedule('siftflow-fcn16s') == (50, 2000)
    assert schedule('pascalcontext-fcn8s') == (50, 8000)


def test_every_model_folder_has_a_solve_py():
    import netgen

    for name, model in netgen.MODELS.items():
        assert (REPO / name / 'solve.py').is_file() == bool(model.splits), name



# --- fcn-infer -----------------------------------------------------------------------------------------------

INFER = str(Path(PYTHON).parent / 'fcn-infer')
DEMO_IMAGE = REPO.parent / 'shared' / 'reference-data' / 'demo' / 'image.jpg'


def test_fcn_infer_writes_label_png_and_overlay_for_any_size(trained, tmp_path):
    from PIL import Image

    odd = tmp_path / 'odd.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(odd)
    images = [odd] + ([DEMO_IMAGE] if DEMO_IMAGE.is_file() else [])
    result = subprocess.run([INFER, 'voc-fcn8s', '--weights', trained[0] / 'train_iter_120.caffemodel', '--width',
                             WIDTH, *images, '--out', tmp_path / 'out'], capture_output=True, text=True, env=QUIET,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for image in images:
        with Image.open(image) as src, Image.open(tmp_path / 'out' / f'{image.stem}.png') as labels, \
                Image.open(tmp_path / 'out' / f'{image.stem}_overlay.png') as overlay:
            assert labels.mode == 'P' and labels.size == src.size
            assert overlay.width >= src.width and overlay.height > src.height  # the legend goes below the image
            assert max(np.asarray(labels).ravel()) < 21


def test_fcn_infer_bad_inputs(trained, tmp_path):
    text = tmp_path / 'not-an-image.jpg'
    text.write_text('hello')
    weights = trained[0] / 'train_iter_120.caffemodel'
    cases = [([weights, text], 'not an image'), ([weights, tmp_path / 'missing.jpg'], 'not found'),
             ([tmp_path / 'none.caffemodel', DEMO_IMAGE], 'not found')]
    for (w, image), message in cases:
        result = subprocess.run([INFER, 'voc-fcn8s', '--weights', w, '--width', WIDTH, image, '--out', tmp_path],
                                capture_output=True, text=True, env=QUIET, timeout=120)
        assert result.returncode == 2 and message in result.stderr, (image, result.stderr[-2000:])


def test_infer_refuses_an_image_too_small_for_the_net():
    """FCN-GoogLeNet keeps the classifier's small padding: a tiny image would empty pool5 and abort Caffe."""
    import netgen
    import surgery
    from solvers import infer

    net = surgery.instantiate(netgen.net('voc-fcn-googlenet', 'deploy', width=1 / 16))
    with pytest.raises(ValueError, match='too small for this net: pool5'):
        infer.segment(net, np.zeros((20, 24, 3), np.uint8), (0, 0, 0))
    assert infer.segment(net, np.zeros((40, 48, 3), np.uint8), (0, 0, 0))['score'].shape == (40, 48)


# --- the paper's ablations of what learns ----------------------------------------------------------------

def print_learned_layers(name, root, out):
    """Three steps of model `name` at width 1/16 from a stand-in trunk (base_lr 1e-8, the data under `root`,
    prepared in `out`); prints the layers whose weights moved."""
    import caffe
    import surgery
    from caffe_fcn import registry
    from solvers import runs

    prepared = runs.prepare(registry.get(name), Path(out), 0.0625, root, solver_overrides={'base_lr': 1e-8})
    solver = caffe.SGDSolver(str(prepared.solver))
    surgery.stand_in_trunk(solver.net, seed=0)
    surgery.interp(solver.net)
    before = {k: v[0].data.copy() for k, v in solver.net.params.items()}
    solver.step(3)  # the score layers start at zero: from the second step on, gradients reach everything
    print(' '.join(sorted(k for k, v in solver.net.params.items() if not np.array_equal(v[0].data, before[k]))))


def learned_layers(model, data_root, tmp_path):
    return checked(child(print_learned_layers, model, data_root, tmp_path / model, timeout=300)).split()


def test_fcn32s_fixed_learns_only_the_classifier(data_root, tmp_path):
    assert learned_layers('voc-fcn32s-fixed', data_root, tmp_path) == ['score_fr']
    assert {'conv1_1', 'fc7', 'score_fr'} <= set(learned_layers('voc-fcn32s', data_root, tmp_path))


def test_learned_upsampling_learns_the_2x_upsamplings_only(data_root, tmp_path):
    learned = set(learned_layers('voc-fcn8s-learned-up', data_root, tmp_path))
    assert {'upscore2', 'upscore_pool4'} <= learned and 'upscore8' not in learned
    assert not {'upscore2', 'upscore_pool4', 'upscore8'} & set(learned_layers('voc-fcn8s', data_root, tmp_path))


def test_augment_reaches_the_training_net_only(data_root, tmp_path):
    from caffe_fcn import registry
    from solvers import runs

    prepared = runs.prepare(registry.get('voc-fcn32s'), tmp_path, 0.0625, data_root, registry.AUGMENT)
    train, val = (prepared.nets[split].layer[0].python_param.param_str for split in ('train', 'val'))
    assert "'mirror': True, 'jitter': 32" in train and 'mirror' not in val and 'jitter' not in val
    assert 'mirror' in (tmp_path / 'run' / 'train.prototxt').read_text()  # what Caffe reads


def test_loss_sampling_keeps_the_effective_batch(data_root, tmp_path):
    from caffe_fcn import registry
    from solvers import driver

    model = registry.get('voc-fcn-alexnet')  # iter_size 20 already
    args = driver.parse_args(['voc-fcn-alexnet', '--loss-sampling', '0.25', '--augment'])
    data, solver = driver.training_options(model, args, 20)
    assert solver == {'iter_size': 80} and data == {'mirror': True, 'jitter': 32, 'sample': 0.25, 'cell': 32}
    assert driver.training_options(model, driver.parse_args(['voc-fcn-alexnet']), 20) == ({}, {})
    with pytest.raises(SystemExit):
        driver.parse_args(['voc-fcn-alexnet', '--loss-sampling', '0'])


def test_class_balance_trains_with_weights_from_the_training_split(data_root, he_weights, tmp_path):
    result = solve('voc-fcn32s', '--width', WIDTH, '--weights', he_weights, '--data-root', data_root, '--rounds', 1,
                   '--steps', 2, '--class-balance', '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    train, val = ((tmp_path / 'run' / f'{split}.prototxt').read_text() for split in ('train', 'val'))
    assert 'WeightedSoftmaxWithLoss' in train and 'SoftmaxWithLoss' in val and 'Weighted' not in val
    weights = ast.literal_eval(train.split('param_str: "')[-1].split('"')[0].replace("\\'", "'"))['weights']
    assert len(weights) == 21 and weights[0] < 1 < max(weights)  # background is frequent: weighted down
    (row,) = [json.loads(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert np.isfinite(row['train_loss'])


def test_surgery_init_makes_weights_a_smoke_run_starts_from(data_root, tmp_path):
    def init(out, *extra):
        return subprocess.run([PYTHON, '-m', 'surgery.cli', 'init', 'voc-fcn32s', '--width', WIDTH, '--seed', '3',
                               '--out', out, *extra], capture_output=True, text=True, env=QUIET, cwd='/', timeout=120)
    first, second = tmp_path / 'a.caffemodel', tmp_path / 'b.caffemodel'
    result = init(first, '--random')
    assert result.returncode == 0 and "NOT the paper's initialization" in result.stdout, result.stderr
    assert init(second, '--random').returncode == 0 and first.read_bytes() == second.read_bytes()  # seeded
    assert init(tmp_path / 'c.caffemodel').returncode == 2  # --random must be asked for
    result = solve('voc-fcn32s', '--weights', first, '--width', WIDTH, '--data-root', data_root, '--rounds', 1,
                   '--steps', 1, '--out', tmp_path / 'run')
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize('model', ['voc-fcn8s-atonce', 'ilsvrc-vgg16'])
def test_surgery_init_random_for_scale_and_fully_connected_layers(model, tmp_path):
    """The at-once net's fixed Scale layers keep their factors; a classifier's fully connected layers get weights."""
    from surgery import read_caffemodel

    out = tmp_path / 'w.caffemodel'
    result = subprocess.run([PYTHON, '-m', 'surgery.cli', 'init', model, '--random', '--width', WIDTH, '--out', out],
                            capture_output=True, text=True, env=QUIET, cwd='/', timeout=120)
    assert result.returncode == 0, result.stderr
    blobs = {layer.name: np.array(layer.blobs[0].data) for layer in read_caffemodel(out).layer if layer.blobs}
    if model == 'voc-fcn8s-atonce':
        assert np.allclose(blobs['scale_pool4'], 0.01) and np.allclose(blobs['scale_pool3'], 0.0001)
    else:
        assert all(blobs[name].std() > 0 for name in ('fc6', 'fc7', 'fc8'))


def test_overlays_leave_the_background_as_it_is_and_carry_a_legend():
    from solvers import infer

    rgb = np.full((20, 30, 3), 100, np.uint8)
    labels = np.zeros((20, 30), np.uint8)
    labels[5:10, 5:10], labels[0, 0] = 15, 255
    names = registry_names('voc-fcn8s')
    shown = np.asarray(infer.overlay(rgb, labels, names))
    assert (shown[labels == 0] == 100).all() and (shown[labels == 255] == 100).all()  # background and void kept
    assert not (shown[labels == 15] == 100).all()  # person tinted
    assert not (np.asarray(infer.overlay(rgb, labels, ('wall',) * 40))[labels == 0] == 100).all()  # no background
    with_legend = infer.with_legend(infer.overlay(rgb, labels, names), [labels], names)
    assert with_legend.height == 20 + 2 * 14 + 4 and with_legend.width >= 180  # two entries: background, person


def registry_names(model):
    from caffe_fcn import registry
    return registry.get(model).tasks[0].names
