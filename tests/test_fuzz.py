"""A few hundred mutated caffemodels, prototxts, solverstates, images, label maps (every shape, type and range,
through a training step) and run folders (log rows, rows beside snapshots, run records) through the loaders that
guard Caffe: each loads or is refused with the project's own error; none aborts the process (exit >= 128) or
raises anything else (which would reach a user as a traceback). Seeded, so a failure repeats."""
import json
import random
import traceback
from pathlib import Path

import numpy as np
import pytest
from common import child

SMALL_NET = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
             'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 '
             'kernel_size: 3 pad: 1 } }\nlayer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { '
             'pool: MAX kernel_size: 2 stride: 2 } }\n')


def mutate(data):
    """Bytes with one to four random edits: a byte changed, the rest cut off, a run repeated or one left out."""
    data = bytearray(data)
    for _ in range(random.randint(1, 4)):
        kind, at = random.random(), random.randrange(max(len(data), 1))
        if kind < 0.4 and data:
            data[at] = random.randrange(256)
        elif kind < 0.6:
            data = data[:at]
        elif kind < 0.8:
            data[at:at] = data[at:at + random.randint(1, 64)]
        else:
            data[at:at + random.randint(1, 16)] = b''
    return bytes(data)


def text_mutate(text):
    """Prototxt with one to three random line edits: deleted, its numbers changed, a name or type swapped, or
    another line repeated."""
    lines = text.splitlines()
    for _ in range(random.randint(1, 3)):
        i = random.randrange(len(lines))
        kind = random.random()
        if kind < 0.3:
            del lines[i]
        elif kind < 0.6:
            lines[i] = ''.join(c if not c.isdigit() else str(random.choice([0, 1, 9, 99, 12345])) for c in lines[i])
        elif kind < 0.8:
            lines[i] = lines[i].replace(random.choice(['"c"', '"p"', '"data"', 'Convolution', 'MAX']),
                                        random.choice(['"zz"', '"c"', 'Pooling', 'Nope', '-1']))
        else:
            lines.insert(i, lines[random.randrange(len(lines))])
    return '\n'.join(lines)


class Attempts:
    """Runs each case, counting it loaded, refused with the project's own error, or unexpected (anything else)."""

    def __init__(self):
        import surgery
        from caffe_fcn.datalayers import DatasetError
        from caffe_fcn.cli import BadInput

        self.ours = (surgery.WeightsError, DatasetError, BadInput, ValueError)
        self.counts = {'loaded': {}, 'refused': {}, 'unexpected': []}

    def __call__(self, kind, i, load, *args):
        print(kind, i, flush=True)  # the last line names the case if Caffe aborts the process
        try:
            load(*args)
            self.counts['loaded'][kind] = self.counts['loaded'].get(kind, 0) + 1
        except self.ours:
            self.counts['refused'][kind] = self.counts['refused'].get(kind, 0) + 1
        except Exception:
            self.counts['unexpected'].append(f'{kind} {i}: ' + traceback.format_exc().splitlines()[-1])


def good_inputs(work, data):
    """The good files the cases mutate, in `work`: a stand-in voc-fcn32s at width 1/32 and its weights, a solver
    that took a step on `data` and its snapshot, a PNG and a JPEG. Returns the model, net, solver and solverstate."""
    import caffe
    import netgen
    import surgery
    from PIL import Image
    from caffe_fcn import registry
    from solvers import driver, runs

    model = registry.get('voc-fcn32s')
    net = surgery.instantiate(netgen.net(model, 'deploy', width=1 / 32))
    surgery.stand_in_trunk(net, seed=0)
    surgery.interp(net)
    net.save(str(work / 'good.caffemodel'))
    prepared = runs.prepare(model, work / 'run', 1 / 32, data)
    solver = caffe.SGDSolver(str(prepared.solver))
    surgery.load_weights(solver.net, str(work / 'good.caffemodel'))
    solver.step(1)
    state_path = driver.snapshot(solver, work / 'run').with_suffix('.solverstate')  # where prepare aims Caffe
    for seed, suffix in ((0, 'png'), (1, 'jpg')):
        pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), np.uint8)
        Image.fromarray(pixels).save(work / f'good.{suffix}')
    return model, net, solver, state_path


def mutated_files(attempt, net, solver, state_path, work):
    """Mutated caffemodels, prototxts, solverstates and images through their loaders."""
    import surgery
    from caffe_fcn.datalayers import io
    from solvers import deploy, driver

    def read_image(path):
        return deploy.read_image(path), io.read_rgb(path)

    good_model = (work / 'good.caffemodel').read_bytes()
    for i in range(100):
        path = work / f'm{i}.caffemodel'
        path.write_bytes(mutate(good_model))
        attempt('caffemodel', i, surgery.load_weights, net, str(path))
    for i in range(40):
        path = work / f'n{i}.prototxt'
        path.write_text(text_mutate(SMALL_NET))
        attempt('prototxt', i, surgery.instantiate, str(path))
    good_state = state_path.read_bytes()
    for i in range(100):
        path = state_path.parent / f's{i}.solverstate'
        path.write_bytes(mutate(good_state))
        attempt('solverstate', i, driver.resume, solver, path)
    for i in range(100):
        suffix = ('.png', '.jpg')[i % 2]
        path = work / f'i{i}{suffix}'
        path.write_bytes(mutate((work / f'good{suffix}').read_bytes()))
        attempt('image', i, read_image, path)


def mutated_labels(attempt, solver, data):
    """Label maps of every shape, type and range in SBD's .mat files, through the training net's data layer and
    loss (every training image holds the one mutated label, whichever the layer draws)."""
    from caffe_fcn.datalayers.synth import gt_cls, save_mat

    sbdd = data / 'sbdd' / 'dataset'
    shapes = [(32, 32), (32, 32, 3), (1, 32, 32), (33, 32), (32, 31), (0, 32), (32,), (32, 32, 1), (2, 32, 32)]
    for i in range(60):
        rng = np.random.default_rng(i)
        dtype = random.choice([np.uint8, np.int32, np.float64, np.bool_])
        label = rng.integers(-1 if dtype is not np.uint8 else 0, random.choice([2, 21, 256, 300]),
                             random.choice(shapes)).astype(dtype)
        if dtype is np.float64 and label.size and random.random() < 0.5:
            label.flat[0] = random.choice([np.nan, np.inf, 0.5])
        fields = {**gt_cls(np.zeros((32, 32), np.uint8)), 'Segmentation': label}
        for id_ in (sbdd / 'train.txt').read_text().split():
            save_mat(sbdd / 'cls' / f'{id_}.mat', {'GTcls': fields})
        attempt('label', i, solver.step, 1)


def mutated_run_folders(attempt, model, work, state_path):
    """Run folders: torn and mutated log rows, rows beside snapshots and run records."""
    from solvers import driver

    run_dir = work / 'run'
    row = {'stage': 'voc-fcn32s', 'round': 1, 'iter': 1, 'seconds': 1.0, 'train_loss': 2.0,
           'train_loss_per_pixel': 0.1, 'scores': {'score': {'overall_acc': 0.5, 'mean_acc': 0.4, 'mean_iu': 0.3,
                                                            'fwavacc': 0.2, 'loss_per_pixel': 0.1}}}
    good_log = json.dumps(row) + '\n' + json.dumps({**row, 'round': 2, 'iter': 2}) + '\n'
    record = {'model': 'voc-fcn32s', 'width': 1 / 32, 'dataset': 'voc'}
    args = type('Args', (), {'model': model, 'width': 1 / 32, 'dataset': None})()
    log = run_dir / 'log.jsonl'
    files = {log: good_log, state_path.with_suffix('').with_suffix('.row.json'): json.dumps(row),
             run_dir / 'run.json': json.dumps(record)}

    def read_run_folder():
        return (driver.recover_rows(run_dir, log, 'voc-fcn32s', lambda text: None),
                driver.check_same_run(args, run_dir / 'run.json'))

    for i in range(60):
        for n, (path, text) in enumerate(files.items()):  # one of the three mutated, the others good
            path.write_bytes(mutate(text.encode()) if n == i % 3 else text.encode())
        attempt('run folder', i, read_run_folder)


def fuzz_the_loaders(work, data):
    """The child program: every case through its loader, seeded; each case's kind and number printed as it starts,
    then the counts as JSON."""
    random.seed(0)
    work, data = Path(work), Path(data)
    model, net, solver, state_path = good_inputs(work, data)
    attempt = Attempts()
    mutated_files(attempt, net, solver, state_path, work)
    mutated_labels(attempt, solver, data)
    mutated_run_folders(attempt, model, work, state_path)
    print(json.dumps(attempt.counts))


@pytest.mark.slow
def test_mutated_inputs_never_abort_or_escape(tmp_path):
    from caffe_fcn.datalayers.synth import synthesize

    data = tmp_path / 'data'
    synthesize('sbdd', data / 'sbdd', count=4, seed=0, size=(32, 32))
    synthesize('voc', data / 'pascal', count=4, seed=0, size=(32, 32))
    result = child(fuzz_the_loaders, tmp_path, data, timeout=900)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else '(nothing)'
    assert result.returncode == 0, f'exit {result.returncode} at {last}: {result.stderr[-2000:]}'
    counts = json.loads(last)
    assert counts['unexpected'] == []
    assert sum(counts['refused'].values()) > 150 and sum(counts['loaded'].values()) > 10, counts
    for kind in ('label', 'run folder'):  # the mutations reach both outcomes
        assert counts['refused'].get(kind) and counts['loaded'].get(kind), counts
