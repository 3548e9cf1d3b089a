"""The training driver behind every model folder's solve.py.

As the reference: build the SGD solver, start from the previous stage's weights (or the converted ILSVRC
trunk), fill the upsampling layers with bilinear kernels, then R rounds of K steps with a score on the
evaluation split after each. Added: progress, a log row per round, a learning curve, atomic snapshots,
a NaN guard, Ctrl-C saving a snapshot, and resume from a solverstate.
"""
import argparse
import csv
import gc
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import netgen
from datalayers.resolve import resolve_model
from fcn import cli, registry
from fcn.files import reserve, same_file
from solvers import runs
from solvers.device import use_device
from solvers.metrics import METRICS, format_scores, valid_pixels
from solvers.runs import ROW, ROW_ITER, SetupError
from solvers.score import NotFinite, evaluate, outputs, split_size


class Diverged(cli.Failure):
    """The loss became NaN or infinite."""


def trunk_weights(trunk):
    """Where `fcn-surgery convert` is asked to write the converted ILSVRC trunk (the reference's ilsvrc-nets/)."""
    return registry.REPO / 'ilsvrc-nets' / f'{trunk}-fcn.caffemodel'


def default_weights(model):
    """The previous stage's trained weights, or the converted ILSVRC trunk, as the reference solve.py uses."""
    if model.init_from is None:
        return trunk_weights(model.trunk)
    if not model.data.builtin:  # the previous stage's run on this dataset (fcn-train --stages makes them in turn)
        previous = registry.for_dataset(model.init_from, model.data)
        best = runs.default_out(previous) / 'best.caffemodel'
        if not best.is_file():
            raise SetupError(f'{model.name} starts from the trained {previous.name}, but {best} does not exist: train '
                             f'it first, pass --stages to train every stage in turn, or pass --weights')
        return best
    prev = registry.REPO / model.init_from
    final = prev / f'{model.init_from}.caffemodel'
    found = final if final.is_file() else runs.latest_snapshot(prev / 'snapshot')
    if found is None:
        raise SetupError(f'{model.name} starts from the trained {model.init_from}, but neither {final} nor a '
                         f'snapshot in {prev / "snapshot"} exists: train it first (python {model.init_from}/solve.py)'
                         ' or pass --weights')
    return found


def check_weights(model, weights):
    weights = Path(weights)
    if not weights.is_file():
        convert = f'fcn-surgery convert {model.trunk} --weights ILSVRC.caffemodel --out {trunk_weights(model.trunk)}'
        hint = f'make the converted ILSVRC trunk with `{convert}`' if model.init_from is None \
            else 'train the previous stage first'
        raise SetupError(f'weights {weights} not found: {hint}, or pass --weights W')
    return weights


def initialize(solver, model, weights, width=1.0):
    """Load the checked starting weights, as the reference solve.py does, and make the upsampling bilinear. A
    trunk start is checked to be trained; the NYUDv2 fusion nets are built from the trunk by surgery."""
    import surgery

    if model.surgery in (None, 'load'):  # a start is partial by nature: the new layers are not in the file
        report = surgery.load_weights(solver.net, str(weights), partial=True)
        absent = sorted(previous_stage_layers(model, width) & set(report.missing))
        if absent:
            raise surgery.WeightsError(f'{weights} lacks {", ".join(absent)} of the trained {model.init_from}: the '
                                       'file is truncated or comes from another net')
        if report.missing:
            print(f'{model.name}: starting from {weights}; left at initialization: {", ".join(report.missing)}')
    else:  # a net holding the converted VGG16 trunk, from which surgery builds the fused first layers
        trunk_net = netgen.net(registry.conversion_target('vgg16'), 'deploy', width=width)
        getattr(surgery, model.surgery)(solver.net, surgery.instantiate(trunk_net, str(weights), partial=True))
    if model.init_from is None:
        surgery.check_trained_trunk(solver.net)  # every trunk layer trained: none missing, none at a filler
    surgery.interp(solver.net)


def previous_stage_layers(model, width):
    """The weighted layers that a model's trained previous stage provides (none for a trunk start)."""
    if model.init_from is None:
        return set()
    weighted = ('Convolution', 'Deconvolution', 'InnerProduct', 'Scale')
    return {layer.name for layer in netgen.net(model.init_from, 'deploy', width).layer if layer.type in weighted}


# --- snapshots and resume ------------------------------------------------------------------------------------

def data_layers(net):
    return {name: layer for name, layer in zip(net._layer_names, net.layers, strict=True)
            if layer.type == 'Python' and hasattr(layer, 'state')}


def snapshot(solver, out, row=None):
    """Save weights, solver state, data order and the round's log `row` into `out`, each file atomically: Caffe
    writes into out/.partial, then the files are moved into place, the solverstate last (it names the caffemodel),
    so a complete snapshot always has its row (recover_rows logs it if a kill came before the log did)."""
    partial = Path(out) / '.partial'
    partial.mkdir(parents=True, exist_ok=True)
    sizes = snapshot_sizes(solver.net)
    check_space(out, sizes)  # Caffe aborts the process when a write fails: prove room first
    reserve(partial, sizes, f'a snapshot at iteration {solver.iter}')
    solver.snapshot()
    base = next(partial.glob(f'*_iter_{solver.iter}.caffemodel')).name[:-len('.caffemodel')]
    model, state_path = Path(out) / f'{base}.caffemodel', Path(out) / f'{base}.solverstate'
    os.replace(partial / model.name, model)
    from caffe.proto import caffe_pb2

    state = caffe_pb2.SolverState.FromString((partial / state_path.name).read_bytes())
    state.learned_net = str(model.resolve())
    runs.write_atomic(Path(out) / f'{base}.data.json',
                      json.dumps({k: layer.state() for k, layer in data_layers(solver.net).items()}))
    if row is not None:
        runs.write_atomic(Path(out) / f'{base}{ROW}', json.dumps(row))
    runs.write_atomic(state_path, state.SerializeToString())
    (partial / state_path.name).unlink()
    return model


def snapshot_sizes(net):
    """The bytes of a snapshot's two files, at most: the weights, then the momentum history (as large)."""
    size = sum(blob.data.nbytes for blobs in net.params.values() for blob in blobs) + (8 << 20)
    return [size, size]


def check_space(out, sizes):
    """A Failure, before Caffe writes, when `out` has no room for a snapshot of these file sizes."""
    needed = sum(sizes)
    free = shutil.disk_usage(out).free
    if free < needed:
        raise cli.Failure(f'{out} has {free >> 20} MB free, a snapshot needs {needed >> 20} MB: nothing was written '
                          'and earlier snapshots are untouched; free some space and resume from the last one')


def read_state(path, net):
    """Parse and check a solverstate against the net, so Caffe's CHECKs cannot abort the process."""
    from caffe.proto import caffe_pb2
    from surgery.weights import blob_shape

    path = Path(path)
    if not path.is_file():
        raise SetupError(f'--resume {path}: no such file; pass a .solverstate written by a previous run')
    try:
        state = caffe_pb2.SolverState.FromString(path.read_bytes())
    except Exception as err:  # protobuf raises DecodeError or RuntimeError depending on the backend
        raise SetupError(f'--resume {path}: not a Caffe solverstate ({err})') from err
    beside = path.parent / Path(state.learned_net).name  # a copied run resumes from its own weights, not the
    model = beside if beside.is_file() else Path(state.learned_net)  # original folder's
    if not state.learned_net or not model.is_file():
        raise SetupError(f'--resume {path}: its weights {state.learned_net or "(none named)"} are missing; '
                         'keep the .caffemodel beside the .solverstate')
    shapes = [tuple(b.data.shape) for blobs in net.params.values() for b in blobs]
    history = [blob_shape(h) for h in state.history]
    if len(history) != len(shapes) or any(np.prod(h) != np.prod(s) for h, s in zip(history, shapes, strict=True)):
        raise SetupError(f'--resume {path}: its momentum history has shapes {history[:4]}... but this net has '
                         f'{shapes[:4]}...: it was saved from a different model or width')
    short = [i for i, h in enumerate(state.history) if (len(h.data) or len(h.double_data)) != np.prod(blob_shape(h))]
    if short:
        raise SetupError(f'--resume {path}: momentum history blob {short[0]} holds fewer values than its shape '
                         'says: the file is corrupt')
    if state.iter < 0:
        raise SetupError(f'--resume {path}: it says iteration {state.iter}: the file is corrupt')
    state.learned_net = str(model.resolve())
    return state


def resume(solver, path):
    """Restore iteration, weights, momentum history and (when saved) the data order."""
    import surgery

    state = read_state(path, solver.net)
    surgery.load_weights(solver.net, state.learned_net)  # validates shapes in Python before Caffe copies
    with tempfile.TemporaryDirectory() as tmp:  # the state with its weights' path made absolute
        restored = runs.write_atomic(Path(tmp) / 'resume.solverstate', state.SerializeToString())
        solver.restore(str(restored))
    if any(layer.type == 'Dropout' for layer in solver.net.layers):
        print('note: Caffe keeps its random state out of the solverstate and pycaffe cannot read or set it, so the '
              'dropout masks after a resume differ from those of an uninterrupted run (the weights stay within about '
              '1e-3 of it); --seed makes each run repeatable', file=sys.stderr)
    order = Path(path).with_suffix('.data.json')
    if order.is_file():
        try:
            saved = json.loads(order.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise SetupError(f'--resume: {order} is not a data state ({err}); delete it to restart the data '
                             'order') from None
        if not isinstance(saved, dict):
            raise SetupError(f'--resume: {order} is not a data state (a JSON object of layer states)')
        for name, layer in data_layers(solver.net).items():
            if name in saved:
                layer.restore(saved[name])
    else:
        print(f'note: {order} not found: the data order restarts', file=sys.stderr)


# --- the rounds loop -----------------------------------------------------------------------------------------

def losses(net, outs):
    return {o.loss: float(net.blobs[o.loss].data.flat[0]) for o in outs}


def nonfinite_params(net):
    """The first layer with a NaN or infinite weight, or None. Checked after every update because one more
    forward pass would be too late: Caffe's max pooling indexes out of bounds on NaN and corrupts memory."""
    for name, blobs in net.params.items():
        if not all(math.isfinite(float(b.data.sum())) for b in blobs):
            return name
    return None


def train_round(solver, steps, outs, desc):
    """`steps` SGD steps, one at a time so that a NaN is caught at once; mean train loss (summed, per pixel)."""
    total, pixels = 0.0, 0
    first = outs[0]
    bar = tqdm(range(steps), desc=desc, unit='step', leave=False, mininterval=1)
    for _ in bar:
        solver.step(1)
        now = losses(solver.net, outs)
        bad = {k: v for k, v in now.items() if not math.isfinite(v)}
        if bad:
            raise Diverged(f'loss {bad} at iteration {solver.iter}')
        broken = nonfinite_params(solver.net)
        if broken:
            raise Diverged(f'the weights of {broken} became non-finite at iteration {solver.iter} (loss {now})')
        loss = now[first.loss]
        valid = valid_pixels(solver.net.blobs[first.label].data, solver.net.blobs[first.score].channels)
        total += loss if first.summed else loss * valid
        pixels += valid
        bar.set_postfix(loss=f'{loss:.4g}', refresh=False)
    return total / max(steps, 1), total / max(pixels, 1)


def train(solver, rounds, steps, out, outs, n_val=None, log=None, label='', echo=print):
    """Rounds of `steps` steps from the solver's current iteration up to `rounds` rounds in all, scoring after
    each. Writes a snapshot, a log row and the learning curve per round. Returns the log rows of this call.
    Raises Diverged (after reporting the last good snapshot) and re-raises KeyboardInterrupt after a snapshot;
    SIGTERM (what job schedulers and container stops send) counts as one, and a signal during that snapshot waits."""
    from solvers.curve import plot_curve

    out = Path(out)
    test_net = solver.test_nets[0]
    test_net.share_with(solver.net)
    n_val = n_val or split_size(test_net)
    log = Path(log or out / 'log.jsonl')
    first_round = solver.iter // steps
    rows, best = [], recover_rows(out, log, label, echo)
    with cli.handling(cli.stop, signal.SIGTERM):
        try:
            for r in range(first_round, rounds):
                start = time.time()
                todo = steps - solver.iter % steps  # a resumed round is finished, not started over
                train_loss, train_pp = train_round(solver, todo, outs, f'{label}round {r + 1}/{rounds}')
                samples = []
                try:
                    results = evaluate(test_net, outs, n_val, samples=samples)
                except NotFinite as err:
                    raise Diverged(f'scoring after iteration {solver.iter}: {err}') from None
                write_sheet(out / 'val.png', samples, outs[0].names)
                row = {'stage': label.strip(' :'), 'round': r + 1, 'iter': solver.iter,
                       'seconds': round(time.time() - start, 2), 'train_loss': train_loss,
                       'train_loss_per_pixel': train_pp, 'scores': results}
                saved = snapshot(solver, out, row)
                best = keep_best(saved, row_mean_iu(row), best)
                rows.append(row)
                append_row(log, row)
                plot_curve(log, log.with_suffix('.png'), title=label.strip(' :'))
                for score, result in results.items():
                    echo(f'{label}round {r + 1}/{rounds} iter {solver.iter}: ' + format_scores(result, score))
        except Diverged as err:
            last_good = runs.latest_snapshot(out)
            kept = f'the last good snapshot is {last_good}' if last_good else f'there is no snapshot in {out} yet'
            raise Diverged(f'training stopped: {err}. Weights after this step are not saved; {kept}. '
                           'Lower base_lr or check the data and the starting weights.') from None
        except KeyboardInterrupt:
            with cli.handling(wait_for_the_snapshot, signal.SIGINT, signal.SIGTERM):
                saved = snapshot(solver, out)
            echo(f'interrupted at iteration {solver.iter}: saved {saved}; resume with --resume '
                 f'{saved.with_suffix(".solverstate")}')
            raise
    return rows


def write_sheet(path, samples, names):
    """The round's validation sheet: a few evaluation images, their ground truth and the prediction."""
    from solvers.infer import comparison, png_bytes

    runs.write_atomic(path, png_bytes(comparison(samples, names)))


def append_row(log, row):
    """The round's row at the end of log.jsonl and log.csv."""
    with open(log, 'a') as f:
        f.write(json.dumps(row) + '\n')
    append_csv(log.with_suffix('.csv'), row)


def recover_rows(out, log, label, echo):
    """Log the rows of this stage's rounds whose snapshot is complete but whose log line is missing (a kill came
    between the two), letting best.caffemodel see them; returns the best mean IU so far."""
    from solvers.curve import is_row, read_log

    rows = read_log(log) if log.is_file() else []
    logged, best = {row['iter'] for row in rows}, best_so_far(rows, label)
    saved = sorted((int(m.group(1)), p) for p in Path(out).glob(f'*_iter_*{ROW}') if (m := ROW_ITER.search(p.name)))
    for _, path in saved:
        try:
            row = json.loads(path.read_text())
            if not is_row(row):
                raise ValueError('not a log row')
        except (OSError, ValueError):
            raise SetupError(f'{path} is not a log row (a damaged file?): delete it, and its round is not logged') \
                from None
        model = path.with_name(path.name[:-len(ROW)] + '.caffemodel')
        fresh = row['iter'] not in logged and row['stage'] == label.strip(' :')
        if fresh and model.with_suffix('.solverstate').is_file():
            best = keep_best(model, row_mean_iu(row), best)
            append_row(log, row)
            echo(f'note: round {row["round"]} (iteration {row["iter"]}) was saved but not logged (the run was killed '
                 'between the two): its row is logged now')
    return best


def row_mean_iu(row):
    """The mean IU a row is ranked by: its first output's (the scores are in the nets' output order)."""
    return next(iter(row['scores'].values()))['mean_iu']


def append_csv(path, row):
    """The round's numbers as a CSV row (a header first in a new file), for spreadsheets."""
    flat = {key: row[key] for key in ('stage', 'round', 'iter', 'seconds', 'train_loss', 'train_loss_per_pixel')}
    flat.update((f'{score}_{metric}', result[metric]) for score, result in row['scores'].items() for metric in METRICS)
    new = not path.exists()
    with open(path, 'a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(flat))
        if new:
            writer.writeheader()
        writer.writerow(flat)


def best_so_far(rows, label):
    """The best mean IU that this stage's log rows reached so far (a resumed run goes on from it)."""
    scores = [row_mean_iu(row) for row in rows if row['stage'] == label.strip(' :')]
    return max((s for s in scores if s == s), default=-math.inf)  # s == s: not NaN


def keep_best(model, mean_iu, best):
    """Copy the round's snapshot to best.caffemodel beside it when its mean IU beats the best so far."""
    if mean_iu == mean_iu and mean_iu > best:
        runs.write_atomic(model.parent / 'best.caffemodel', model.read_bytes())
        return mean_iu
    return best


def wait_for_the_snapshot(signum, frame):
    print('\nsaving a snapshot first: it finishes, then the run stops', file=sys.stderr, flush=True)


# --- command line --------------------------------------------------------------------------------------------

def parser(model=None):
    """MODEL/solve.py's options (`model` given: its folder's), or fcn-train's (MODEL first)."""
    what = f'{model.name} as the reference does: {model.rounds_steps[0]} rounds of {model.rounds_steps[1]} SGD ' \
        f'steps, scored on the {model.splits[1]} split after each round' if model else \
        'an FCN as the reference does: the rounds of SGD steps of its solve.py, scored after each round'
    ap = argparse.ArgumentParser(prog=f'{model.name}/solve.py' if model else 'fcn-train', description=(
        f'Train {what}. Snapshots, log.jsonl and log.png go to --out.'))
    if model is None:
        ap.add_argument('model', metavar='MODEL', help='the model to train, e.g. voc-fcn32s (fcn-netgen --list shows '
                        'them); with --dataset, its architecture on that dataset')
    cli.add_dataset(ap, run=False)
    ap.add_argument('--stages', action='store_true', help='train MODEL\'s stages in turn, as the paper did: for '
                    'voc-fcn8s, FCN-32s, then FCN-16s from its best weights, then FCN-8s from those (each stage\'s '
                    'run in its own --out folder, OUT/STAGE where --out is given)')
    start = ap.add_mutually_exclusive_group()
    start.add_argument('--weights', type=Path, help="starting weights (default: the previous stage's trained "
                       'weights, or the converted ILSVRC trunk)')
    start.add_argument('--from', dest='start', choices=('published',), help='with --dataset: start from MODEL\'s '
                       'published PASCAL weights, the score layers re-initialized except the rows of classes whose '
                       'names match a PASCAL class (fetched first if need be; --mirror URL or FCN_WEIGHTS_MIRROR)')
    ap.add_argument('--mirror', default=os.environ.get('FCN_WEIGHTS_MIRROR'), metavar='URL',
                    help='with --from published: fetch from this mirror')
    start.add_argument('--resume', type=resume_arg, metavar='SOLVERSTATE', help='continue a run from its '
                       '.solverstate; `auto`: from the latest complete snapshot in --out')
    ap.add_argument('--overwrite', action='store_true', help='start over in an --out that holds a previous run '
                    '(its snapshots and log are deleted first)')
    ap.add_argument('--rounds', type=cli.positive(int), help='rounds in all, counted from iteration 0 (default: '
                    'the reference\'s' + (f', {model.rounds_steps[0]})' if model else ')'))
    ap.add_argument('--steps', type=cli.positive(int), help='SGD steps per round (default: the reference\'s'
                    + (f', {model.rounds_steps[1]})' if model else ')'))
    cli.add_data_root(ap)
    ap.add_argument('--out', type=Path, help='where snapshots, the log and the curve go (default: MODEL/snapshot)')
    cli.add_width(ap, what='the nets to train')
    ap.add_argument('--base-lr', type=cli.positive(float),
                    help="override the solver's base_lr (e.g. for a reduced-width variant)")
    ap.add_argument('--seed', type=cli.seed, help="the solver's random_seed: seeds Caffe's random numbers "
                    '(dropout) for a repeatable run, bit for bit the reference solve.py\'s with that random_seed on '
                    'the CPU (default: unseeded, as the reference; the image order is seeded by the nets\' seed, '
                    '1337, either way)')
    ap.add_argument('--augment', action='store_true', help='mirror and translate (up to 32 pixels) the training '
                    'images and labels at random, as CVPR 2015 sec. 4.3 tried (default: off, as the paper trained)')
    ap.add_argument('--class-balance', action='store_true', help='weight the training loss per class by median '
                    'frequency balancing over the training split, as CVPR 2015 sec. 4.3 tried (default: off)')
    ap.add_argument('--loss-sampling', type=keep_probability, metavar='P', help='keep each final-layer cell of the '
                    'loss with probability P and accumulate 1/P times as many images per step (iter_size), as '
                    'CVPR 2015 sec. 4.3 tried (default 1: the whole image)')
    cli.add_device(ap)
    if model is not None:  # the reference's own command line: `python solve.py 0`, sys.argv[1] the GPU
        ap.add_argument('gpu_id', nargs='?', type=int, metavar='GPU', help='as the reference\'s `python solve.py '
                        'GPU`: the same as --gpu GPU')
    return ap


def resume_arg(text):
    return text if text == 'auto' else Path(text)


def keep_probability(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'a probability in (0, 1] is needed, e.g. 0.25; got {text!r}')
    return value


def training_options(model, args, iter_size):
    """The data layer overrides and solver values that --augment and --loss-sampling ask for."""
    layer, solver = dict(registry.AUGMENT) if args.augment else {}, {}
    if args.loss_sampling and args.loss_sampling < 1:
        layer.update(sample=args.loss_sampling, cell=model.stride)
        solver['iter_size'] = round(iter_size / args.loss_sampling)  # the same pixels per step, on average
    return layer, solver


def class_counts(model, dirs):
    """{label top: pixels per class} over the model's training split, read by its own data layer."""
    import surgery
    from caffe.proto import caffe_pb2

    reader = caffe_pb2.NetParameter(name='class-counts')
    every_image_once = {**dirs, 'randomize': False}  # in file order: a training split is drawn with replacement
    reader.layer.add().CopyFrom(netgen.net(model, model.splits[0], overrides=every_image_once).layer[0])
    net = surgery.instantiate(reader)
    counts = {task.label: np.zeros(task.classes, np.int64) for task in model.tasks}
    for _ in tqdm(range(split_size(net)), desc='class frequencies', unit='img', leave=False):
        net.forward()
        for label, count in counts.items():
            values = net.blobs[label].data.astype(np.int64).ravel()
            count += np.bincount(values[(values >= 0) & (values < len(count))], minlength=len(count))
    return counts


def balanced_weights(model, dirs):
    """{label top: class weights} by median frequency balancing over the model's training split."""
    from solvers.losses import class_weights

    return {label: class_weights(count) for label, count in class_counts(model, dirs).items()}


def parse_args(argv, model=None):
    from solvers.infer import INT_MAX  # Caffe's int: its iteration counter too

    ap = parser(model)
    args = ap.parse_args(argv)
    if getattr(args, 'gpu_id', None) is not None:
        if args.gpu is not None and args.gpu != args.gpu_id:
            ap.error(f'GPU {args.gpu_id} and --gpu {args.gpu} disagree: give one')
        args.gpu = args.gpu_id
    args.model = model.name if model else args.model
    args.model = resolve_model(args)  # on --dataset, when given
    if args.start and args.model.data.builtin:
        ap.error('--from published is for another --dataset: to go on from the published weights on '
                 f'{args.model.data.title}, pass them as --weights')
    if args.stages and args.resume:
        ap.error('--stages starts every stage afresh: resume one stage as MODEL --resume SOLVERSTATE')
    for model in stage_chain(args.model) if args.stages else [args.model]:
        rounds, steps = args.rounds or model.rounds_steps[0], args.steps or model.rounds_steps[1]
        if rounds * steps > INT_MAX:
            ap.error(f'--rounds {rounds} x --steps {steps} is {rounds * steps} iterations: Caffe counts them in a '
                     f'32-bit int, at most {INT_MAX}')
    return args if args.stages else for_stage(args, args.model)


def stage_chain(model):
    """The stages that lead to `model`, first to last (voc-fcn8s: FCN-32s, FCN-16s, FCN-8s), on its dataset."""
    chain = [model]
    while chain[0].init_from is not None:
        chain.insert(0, registry.for_dataset(chain[0].init_from, model.data))
    return chain


def for_stage(args, model, weights=None):
    """The arguments of one run of `model`: its schedule and --out folder unless given (with --stages, a given
    --out holds one folder per stage), starting from `weights` where given."""
    stage = argparse.Namespace(**vars(args))
    stage.model = model
    stage.rounds, stage.steps = args.rounds or model.rounds_steps[0], args.steps or model.rounds_steps[1]
    stage.out = (args.out / model.name if args.stages else args.out) if args.out else \
        Path(args.resume).parent if args.resume not in (None, 'auto') else runs.default_out(model)
    stage.weights = weights or args.weights
    return stage


def train_stages(args):
    """--stages: each stage trained in turn, each from the previous one's best weights."""
    weights, start, chain = None, args.start, stage_chain(args.model)
    for number, model in enumerate(chain, 1):
        stage = for_stage(args, model, weights)
        stage.start, start = start, None  # --from published starts the first stage only
        print(f'{model.name}: stage {number} of {len(chain)}, into {stage.out}'
              + (f', from {weights}' if weights else ''))
        run(stage)
        weights = stage.out / 'best.caffemodel'
    return cli.OK


def run(args):
    import caffe

    model = args.model
    use_device(args.gpu)
    layer_overrides, overrides = training_options(model, args, netgen.solver(model).iter_size)
    if args.base_lr is not None:
        overrides['base_lr'] = args.base_lr
    if args.seed is not None:
        overrides['random_seed'] = args.seed
    if args.base_lr is None and (scaled := scaled_base_lr(model, netgen.solver(model).base_lr)):
        overrides['base_lr'] = scaled
    weights = None if args.resume else start_weights(args)
    runs.lock(args.out)
    args.resume = claim_out(args, weights)
    if args.resume:  # before the nets are built: a state of another run is refused at once
        check_same_run(args, Path(args.resume).parent / 'run.json')
    report_classes(model)
    balance = balanced_weights(model, runs.data_dirs(model, args.data_root)) if args.class_balance else None
    prepared = runs.prepare(model, args.out, args.width, args.data_root, layer_overrides, solver_overrides=overrides,
                            class_weights=balance)
    solver = caffe.SGDSolver(str(prepared.solver))
    if args.resume:
        resume(solver, args.resume)
        if solver.iter >= args.rounds * args.steps:
            print(f'{model.name}: already finished at iteration {solver.iter} ({args.rounds} rounds of {args.steps} '
                  'steps); ask for more --rounds to go on')
            return cli.OK
    elif args.start == 'published':
        from_published(solver, model, weights)
    else:
        initialize(solver, model, weights, args.width)
    runs.write_atomic(args.out / 'run.json',
                      json.dumps(runs.record(args, weights, layer_overrides, overrides), indent=1))
    train(solver, args.rounds, args.steps, args.out, outputs(prepared.train_net, model), label=f'{model.name}: ')
    return cli.OK


def start_weights(args):
    """The checked file a new run starts from: --weights, the published weights (--from published) or the
    model's default (the previous stage's, or the converted ILSVRC trunk)."""
    model = args.model
    if args.start == 'published':
        from surgery import published

        declared = registry.get(model.name)
        if declared.published is None:
            raise SetupError(f'--from published: {model.name} has no published weights (fcn-weights list shows '
                             'those that do)')
        if args.width != declared.published.width:
            raise SetupError(f'--from published: the published {model.name} weights are for width '
                             f'{declared.published.width:g}, not --width {args.width:g}')
        return published.fetch(declared.published, args.mirror)
    return check_weights(model, args.weights or default_weights(model))


def from_published(solver, model, weights):
    """Start from the declared model's published weights: every layer that fits as it is, and in the score layers
    the rows of the classes whose names the dataset shares with it; the rest as initialized, the upsampling
    bilinear."""
    import surgery

    declared = registry.get(model.name)
    source = surgery.instantiate(netgen.net(declared, 'deploy', declared.published.width), weights=str(weights))
    kept = surgery.transfer_classes(solver.net, source, declared.tasks[0].names, model.tasks[0].names)
    surgery.interp(solver.net)
    print(f'{model.name}: started from the published {weights.name}; classes kept from it: '
          f'{", ".join(kept) if kept else "none (no class name matches)"}; the others start at zero')


def scaled_base_lr(model, base_lr):
    """The base_lr for a dataset of other image sizes, or None (the paper's datasets, and normalized losses, keep
    the reference's). The reference's rate is for a loss summed over PASCAL-sized images: the gradient grows
    with the pixels, so the rate is scaled by PASCAL's pixels per image over the dataset's."""
    pixels = registry.mean_pixels(model.data)
    if model.data.builtin or not model.summed_loss or not pixels:
        return None
    scaled = float(f'{base_lr * registry.PASCAL_PIXELS / pixels:.3g}')
    print(f'{model.name}: base_lr {scaled:g}, the reference\'s {base_lr:g} scaled by PASCAL\'s '
          f'{registry.PASCAL_PIXELS} pixels an image over this dataset\'s {pixels:.0f} (the loss is summed over '
          'pixels); --base-lr sets another')
    return scaled


def report_classes(model):
    """At the start of a run on a folder dataset: the class pixel frequencies, and the classes absent from a split."""
    stats = registry.folder_stats(model.data.name) if model.data.home and not model.data.builtin else None
    if stats is None:
        return
    for split, pixels in stats['pixels'].items():
        total = sum(pixels.values()) or 1
        print(f'{model.name}: {split} pixels: ' + ', '.join(f'{n} {100 * c / total:.1f}%' for n, c in pixels.items()))
        absent = [name for name in model.tasks[0].names if not pixels.get(name)]
        if absent:
            print(f'warning: {", ".join(absent)} never appear(s) in the {split} split: '
                  + ('the net cannot learn them' if split == 'train' else 'their IU is not scored'), file=sys.stderr)


def check_same_run(args, record):
    """A run folder belongs to one model and width: a state from another is refused (its run.json says)."""
    if not record.is_file():
        return
    try:
        saved = json.loads(record.read_text())
        theirs = (saved['model'], float(saved['width']))
    except (ValueError, KeyError, TypeError) as err:
        raise SetupError(f'--resume: {record} is not a run record ({err}); mend or delete it') from None
    if saved.get('dataset', args.dataset) != args.dataset and args.dataset:
        raise SetupError(f'--resume: {record.parent} is a run on {saved["dataset"]}, not on {args.dataset}')
    if theirs != (args.model.name, float(args.width)):
        raise SetupError(f'--resume: {record.parent} is a run of {theirs[0]} at width {theirs[1]:g}, not of '
                         f'{args.model.name} at width {float(args.width):g}: resume it as that, or start anew')


def claim_out(args, weights=None):
    """The solverstate to resume from, after checking --out: a previous run there is continued (--resume), or
    deleted (--overwrite), or the run is refused, saying which to choose."""
    out, previous = Path(args.out), runs.previous_run(args.out)
    if [p.name for p in previous] == ['run.json']:  # a run stopped in its set-up: nothing of it to keep
        runs.clear(previous)
        previous = []
    if args.resume == 'auto':
        latest = runs.latest_snapshot(out, complete=True)
        if latest is None:
            raise SetupError(f'--resume auto: {out} holds no complete snapshot to resume from')
        return latest.with_suffix('.solverstate')
    home = Path(args.resume).parent if args.resume else out
    if previous and not same_file(home, out):
        raise SetupError(f'--resume {args.resume} continues the run in {home}, but --out {out} holds another run '
                         f'({previous[0].name}, ...) and the two logs would mix: leave out --out to go on in {home}, '
                         'or choose an empty --out to branch from it')
    if previous and not args.resume:
        if not args.overwrite:
            raise SetupError(f'{out} holds a previous run ({previous[0].name}, ...): continue it with --resume auto, '
                             'start over with --overwrite (which deletes its snapshots and log), or choose another '
                             '--out')
        start = next((p for p in previous if weights is not None and same_file(p, weights)), None)
        if start is not None:
            raise SetupError(f'--overwrite would delete {start}, the weights this run starts from: copy it out '
                             f'of {out} first, or choose another --out')
        runs.clear(previous)
    return args.resume


def main(name, argv=None):
    """MODEL/solve.py: train the model its folder is named after."""
    try:
        model = registry.trainable(name)
    except ValueError as err:
        return cli.error(f'{name}/solve.py', err, cli.BAD_INPUT)
    return train_command(argv, model)


def train_command(argv=None, model=None):
    """fcn-train MODEL (or MODEL/solve.py): returns the exit status."""
    prog = f'{model.name}/solve.py' if model else 'fcn-train'

    @cli.tool(prog)
    def command():
        try:
            with cli.handling(cli.stop, signal.SIGTERM):  # during set-up too: a clean stop, not a silent 143
                args = parse_args(argv, model)
                return train_stages(args) if args.stages else run(args)
        except Diverged as err:
            cli.error(prog, err, cli.FAILURE)
            # A NaN inside a step already made Caffe's max pooling write out of bounds (its argmax stays -1):
            # freeing the net would abort. Every snapshot is complete on disk, so leave without tearing Caffe down.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(cli.FAILURE)
        finally:
            gc.collect()  # free the solver now: left to interpreter shutdown, Caffe's teardown can crash
    return command()
