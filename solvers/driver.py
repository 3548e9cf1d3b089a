"""The training driver behind every model folder's solve.py.

As the reference: build the SGD solver, start from the previous stage's weights (or the converted ILSVRC
trunk), fill the upsampling layers with bilinear kernels, then R rounds of K steps with a score on the
evaluation split after each. Added: progress, a log row per round, a learning curve, atomic snapshots,
a NaN guard, Ctrl-C saving a snapshot, and resume from a solverstate.
"""
import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import netgen
from fcn import registry
from fcn.cli import tool
from solvers import runs
from solvers.metrics import format_scores
from solvers.runs import SetupError
from solvers.score import evaluate, outputs, split_size



class Diverged(Exception):
    """The loss became NaN or infinite."""


def schedule(name):
    runs.check_model(name)
    return registry.schedule(name)


def use_device(gpu=None):
    """CPU by default; --gpu N is probed in a child process first (a CPU-only Caffe aborts on set_device)."""
    import caffe

    if gpu is None:
        caffe.set_mode_cpu()
        return
    probe = subprocess.run([sys.executable, '-c', f'import caffe; caffe.set_device({int(gpu)}); caffe.set_mode_gpu()'],
                           capture_output=True, text=True)
    if 'CPU-only' in probe.stderr:
        raise SetupError(f'--gpu {gpu}: this pycaffe is a CPU-only build. Rebuild it with CUDA '
                         '(`make caffe CUDA=1`, needs the CUDA toolkit), or run with --cpu.')
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ['no message'])[-1]
        raise SetupError(f'--gpu {gpu}: GPU {gpu} is not usable ({last}); pick another with --gpu N or use --cpu')
    caffe.set_device(int(gpu))
    caffe.set_mode_gpu()


# --- weights -------------------------------------------------------------------------------------------------

def upsampling_layers(param):
    """The Deconvolution layers: fixed bilinear interpolation, filled by surgery.interp before training."""
    return [layer.name for layer in param.layer if layer.type == 'Deconvolution']


def trunk_weights(trunk):
    """Where `fcn-surgery convert` is asked to write the converted ILSVRC trunk (the reference's ilsvrc-nets/)."""
    return Path(netgen.REPO) / 'ilsvrc-nets' / f'{trunk}-fcn.caffemodel'


def default_weights(name):
    """The previous stage's trained weights, or the converted ILSVRC trunk, as the reference solve.py uses."""
    model = runs.check_model(name)
    if model.init_from is None:
        return trunk_weights(model.trunk)
    prev = runs.model_dir(model.init_from)
    final = prev / f'{model.init_from}.caffemodel'
    found = final if final.is_file() else runs.latest_snapshot(prev / 'snapshot')
    if found is None:
        raise SetupError(f'{name} starts from the trained {model.init_from}, but neither {final} nor a snapshot in '
                         f'{prev / "snapshot"} exists: train it first (python {model.init_from}/solve.py) '
                         'or pass --weights')
    return found


def check_weights(name, weights):
    weights = Path(weights)
    if not weights.is_file():
        model = runs.check_model(name)
        convert = f'fcn-surgery convert {model.trunk} --weights ILSVRC.caffemodel --out {trunk_weights(model.trunk)}'
        hint = f'make the converted ILSVRC trunk with `{convert}`' if model.init_from is None \
            else 'train the previous stage first'
        raise SetupError(f'weights {weights} not found: {hint}, or pass --weights W')
    return weights


# Models whose first layers differ from the VGG16 trunk: surgery builds them from a net holding the trunk.
FUSION_INITS = {'nyud-fcn32s-color-d': 'init_color_d', 'nyud-fcn32s-color-hha': 'init_two_stream'}


def initialize(solver, name, weights, param, width=1.0):
    """Load the starting weights (validated in Python first), as the reference solve.py does, and make the
    upsampling bilinear. A trunk start is checked to be trained; the NYUDv2 fusion nets go through surgery."""
    import surgery
    from surgery.cli import CONVERSIONS

    weights = check_weights(name, weights)
    if name in FUSION_INITS and runs.check_model(name).init_from is None:
        trunk_net = CONVERSIONS['vgg16'][1]  # the net `fcn-surgery convert vgg16` wrote the trunk for
        vgg = surgery.instantiate(netgen.net(trunk_net, 'deploy', width=width), weights=str(weights))
        getattr(surgery, FUSION_INITS[name])(solver.net, vgg)
    else:
        surgery.load_weights(solver.net, str(weights))
    if runs.check_model(name).init_from is None:
        surgery.check_trained_trunk(solver.net)
    surgery.interp(solver.net, upsampling_layers(param))


# --- snapshots and resume ------------------------------------------------------------------------------------

def data_layers(net):
    return {name: layer for name, layer in zip(net._layer_names, net.layers, strict=True)
            if layer.type == 'Python' and hasattr(layer, 'state')}


def snapshot(solver, out):
    """Save weights, solver state and data order into `out`, each file atomically: Caffe writes into
    out/.partial, then the files are moved into place, the solverstate last (it names the caffemodel)."""
    partial = Path(out) / '.partial'
    partial.mkdir(parents=True, exist_ok=True)
    solver.snapshot()
    base = next(partial.glob(f'*_iter_{solver.iter}.caffemodel')).name[:-len('.caffemodel')]
    model, state_path = Path(out) / f'{base}.caffemodel', Path(out) / f'{base}.solverstate'
    os.replace(partial / model.name, model)
    from caffe.proto import caffe_pb2

    state = caffe_pb2.SolverState.FromString((partial / state_path.name).read_bytes())
    state.learned_net = str(model.resolve())
    runs.write_atomic(Path(out) / f'{base}.data.json',
                      json.dumps({k: layer.state() for k, layer in data_layers(solver.net).items()}))
    runs.write_atomic(state_path, state.SerializeToString())
    (partial / state_path.name).unlink()
    return model


def blob_shape(blob):
    return tuple(blob.shape.dim) if blob.HasField('shape') else \
        tuple(d for d in (blob.num, blob.channels, blob.height, blob.width))


def read_state(path, net):
    """Parse and check a solverstate against the net, so Caffe's CHECKs cannot abort the process."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f'--resume {path}: no such file; pass a .solverstate written by a previous run')
    from caffe.proto import caffe_pb2

    try:
        state = caffe_pb2.SolverState.FromString(path.read_bytes())
    except Exception as err:  # protobuf raises DecodeError or RuntimeError depending on the backend
        raise SetupError(f'--resume {path}: not a Caffe solverstate ({err})') from err
    model = Path(state.learned_net)
    if not model.is_file():
        model = path.parent / model.name  # the folder was moved: look beside the solverstate
    if not state.learned_net or not model.is_file():
        raise SetupError(f'--resume {path}: its weights {state.learned_net or "(none named)"} are missing; '
                         'keep the .caffemodel beside the .solverstate')
    shapes = [tuple(b.data.shape) for blobs in net.params.values() for b in blobs]
    history = [blob_shape(h) for h in state.history]
    if len(history) != len(shapes) or any(np.prod(h) != np.prod(s) for h, s in zip(history, shapes, strict=True)):
        raise SetupError(f'--resume {path}: its momentum history has shapes {history[:4]}... but this net has '
                         f'{shapes[:4]}...: it was saved from a different model or width')
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
    order = Path(path).with_suffix('.data.json')
    if order.is_file():
        saved = json.loads(order.read_text())
        for name, layer in data_layers(solver.net).items():
            if name in saved:
                layer.restore(saved[name])
    else:
        print(f'note: {order} not found: the data order restarts', file=sys.stderr)


# --- the rounds loop -----------------------------------------------------------------------------------------

def losses(net, outs):
    return {o.loss: float(net.blobs[o.loss].data.flat[0]) for o in outs}


def valid_pixels(net, outs):
    o = outs[0]
    gt = net.blobs[o.label].data
    return int(((gt >= 0) & (gt < net.blobs[o.score].channels)).sum())


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
        valid = valid_pixels(solver.net, outs)
        total += loss if first.summed else loss * valid
        pixels += valid
        bar.set_postfix(loss=f'{loss:.4g}', refresh=False)
    return total / max(steps, 1), total / max(pixels, 1)


def train(solver, rounds, steps, out, outs, n_val=None, log=None, label='', echo=print):
    """Rounds of `steps` steps from the solver's current iteration up to `rounds` rounds in all, scoring after
    each. Writes a snapshot, a log row and the learning curve per round. Returns the log rows of this call.
    Raises Diverged (after reporting the last good snapshot) and re-raises KeyboardInterrupt after a snapshot."""
    from solvers.curve import plot_curve

    out = Path(out)
    test_net = solver.test_nets[0]
    test_net.share_with(solver.net)
    n_val = n_val or split_size(test_net)
    log, rows = Path(log or out / 'log.jsonl'), []
    first_round = solver.iter // steps
    try:
        for r in range(first_round, rounds):
            start = time.time()
            train_loss, train_pp = train_round(solver, steps, outs, f'{label}round {r + 1}/{rounds}')
            results = evaluate(test_net, outs, n_val)
            snapshot(solver, out)
            row = {'stage': label.strip(' :'), 'round': r + 1, 'iter': solver.iter,
                   'seconds': round(time.time() - start, 2), 'train_loss': train_loss,
                   'train_loss_per_pixel': train_pp, 'scores': results}
            rows.append(row)
            with open(log, 'a') as f:
                f.write(json.dumps(row) + '\n')
            plot_curve(log, log.with_suffix('.png'), title=label.strip(' :'))
            for score, result in results.items():
                echo(f'{label}round {r + 1}/{rounds} iter {solver.iter}: ' + format_scores(result, score))
    except Diverged as err:
        last_good = runs.latest_snapshot(out)
        kept = f'the last good snapshot is {last_good}' if last_good else f'there is no snapshot in {out} yet'
        raise Diverged(f'training stopped: {err}. Weights after this step are not saved; {kept}. '
                       'Lower base_lr or check the data and the starting weights.') from None
    except KeyboardInterrupt:
        saved = snapshot(solver, out)
        echo(f'interrupted at iteration {solver.iter}: saved {saved}; resume with --resume '
             f'{saved.with_suffix(".solverstate")}')
        raise
    return rows


# --- command line --------------------------------------------------------------------------------------------

def parse_args(name, argv):
    rounds, steps = schedule(name)
    ap = argparse.ArgumentParser(prog=f'{name}/solve.py', description=(
        f'Train {name} as the reference does: {rounds} rounds of {steps} SGD steps, scored on the '
        f'{runs.eval_split(name)} split after each round. Snapshots, log.jsonl and log.png go to --out.'))
    device = ap.add_mutually_exclusive_group()
    device.add_argument('--gpu', type=int, metavar='N', help='train on GPU N (needs a CUDA build of Caffe)')
    device.add_argument('--cpu', action='store_true', help='train on the CPU (the default)')
    start = ap.add_mutually_exclusive_group()
    start.add_argument('--weights', type=Path, help="starting weights (default: the previous stage's trained "
                       'weights, or the converted ILSVRC trunk)')
    start.add_argument('--resume', type=Path, metavar='SOLVERSTATE', help='continue a run from its .solverstate')
    ap.add_argument('--rounds', type=int, default=rounds, help=f'rounds in all, counted from iteration 0 '
                    f'(default {rounds})')
    ap.add_argument('--steps', type=int, default=steps, help=f'SGD steps per round (default {steps})')
    ap.add_argument('--data-root', type=Path, help="directory that replaces the reference's ../data")
    ap.add_argument('--out', type=Path, default=runs.model_dir(name) / 'snapshot',
                    help='where snapshots, the log and the curve go (default: %(default)s)')
    ap.add_argument('--width', type=float, default=1.0, help='train a reduced-width variant (default 1)')
    ap.add_argument('--base-lr', type=float, help="override the solver's base_lr (e.g. for a reduced-width variant)")
    ap.add_argument('--seed', type=int, help="seed Caffe's random numbers (dropout) for a repeatable run "
                    '(default: unseeded, as the reference)')
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        ap.error('--rounds and --steps must be at least 1')
    return args


def run(name, args):
    import caffe
    from caffe.proto import caffe_pb2

    use_device(args.gpu)
    overrides = {'base_lr': args.base_lr} if args.base_lr else {}
    if args.seed is not None:
        overrides['random_seed'] = args.seed
    solver_path = runs.prepare(name, args.out, args.width, args.data_root, solver_overrides=overrides)
    train_param = runs.read_prototxt(solver_path.parent / f'{runs.check_model(name).splits[0]}.prototxt',
                                     caffe_pb2.NetParameter())
    weights = None if args.resume else check_weights(name, args.weights or default_weights(name))
    solver = caffe.SGDSolver(str(solver_path))
    if args.resume:
        resume(solver, args.resume)
    else:
        initialize(solver, name, weights, train_param, args.width)
    train(solver, args.rounds, args.steps, args.out, outputs(train_param), label=f'{name}: ')
    return 0


@tool(prog=lambda name, argv=None: name)
def main(name, argv=None):
    """Entry point of MODEL/solve.py: returns the exit status."""
    import datalayers
    import surgery

    try:
        args = parse_args(name, argv)
        return run(name, args)
    except (SetupError, datalayers.DatasetError, surgery.WeightsError) as err:
        print(f'{name}: error: {err}', file=sys.stderr)
        return 2
    except Diverged as err:
        print(f'{name}: {err}', file=sys.stderr)
        # A NaN inside a step already made Caffe's max pooling write out of bounds (its argmax stays -1):
        # freeing the net would abort. Every snapshot is complete on disk, so leave without tearing Caffe down.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)
    except KeyboardInterrupt:
        return 130
    finally:
        gc.collect()  # free the solver now: left to interpreter shutdown, Caffe's teardown can crash
