"""Where a run's nets, data, weights and outputs are, resolved before Caffe is called.

The reference runs `solve.py` from inside the model folder: its solver names the nets relative to that folder
and the data layers read '../data/...'. Here netgen writes the nets a run trains with the data folders made
absolute (--data-root, else $FCN_DATA, else the repository's data/), into OUT/run/ beside the solver.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

import netgen
from fcn import registry
from fcn.cli import BadInput
from fcn.files import write_atomic


class SetupError(BadInput):
    """Bad input found before any Caffe call: the message says what to do."""


def model_dir(model):
    return registry.REPO / model.name


def default_out(model):
    """Where a run of `model` goes unless --out says: the model folder's snapshot/ for the paper's datasets (as
    the reference), DATASET_DIR/runs/MODEL for a folder dataset, runs/DATASET/MODEL here for one declared in a file."""
    data = model.data
    if data.builtin:
        return model_dir(model) / 'snapshot'
    return Path(data.home) / model.name if data.home else Path('runs') / data.name / model.name


def data_dirs(model, data_root=None, overrides=None, splits=None):
    """The param_str overrides that point the model's data layers (of `splits`, default all) at absolute folders:
    each '*_dir' under the data root, or as given in `overrides` (which win). Folders that do not exist are one
    SetupError naming them all, each with where it goes and where to get it."""
    root = registry.data_root(data_root)
    wanted = {key for split in (splits or model.splits) for key in model.data.sources[split].params}
    dirs = {key: str(path) for key, path in model.data.dirs(root).items() if key in wanted}
    dirs.update(overrides or {})
    downloads = {key: source.download for source in model.data.sources.values() for key in source.params}
    missing = [missing_dir(key, Path(path), root, key in (overrides or {}), downloads.get(key))
               for key, path in dirs.items() if key.endswith('_dir') and not Path(path).is_dir()]
    if missing:
        raise SetupError(f'{model.name} reads data that is not there:\n' + '\n'.join(missing) +
                         f'\nPut the datasets under {root} as data/README.md lays them out, or pass --data-root DIR '
                         '(or set FCN_DATA); `fcn-data synth` makes synthetic ones.')
    return dirs


def missing_dir(key, path, root, given, download):
    where = 'fix the path' if given or not path.is_relative_to(root) else \
        f'pass --data-root DIR holding {path.relative_to(root)}'
    return f'  {key} = {path}, which is not a directory: {where}' + (f'; get it from {download}' if download else '')


def lock(out):
    """Claim the run folder `out` for this process until it exits (an flock on OUT/.lock, which holds the PID):
    a second run into the same folder would mix its snapshots and log with this one's."""
    import fcntl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / '.lock', os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors='replace').strip() or 'unknown'
        os.close(fd)
        raise SetupError(f'{out} is in use by another run (PID {holder}): wait for it, or choose another --out') \
            from None
    os.ftruncate(fd, 0)
    os.write(fd, f'{os.getpid()}\n'.encode())
    remove_leftovers(out)
    return fd  # kept open: the lock lasts as long as the process


def remove_leftovers(out):
    """The half-written files a killed run leaves (Caffe's in .partial, write_atomic's .*.tmp, reserve's probes):
    only the lock's holder runs here, so none of them is being written."""
    for path in [*Path(out).glob('.*.tmp'), *Path(out).glob('.partial/*')]:
        if path.is_file():
            path.unlink()


@dataclass(frozen=True)
class Prepared:
    """What `prepare` wrote: the solver's path and each split's NetParameter."""
    solver: Path
    nets: dict

    @property
    def train_net(self):
        return next(iter(self.nets.values()))


def prepare(model, out, width=1.0, data_root=None, overrides=None, solver_overrides=None, transform=None,
            class_weights=None):
    """Write the nets and solver that a run trains into out/run/ -> Prepared.

    The run solver names its nets absolutely, leaves snapshots to the driver (snapshot 0: the driver writes
    them atomically after each round) with prefix out/.partial/<reference prefix>, and takes `solver_overrides`
    (e.g. base_lr for the demo). `transform(param)` may edit each net (tests use it to drop dropout);
    `class_weights` ({label top: weights}) weights the training loss per class.
    """
    run = Path(out).resolve() / 'run'
    dirs = data_dirs(model, data_root, overrides)
    nets, paths = {}, {}
    for split in model.splits:
        param = netgen.net(model, split, width, dirs, class_weights)
        param.name = model.name  # the snapshots carry it (the committed nets, as the reference's, have none)
        nets[split] = (transform(param) or param) if transform is not None else param
        paths[split] = write_atomic(run / f'{split}.prototxt', text_format.MessageToString(nets[split]))
    solver = netgen.solver(model, **(solver_overrides or {}))
    train, test = model.splits
    solver.train_net = str(paths[train])
    solver.test_net[:] = [str(paths[test])]
    solver.snapshot = 0
    solver.snapshot_prefix = str(run.parent / '.partial' / (Path(solver.snapshot_prefix).name or 'train'))
    return Prepared(write_atomic(run / 'solver.prototxt', text_format.MessageToString(solver)), nets)


MODEL_ITER = re.compile(r'_iter_(\d+)\.caffemodel$')
ROW = '.row.json'  # a round's log row, beside its snapshot
ROW_ITER = re.compile(r'_iter_(\d+)\.row\.json$')
RUN_FILES = ('*_iter_*.caffemodel', '*_iter_*.solverstate', '*_iter_*.data.json', f'*_iter_*{ROW}', 'best.caffemodel',
             'log.jsonl', 'log.csv', 'log.png', 'val.png', 'run.json')


def latest_snapshot(folder, complete=False):
    """The caffemodel with the highest iteration in `folder` (with `complete`: that has its solverstate), or None."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob('*_iter_*.caffemodel') if (m := MODEL_ITER.search(p.name))
             and (not complete or p.with_suffix('.solverstate').is_file())]
    return max(found)[1] if found else None


def previous_run(out):
    """The files a training run leaves in `out` (snapshots, log, best, run.json), if any."""
    return sorted(p for pattern in RUN_FILES for p in Path(out).glob(pattern))


def clear(files):
    for path in files:
        path.unlink(missing_ok=True)


def record(args, weights, layer_overrides, solver_overrides):
    """What run.json keeps of a run: the command, the model, where its weights and data came from, the options
    and the versions, so that a result can be traced and repeated."""
    import platform
    import subprocess
    import sys

    import numpy

    try:  # a pip-installed copy may run where git is not installed, or outside a clone
        commit = subprocess.run(['git', '-C', str(registry.REPO), 'rev-parse', 'HEAD'], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ''
    try:
        from importlib.metadata import version
        caffe = version('caffe')
    except Exception:
        caffe = 'unknown'
    return {'command': sys.argv, 'model': args.model.name, 'dataset': registry.reference(args.model.data),
            'weights': str(weights) if weights else None,
            'resume': str(args.resume) if args.resume else None, 'data_root': str(registry.data_root(args.data_root)),
            'width': args.width, 'rounds': args.rounds, 'steps': args.steps, 'data_overrides': layer_overrides,
            'solver_overrides': solver_overrides, 'gpu': args.gpu,
            'versions': {'python': platform.python_version(), 'numpy': numpy.__version__, 'caffe': caffe,
                         'fcn': commit or 'unknown'}}
