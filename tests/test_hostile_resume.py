"""Caches and resumable outputs trusted by content, never by name (issue 34, part C): the onnxruntime engine's
cached export is checked against what it was made from and against Caffe, and rebuilt where it fails; --resume
auto checks best.caffemodel and every momentum history shape; a staged run goes on in the stage it stopped in; a
run whose dataset folder moved says so and how to go on."""
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import test_hostile
from common import BIN, ENV, child, child_command
from test_hostile import EXPORT, WIDTH, edited_state, refused, run_copy, train, wait_for
from test_own_data import make_folder

files, snapshot = test_hostile.files, test_hostile.snapshot  # its fixtures: synthetic data and weights, a 2-step run

# --- the onnxruntime engine's cache -------------------------------------------------------------------------


def infer(weights, image, out, engine, cache):
    return subprocess.run([str(BIN / 'fcn-infer'), 'voc-fcn8s', '--weights', str(weights), '--width', WIDTH,
                           str(image), '--engine', engine, '--out', str(out)], capture_output=True, text=True,
                          env={**ENV, 'FCN_CACHE': str(cache)}, cwd='/', timeout=300)


@pytest.fixture(scope='module')
def cached(files, tmp_path_factory):
    """Two He-initialized voc-fcn8s weights files (scores that vary), a noise image, and a cache holding the
    onnxruntime engine's export of the first."""
    from caffe_fcn.bench.infer import he_weights

    root = tmp_path_factory.mktemp('onnx-cache')
    paths = {seed: he_weights('voc-fcn8s', 1 / 16, root / f'he{seed}.caffemodel', seed) for seed in (0, 1)}
    image = root / 'noise.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (72, 88, 3), np.uint8)).save(image)
    result = infer(paths[0], image, root / 'out', 'onnxruntime', root / 'cache')
    assert result.returncode == 0, result.stderr[-2000:]
    return {'weights': paths, 'image': image, 'cache': root / 'cache'}


def entry(cache, weights):
    """The cache file the engine looks up for these voc-fcn8s weights at WIDTH."""
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    return cache / 'onnx' / f'voc-fcn8s-w0.0625-{sha[:20]}.onnx'


def labels(folder, image):
    return np.asarray(Image.open(folder / f'{image.stem}.png'))


@pytest.mark.skipif(not EXPORT, reason='the export extra is not installed')
@pytest.mark.parametrize('tamper', ['another weights export', 'emptied', 'truncated'])
def test_a_cached_export_is_used_only_when_its_content_checks_out(cached, tmp_path, tamper):
    """Another weights file's export put under this file's name (its record edited to name these weights), or
    the entry emptied or cut short: the engine says so in one line, rebuilds it, and labels as Caffe does."""
    cache = tmp_path / 'cache'
    shutil.copytree(cached['cache'], cache)
    first, second = cached['weights'][0], cached['weights'][1]
    weights = second if tamper == 'another weights export' else first
    target = entry(cache, weights)
    if tamper == 'another weights export':
        source = entry(cache, first)
        shutil.copy(source, target)
        record = source.with_name(source.name + '.json')
        if record.is_file():  # everything a name-and-record check would look at says "these weights"
            made = json.loads(record.read_text())
            made['weights_sha256'] = hashlib.sha256(second.read_bytes()).hexdigest()
            target.with_name(target.name + '.json').write_text(json.dumps(made))
    else:
        data = target.read_bytes()
        target.write_bytes(b'' if tamper == 'emptied' else data[:len(data) // 2])
    ort = infer(weights, cached['image'], tmp_path / 'ort', 'onnxruntime', cache)
    assert ort.returncode == 0, ort.stderr[-2000:]
    caffe = infer(weights, cached['image'], tmp_path / 'caffe', 'caffe', cache)
    assert caffe.returncode == 0, caffe.stderr[-2000:]
    agreement = (labels(tmp_path / 'ort', cached['image']) == labels(tmp_path / 'caffe', cached['image'])).mean()
    assert agreement > 0.999, f'the onnxruntime labels agree with Caffe\'s on {100 * agreement:.1f}% of pixels'
    notes = [line for line in ort.stderr.splitlines() if 'rebuilding it' in line]
    assert len(notes) == 1 and str(target) in notes[0], ort.stderr[-2000:]
    again = infer(weights, cached['image'], tmp_path / 'again', 'onnxruntime', cache)  # the rebuilt entry is used
    assert again.returncode == 0 and 'rebuilding' not in again.stderr and 'exporting' not in again.stderr, \
        again.stderr[-2000:]


# --- --resume auto: best.caffemodel and the solverstate, checked ---------------------------------------------

def test_resume_auto_mends_an_unreadable_best_caffemodel(files, snapshot, tmp_path):
    """best.caffemodel turned to random bytes: named, moved aside, and rebuilt from the log's best round's
    snapshot, on a resume that trains no more and on one that does."""
    out = run_copy(snapshot, tmp_path / 'run')
    for rounds in (1, 2):
        (out / 'best.caffemodel').write_bytes(np.random.default_rng(rounds).bytes(5000))
        result = train(files, out, '--resume', 'auto', '--rounds', rounds, '--steps', 2)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f'{out / "best.caffemodel"} is not readable weights of this net' in result.stdout + result.stderr
        rows = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
        best = max(rows, key=lambda row: row['scores']['score']['mean_iu'])
        assert (out / 'best.caffemodel').read_bytes() == \
            (out / f'train_iter_{best["iter"]}.caffemodel').read_bytes()
        assert (out / 'best.caffemodel.unreadable').stat().st_size == 5000  # kept aside, not lost


def test_an_unreadable_best_is_rebuilt_from_the_best_round_still_on_disk(files, snapshot, tmp_path):
    """The log's best round's snapshot deleted since: best.caffemodel comes from the best round still there."""
    out = run_copy(snapshot, tmp_path / 'run')
    assert train(files, out, '--resume', 'auto', '--rounds', 2, '--steps', 2).returncode == 0
    rows = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    rows[0]['scores']['score']['mean_iu'] = 1.0  # round 1 (iteration 2) the best
    (out / 'log.jsonl').write_text(''.join(json.dumps(row) + '\n' for row in rows))
    for path in out.glob('train_iter_2.*'):
        path.unlink()
    (out / 'best.caffemodel').write_bytes(b'')
    result = train(files, out, '--resume', 'auto', '--rounds', 2, '--steps', 2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'rebuilt from train_iter_4.caffemodel, the best logged round (2) whose snapshot is readable' in \
        result.stderr, result.stderr[-2000:]
    assert (out / 'best.caffemodel').read_bytes() == (out / 'train_iter_4.caffemodel').read_bytes()


def test_resume_refuses_a_state_whose_history_shapes_are_permuted(files, snapshot, tmp_path):
    """The same value counts in other shapes: the momentum of another net (or width), refused shape by shape."""
    def permute(state):
        dims = state.history[0].shape.dim
        permuted = list(reversed(dims))  # conv1_1's (C, 3, 3, 3) as (3, 3, 3, C)
        del dims[:]
        dims.extend(permuted)
    state = edited_state(snapshot, tmp_path, permute)
    refused(train(files, tmp_path / 'out', '--resume', state, '--rounds', 2, '--steps', 2),
            'momentum history blob 0 has shape (3, 3, 3, 4) but this net\'s conv1_1 blob 0 is (4, 3, 3, 3)')


# --- staged runs and moved datasets: no dead ends -----------------------------------------------------------

def train_staged(slow_stage, *argv):
    """voc-fcn8s/solve.py's main on ARGV in a child, its status the exit status; where `slow_stage` names a stage,
    each of that stage's SGD steps takes a second longer."""
    from solvers import driver

    if slow_stage:
        step, losses, current = driver.Trainer.step, driver.losses, []

        def tracked(self, count, r):
            current[:] = [self.stage]
            return step(self, count, r)
        driver.Trainer.step = tracked
        driver.losses = lambda net, outs: (time.sleep(1 if current == [slow_stage] else 0), losses(net, outs))[1]
    sys.exit(driver.main('voc-fcn8s', list(argv)))


def files_of(folder):
    """{name: bytes} of a run folder's files (the lock, which holds its last holder's PID, left out)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != '.lock'}


def test_a_staged_run_killed_in_its_second_stage_goes_on_there(files, tmp_path):
    argv = ['--stages', '--weights', files['voc-fcn32s'], '--width', WIDTH, '--data-root', files['data'],
            '--rounds', 1, '--steps', 6, '--out', tmp_path]
    proc = subprocess.Popen(child_command(train_staged, 'voc-fcn16s', *argv), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd='/')
    wait_for(tmp_path / 'voc-fcn16s' / 'run.json', proc, seconds=240)
    time.sleep(2.5)  # into the second stage's (slowed) steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    first = files_of(tmp_path / 'voc-fcn32s')
    (stopped,) = (tmp_path / 'voc-fcn16s').glob('train_iter_*.solverstate')
    assert not (tmp_path / 'voc-fcn8s').exists()
    result = child(train_staged, '', *argv, env=ENV, timeout=600)  # the same command again
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'voc-fcn32s: stage 1 of 3 finished earlier in {tmp_path / "voc-fcn32s"}: kept' in result.stdout
    assert f'voc-fcn16s: stage 2 of 3 goes on from {stopped}' in result.stdout, result.stdout
    assert files_of(tmp_path / 'voc-fcn32s') == first  # not retrained, not rewritten
    for stage in ('voc-fcn16s', 'voc-fcn8s'):
        rows = [json.loads(line) for line in (tmp_path / stage / 'log.jsonl').read_text().splitlines()]
        assert [(row['stage'], row['iter']) for row in rows] == [(stage, 6)]
        assert (tmp_path / stage / 'best.caffemodel').read_bytes() == \
            (tmp_path / stage / 'train_iter_6.caffemodel').read_bytes()


def test_resume_after_the_dataset_folder_moved_says_where_to_point_it(files, tmp_path):
    from caffe_fcn import registry

    data = make_folder(tmp_path / 'mine', registry.VOC_CLASSES)
    for args in (('split', data, '--val', '0.3', '--seed', '1'), ('stats', data)):
        assert subprocess.run([str(BIN / 'fcn-data'), *map(str, args)], env=ENV, capture_output=True).returncode == 0
    out = tmp_path / 'run'
    base = [BIN / 'fcn-train', 'voc-fcn32s', '--width', WIDTH, '--steps', 1, '--out', out]
    first = subprocess.run(list(map(str, [*base, '--dataset', data, '--weights', files['voc-fcn32s'], '--rounds',
                                          1])), capture_output=True, text=True, env=ENV, cwd='/', timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    on = subprocess.run(list(map(str, [*base, '--resume', 'auto', '--rounds', 2])), capture_output=True, text=True,
                        env=ENV, cwd='/', timeout=300)  # no --dataset: the run's own, from its record
    assert on.returncode == 0, on.stderr[-2000:]
    moved = data.rename(tmp_path / 'moved')
    gone = subprocess.run(list(map(str, [*base, '--resume', 'auto', '--rounds', 3])), capture_output=True, text=True,
                          env=ENV, cwd='/', timeout=300)
    refused(gone, f'the dataset folder {data}', 'is gone', '--dataset NEWDIR')
    assert len(gone.stderr.strip().splitlines()) == 1, gone.stderr
    again = subprocess.run(list(map(str, [*base, '--resume', 'auto', '--rounds', 3, '--dataset', moved])),
                           capture_output=True, text=True, env=ENV, cwd='/', timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [json.loads(line)['iter'] for line in (out / 'log.jsonl').read_text().splitlines()] == [1, 2, 3]


@pytest.mark.parametrize('damaged', ['.caffemodel', '.solverstate'])
def test_resume_auto_refuses_a_damaged_snapshot_naming_it(files, snapshot, tmp_path, damaged):
    out = run_copy(snapshot, tmp_path / 'run')
    (out / f'train_iter_2{damaged}').write_bytes(np.random.default_rng(0).bytes(5000))
    refused(train(files, out, '--resume', 'auto', '--rounds', 2, '--steps', 2), f'train_iter_2{damaged}',
            'Delete this snapshot')
    assert (out / 'best.caffemodel').read_bytes() == snapshot.with_suffix('.caffemodel').read_bytes()
