"""The training driver behind every model folder's solve.py and fcn-train.

As the reference's solve.py (`run`): build the SGD solver, start from the previous stage's weights (or the
converted ILSVRC trunk), fill the upsampling layers with bilinear kernels, then R rounds of K steps with a
score on the evaluation split after each (`Trainer.train`). Added: progress, a log row per round, a learning
curve, atomic snapshots, a NaN guard, Ctrl-C saving a snapshot, and resume from a solverstate. The parts:
solvers.start (the starting weights), solvers.snapshots (snapshots and resume), solvers.runlog (the log rows,
best.caffemodel), solvers.runs (the run folder, its nets and solver), solvers.train_args (the command line).
"""
import gc
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import netgen
from caffe_fcn import cli, registry
from solvers import runs
from solvers.device import use_device
from solvers.metrics import format_scores, valid_pixels
# The Trainer calls snapshot and keep_best by this module's names: tests patch driver.snapshot (to slow it) and
# driver.keep_best (to kill a run between a snapshot and its log row).
from solvers.runlog import append_row, check_best, keep_best, recover_rows, row_mean_iu, write_sheet
from solvers.runs import check_same_run, claim_out
from solvers.score import NotFinite, evaluate, outputs, split_size
from solvers.snapshots import resume, snapshot
from solvers.start import from_published, initialize, start_weights
from solvers.train_args import for_stage, parse_args, stage_chain


class Diverged(cli.Failure):
    """The loss became NaN or infinite."""


# --- a run's rounds ----------------------------------------------------------------------------------------

class Trainer:
    """A training run and its state, as pytorch-fcn's Trainer: the solver; `rounds` rounds of `steps` SGD steps
    in all, counted from iteration 0; the outputs `outs` scored after each round on `n_val` images of the
    evaluation split (default: all of it); the run folder `out` that each round's snapshot, log row (`log`,
    default out/log.jsonl, and its .csv and .png) and val.png go to; the stage `label` that rows and lines carry,
    and `echo`, which prints the lines."""

    def __init__(self, solver, rounds, steps, out, outs, n_val=None, log=None, label='', echo=print):
        self.solver, self.test_net = solver, solver.test_nets[0]
        self.rounds, self.steps, self.out, self.outs, self.n_val = rounds, steps, Path(out), outs, n_val
        self.log = Path(log or self.out / 'log.jsonl')
        self.label, self.stage, self.echo = label, label.strip(' :'), echo
        self.best = -math.inf  # the best mean IU so far; train() goes on from the log's

    def resume_from(self, state):
        """Go on from a solverstate (weights, momentum, iteration, data order); True when it had finished."""
        resume(self.solver, state)
        return self.solver.iter >= self.rounds * self.steps

    def settle(self):
        """The run folder made whole before rounds go on in it (or a finished run is left): rows saved but not
        logged are logged, and best.caffemodel is checked and mended (check_best) -> the best mean IU so far."""
        best = recover_rows(self.out, self.log, self.label, self.echo)
        return check_best(self.out, self.log, self.label, self.solver.net, best)

    def train(self):
        """The rounds from the solver's iteration on, each steps and a score, then a snapshot and a log row; returns
        this call's rows. Raises Diverged (naming the last good snapshot) and re-raises KeyboardInterrupt after a
        snapshot; SIGTERM (what job schedulers and container stops send) counts as one."""
        self.test_net.share_with(self.solver.net)  # scored with the weights being trained
        self.n_val = self.n_val or split_size(self.test_net)
        first_round = self.solver.iter // self.steps
        rows, self.best = [], self.settle()
        with cli.handling(cli.stop, signal.SIGTERM):
            try:
                for r in range(first_round, self.rounds):
                    start = time.time()
                    train_loss = self.step(self.steps - self.solver.iter % self.steps, r)  # a resumed round: its rest
                    rows.append(self.log_round(r, start, train_loss, self.score()))
            except Diverged as err:
                raise self.diverged(err) from None
            except KeyboardInterrupt:
                self.save_on_stop()
                raise
        return rows

    def step(self, count, r):
        """`count` SGD steps of round r, one at a time so that a NaN is caught at once -> the mean train loss
        (summed, and per pixel)."""
        total, pixels = 0.0, 0
        first = self.outs[0]
        bar = tqdm(range(count), desc=f'{self.label}round {r + 1}/{self.rounds}', unit='step', leave=False,
                   mininterval=1)
        for _ in bar:
            self.solver.step(1)
            now = losses(self.solver.net, self.outs)
            bad = {k: v for k, v in now.items() if not math.isfinite(v)}
            if bad:
                raise Diverged(f'loss {bad} at iteration {self.solver.iter}')
            broken = nonfinite_params(self.solver.net)
            if broken:
                raise Diverged(f'the weights of {broken} became non-finite at iteration {self.solver.iter} '
                               f'(loss {now})')
            loss = now[first.loss]
            valid = valid_pixels(self.solver.net.blobs[first.label].data, self.solver.net.blobs[first.score].channels)
            total += loss if first.summed else loss * valid
            pixels += valid
            bar.set_postfix(loss=f'{loss:.4g}', refresh=False)
        return total / max(count, 1), total / max(pixels, 1)

    def score(self):
        """{output: its scores} on the evaluation split; a few of its images and predictions go to val.png."""
        samples = []
        try:
            results = evaluate(self.test_net, self.outs, self.n_val, samples=samples)
        except NotFinite as err:
            raise Diverged(f'scoring after iteration {self.solver.iter}: {err}') from None
        write_sheet(self.out / 'val.png', samples, self.outs[0].names)
        return results

    def log_round(self, r, start, train_loss, results):
        """Round r's row, saved with its snapshot, then best.caffemodel, log.jsonl, log.csv, log.png and a line
        per output -> the row."""
        from solvers.curve import plot_curve

        row = {'stage': self.stage, 'round': r + 1, 'iter': self.solver.iter, 'seconds': round(time.time() - start, 2),
               'train_loss': train_loss[0], 'train_loss_per_pixel': train_loss[1], 'scores': results}
        self.best = keep_best(snapshot(self.solver, self.out, row), row_mean_iu(row), self.best)
        append_row(self.log, row)
        plot_curve(self.log, self.log.with_suffix('.png'), title=self.stage)
        for score, result in results.items():
            self.echo(f'{self.label}round {r + 1}/{self.rounds} iter {self.solver.iter}: '
                      + format_scores(result, score))
        return row

    def diverged(self, err):
        """The Diverged to stop with: what went wrong, and the last good snapshot."""
        last_good = runs.latest_snapshot(self.out)
        kept = f'the last good snapshot is {last_good}' if last_good else f'there is no snapshot in {self.out} yet'
        return Diverged(f'training stopped: {err}. Weights after this step are not saved; {kept}. '
                        'Lower base_lr or check the data and the starting weights.')

    def save_on_stop(self):
        """Ctrl-C or SIGTERM: a snapshot to resume from; a second signal waits for it to finish."""
        with cli.handling(wait_for_the_snapshot, signal.SIGINT, signal.SIGTERM):
            saved = snapshot(self.solver, self.out)
        self.echo(f'interrupted at iteration {self.solver.iter}: saved {saved}; resume with --resume '
                  f'{saved.with_suffix(".solverstate")}')


def train(solver, rounds, steps, out, outs, n_val=None, log=None, label='', echo=print):
    """Trainer(...).train(): the rounds of a solver already started (the demo's stages, the tests)."""
    return Trainer(solver, rounds, steps, out, outs, n_val, log, label, echo).train()


def losses(net, outs):
    return {o.loss: float(net.blobs[o.loss].data.flat[0]) for o in outs}


def nonfinite_params(net):
    """The first layer with a NaN or infinite weight, or None. Checked after every update because one more
    forward pass would be too late: Caffe's max pooling indexes out of bounds on NaN and corrupts memory."""
    for name, blobs in net.params.items():
        if not all(math.isfinite(float(b.data.sum())) for b in blobs):
            return name
    return None


def wait_for_the_snapshot(signum, frame):
    print('\nsaving a snapshot first: it finishes, then the run stops', file=sys.stderr, flush=True)


# --- one run, from the command line -----------------------------------------------------------------------

def run(args):
    """One run of args.model, in the order of the reference's solve.py: build the solver, start it (copy_from
    the starting weights, bilinear upsampling) or resume it, then rounds of steps, each scored."""
    import caffe

    spec, weights = set_up(args)
    prepared = spec.prepare()
    trainer = Trainer(caffe.SGDSolver(str(prepared.solver)), args.rounds, args.steps, args.out,
                      outputs(prepared.train_net, args.model), label=f'{args.model.name}: ')
    if args.resume:
        if trainer.resume_from(args.resume):
            trainer.settle()  # what the next stage or fcn-score --run reads is checked even so
            print(f'{args.model.name}: already finished at iteration {trainer.solver.iter} ({args.rounds} rounds of '
                  f'{args.steps} steps); ask for more --rounds to go on')
            return cli.OK
    elif args.start == 'published':
        from_published(trainer.solver, args.model, weights)
    else:
        initialize(trainer.solver, args.model, weights, args.width)
    runs.write_atomic(args.out / 'run.json',
                      json.dumps(runs.record(args, weights, spec.overrides, spec.solver_overrides), indent=1))
    trainer.train()
    return cli.OK


def set_up(args):
    """All that comes before Caffe builds the solver: the device, the checked starting weights, --out locked and
    claimed (a previous run there continued, or cleared), and what the nets and solver are -> (RunSpec, weights).
    Sets args.resume to the state to resume from."""
    model = args.model
    use_device(args.gpu)
    layer_overrides, overrides = asked_overrides(args)
    weights = None if args.resume else start_weights(args)
    runs.lock(args.out)
    args.resume = claim_out(args, weights)
    if args.resume:  # before the nets are built: a state of another run is refused at once
        check_same_run(args, Path(args.resume).parent / 'run.json')
    report_classes(model)
    balance = balanced_weights(model, runs.data_dirs(model, args.data_root)) if args.class_balance else None
    return runs.RunSpec(model, args.out, args.width, args.data_root, layer_overrides, overrides,
                        class_weights=balance), weights


def asked_overrides(args):
    """The data layer overrides and solver values this run asks for: --augment, --loss-sampling, --base-lr (else
    the reference's rate scaled to the dataset's image size, where it is) and --seed."""
    model, solver = args.model, netgen.solver(args.model)
    layer_overrides, overrides = training_options(model, args, solver.iter_size)
    if args.base_lr is not None:
        overrides['base_lr'] = args.base_lr
    elif scaled := scaled_base_lr(model, solver.base_lr):
        overrides['base_lr'] = scaled
    if args.seed is not None:
        overrides['random_seed'] = args.seed
    return layer_overrides, overrides


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


def train_stages(args):
    """--stages: each stage trained in turn, each from the previous one's best weights. A stage whose folder holds
    a run (an earlier call stopped) goes on from its latest snapshot, or is kept where that run finished."""
    weights, start, chain = None, args.start, stage_chain(args.model)
    for number, model in enumerate(chain, 1):
        stage = for_stage(args, model, weights)
        stage.start, start = start, None  # --from published starts the first stage only
        latest = None if args.overwrite else runs.latest_snapshot(stage.out, complete=True)
        stage.resume = 'auto' if latest else None
        where = f'{model.name}: stage {number} of {len(chain)}'
        if latest is None:
            print(f'{where}, into {stage.out}' + (f', from {weights}' if weights else ''))
        elif runs.snapshot_iter(latest) >= stage.rounds * stage.steps:
            print(f'{where} finished earlier in {stage.out}: kept')
        else:
            print(f'{where} goes on from {latest.with_suffix(".solverstate")}, where an earlier run stopped')
        run(stage)
        weights = stage.out / 'best.caffemodel'
    return cli.OK


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
