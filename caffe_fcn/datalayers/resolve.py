"""What a tool's MODEL, --dataset and --run name: the Model, moved onto the dataset, with a run's record."""
import json
import re
from pathlib import Path

from caffe_fcn import cli, registry

from .folder import ensure_stats


def run_record(run):
    """RUN/run.json (what fcn-train recorded) as a dict, or a BadInput saying what is wrong."""
    path = Path(run) / 'run.json'
    try:
        record = json.loads(path.read_text())
        record['model'], float(record['width'])
    except FileNotFoundError:
        raise cli.BadInput(f'--run {run}: no run.json there: give the --out folder of an fcn-train run') from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: nested deep
        raise cli.BadInput(f'--run {run}: {path} is not a run record ({type(err).__name__}: {err})') from None
    return record


def run_weights(run):
    """A run's weights: best.caffemodel, else its latest snapshot."""
    best = Path(run) / 'best.caffemodel'
    found = sorted((int(m.group(1)), p) for p in Path(run).glob('*_iter_*.caffemodel')
                   if (m := re.search(r'_iter_(\d+)\.caffemodel$', p.name)))
    if best.is_file() or not found:
        return best
    return found[-1][1]


def resolve_model(args, echo=print):
    """args.model (a name) -> the Model, moved onto args.dataset where one is given; --run RUN fills in the model,
    width, dataset and weights it recorded where they are not given, and the net is fed the mean it was trained
    with; else a folder dataset's statistics are computed first when they are missing or stale (its mean goes into
    the nets). Sets args.dataset to the dataset's reference."""
    run, trained = getattr(args, 'run', None), None
    if run is not None:
        record = run_record(run)
        trained = trained_mean(record, run)
        args.model = args.model or record['model']
        args.dataset = args.dataset or record.get('dataset')
        if getattr(args, 'width', None) == 1.0:
            args.width = float(record['width'])
        if hasattr(args, 'weights') and args.weights is None:
            args.weights = run_weights(run)
    if not args.model:
        raise cli.BadInput('name a MODEL (fcn-netgen --list), or pass --run RUN')
    data = resolve_dataset(args.dataset, echo, trained) if args.dataset else None  # a file may declare the model
    model = registry.trainable(args.model)
    if data is not None:
        model = registry.for_dataset(model, data)
        args.dataset = registry.reference(data)
    return model


def resolve_dataset(ref, echo=print, mean=None):
    """The Dataset --dataset names (a Python file is imported); a folder dataset's statistics are computed first
    when they are missing or stale (its mean goes into the nets), unless `mean` is given: a trained net's, which
    it must be fed with whatever the folder holds now."""
    data = registry.dataset(ref)
    if data.home is not None and not data.builtin:  # a folder dataset
        if mean is None:
            ensure_stats(Path(data.name), echo)
        data = registry.folder_dataset(data.name, mean=mean)
    return data


def trained_mean(record, run):
    """The colour mean (B, G, R) a run's net was trained with, as its run.json keeps it; None for a run recorded
    before it was kept there, or of a net with no colour input."""
    means = record.get('means')
    if means is None or (isinstance(means, dict) and 'color' not in means):
        return None
    try:
        mean = tuple(float(v) for v in means['color'])
    except (TypeError, KeyError, ValueError):
        mean = ()
    if not registry.is_colour_mean(mean):
        raise cli.BadInput(f'--run {run}: its run.json\'s means {str(means)[:80]} hold no colour mean (B, G, R from 0 '
                           'to 255): mend or restore run.json')
    return mean
