"""fcn-train's and MODEL/solve.py's command line: the options, their checks, and each stage's arguments.

Parsed before Caffe is imported, so --help works without pycaffe.
"""
import argparse
import os
from pathlib import Path

from caffe_fcn.datalayers.resolve import resolve_model
from caffe_fcn import cli, registry
from solvers import runs


def parser(model=None):
    """MODEL/solve.py's options (`model` given: its folder's), or fcn-train's (MODEL first)."""
    what = f'{model.name} as the reference does: {model.rounds_steps[0]} rounds of {model.rounds_steps[1]} SGD ' \
        f'steps, scored on the {model.splits[1]} split after each round' if model else \
        'an FCN as the reference does: the rounds of SGD steps of its solve.py, scored after each round'
    ap = cli.ArgumentParser(prog=f'{model.name}/solve.py' if model else 'fcn-train', description=(
        f'Train {what}. Snapshots, log.jsonl and log.png go to --out.'))
    if model is None:
        ap.add_argument('model', metavar='MODEL', help='the model to train, e.g. voc-fcn32s (fcn-netgen --list shows '
                        'them); with --dataset, its architecture on that dataset')
    cli.add_dataset(ap, run=False)
    ap.add_argument('--stages', action='store_true', help='train MODEL\'s stages in turn, as the paper did: for '
                    'voc-fcn8s, FCN-32s, then FCN-16s from its best weights, then FCN-8s from those (each stage\'s '
                    'run in its own --out folder, OUT/STAGE where --out is given); rerun, it keeps the stages that '
                    'finished and goes on in the one that stopped')
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
    cli.add_output(ap, '--out', folder=True, help='where snapshots, the log and the curve go (default: MODEL/snapshot)')
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


def parse_args(argv, model=None):
    from solvers.tiles import INT_MAX  # Caffe's int: its iteration counter too

    ap = parser(model)
    args = ap.parse_args(argv)
    if getattr(args, 'gpu_id', None) is not None:
        if args.gpu is not None and args.gpu != args.gpu_id:
            ap.error(f'GPU {args.gpu_id} and --gpu {args.gpu} disagree: give one')
        args.gpu = args.gpu_id
    args.model = model.name if model else args.model
    resumed = args.out if args.resume == 'auto' else args.resume and Path(args.resume).parent
    if resumed and not args.dataset and not args.stages:  # the run's own dataset, as its record names it
        args.dataset = runs.recorded_dataset(resumed, args.model)
    args.model = resolve_model(args)  # on --dataset, when given
    if args.start and args.model.data.builtin:
        ap.error('--from published is for another --dataset: to go on from the published weights on '
                 f'{args.model.data.title}, pass them as --weights')
    if args.stages and args.resume not in (None, 'auto'):
        ap.error('--stages goes on by itself in the stage where a staged run stopped (rerun the same command); '
                 'to resume one stage from a state, run that stage\'s MODEL --resume SOLVERSTATE')
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
