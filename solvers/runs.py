"""Where a run's nets, data, weights and outputs are, resolved before Caffe is called.

The reference runs `solve.py` from inside the model folder: its solver names the nets relative to that folder
and the data layers read '../data/...'. Here netgen writes the nets a run trains with the data folders made
absolute (--data-root, else $FCN_DATA, else the repository's data/), into OUT/run/ beside the solver (RunSpec).
The run folder OUT is claimed by one run at a time (lock, claim_out), and its run.json says whose it is.
"""
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

import netgen
from caffe_fcn import registry
from caffe_fcn.cli import BadInput
from caffe_fcn.files import same_file, write_atomic


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


@dataclass(frozen=True)
class RunSpec:
    """The nets and solver a run trains, as `prepare` writes them into out/run/: the model at `width`, its data
    layers reading the folders under `data_root` with these param_str `overrides` (which win), the training loss
    weighted per class by `class_weights` ({label top: weights}) where given, each net edited by `transform(param)`
    where given (tests drop dropout with it), and the solver with `solver_overrides` (e.g. base_lr)."""
    model: registry.Model
    out: Path
    width: float = 1.0
    data_root: Path | None = None
    overrides: dict | None = None
    solver_overrides: dict | None = None
    transform: Callable | None = None
    class_weights: dict | None = None

    def prepare(self):
        """Write the nets, then the solver that names them -> Prepared."""
        run = Path(self.out).resolve() / 'run'
        nets, paths = self.write_nets(run)
        return Prepared(self.write_solver(run, paths), nets)

    def write_nets(self, run):
        """Each split's net with absolute data folders -> ({split: NetParameter}, {split: its prototxt})."""
        dirs = data_dirs(self.model, self.data_root, self.overrides)
        nets, paths = {}, {}
        for split in self.model.splits:
            param = netgen.net(self.model, split, self.width, dirs, self.class_weights)
            param.name = self.model.name  # the snapshots carry it (the committed nets, as the reference's, have none)
            nets[split] = (self.transform(param) or param) if self.transform is not None else param
            paths[split] = write_atomic(run / f'{split}.prototxt', text_format.MessageToString(nets[split]))
        return nets, paths

    def write_solver(self, run, paths):
        """The solver, naming its nets absolutely. It leaves snapshots to the driver (snapshot 0: the driver writes
        them atomically after each round) and aims them at out/.partial/<reference prefix>."""
        solver = netgen.solver(self.model, **(self.solver_overrides or {}))
        train, test = self.model.splits
        solver.train_net = str(paths[train])
        solver.test_net[:] = [str(paths[test])]
        solver.snapshot = 0
        solver.snapshot_prefix = str(run.parent / '.partial' / (Path(solver.snapshot_prefix).name or 'train'))
        return write_atomic(run / 'solver.prototxt', text_format.MessageToString(solver))


def prepare(model, out, width=1.0, data_root=None, overrides=None, **options):
    """RunSpec(...).prepare(), for the callers that name a run's nets in one call (the demo, the tests)."""
    return RunSpec(model, out, width, data_root, overrides, **options).prepare()


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


def snapshot_iter(model):
    """The iteration a snapshot's caffemodel (as latest_snapshot finds them) was saved at, from its name."""
    return int(MODEL_ITER.search(Path(model).name).group(1))


def previous_run(out):
    """The files a training run leaves in `out` (snapshots, log, best, run.json), if any."""
    return sorted(p for pattern in RUN_FILES for p in Path(out).glob(pattern))


def clear(files):
    for path in files:
        path.unlink(missing_ok=True)


def check_same_run(args, record):
    """A run folder belongs to one model, width and dataset: a state from another is refused (its run.json says).
    A dataset that is gone from where the run recorded it may be given at its new place (--dataset)."""
    if not record.is_file():
        return
    try:
        saved = json.loads(record.read_text())
        theirs = (saved['model'], float(saved['width']))
        recorded = saved.get('dataset')
        if not isinstance(recorded, str | None):
            raise TypeError(f'its dataset is {recorded!r}')
    except (ValueError, KeyError, TypeError) as err:
        raise SetupError(f'--resume: {record} is not a run record ({err}); mend or delete it') from None
    if theirs != (args.model.name, float(args.width)):
        raise SetupError(f'--resume: {record.parent} is a run of {theirs[0]} at width {theirs[1]:g}, not of '
                         f'{args.model.name} at width {float(args.width):g}: resume it as that, or start anew')
    ours = registry.reference(args.model.data)
    if recorded and recorded != ours:
        if not gone(recorded):
            raise SetupError(f'--resume: {record.parent} is a run on {recorded}, not on {ours}: pass --dataset '
                             f'{recorded}, or start anew')
        print(f'note: {record.parent} is a run on {recorded}, which is gone: it goes on with {ours}')


def gone(dataset):
    """Whether a dataset a run recorded is a folder or file that is no longer there (a declared name never is)."""
    return dataset not in registry.DATASETS and not Path(dataset).exists()


def recorded_dataset(folder, model):
    """The dataset the run of `model` in `folder` recorded (None: no record of one), for a resume that names none;
    a SetupError where it is a folder or file that is gone."""
    try:
        saved = json.loads((Path(folder) / 'run.json').read_text())
        dataset = saved.get('dataset') if saved.get('model') == model else None
    except (OSError, ValueError, AttributeError):
        return None  # check_same_run names a broken record
    if not isinstance(dataset, str):
        return None
    if gone(dataset):
        kind, new = ('file', 'NEWFILE') if dataset.endswith('.py') else ('folder', 'NEWDIR')
        raise SetupError(f'--resume: {folder} is a run on the dataset {kind} {dataset}, which is gone (moved or '
                         f'deleted): pass --dataset {new}, its new place')
    return dataset


def claim_out(args, weights=None):
    """The solverstate to resume from, after checking --out: a previous run there is continued (--resume), or
    deleted (--overwrite), or the run is refused, saying which to choose."""
    out, previous = Path(args.out), previous_run(args.out)
    if {p.name for p in previous} <= {'run.json', 'val.png'}:  # stopped before its first snapshot: nothing to keep
        clear(previous)
        previous = []
    if args.resume == 'auto':
        latest = latest_snapshot(out, complete=True)
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
        clear(previous)
    return args.resume


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
            'means': args.model.data.means,  # what the net is fed with: --run tools feed it the same
            'weights': str(weights) if weights else None,
            'resume': str(args.resume) if args.resume else None, 'data_root': str(registry.data_root(args.data_root)),
            'width': args.width, 'rounds': args.rounds, 'steps': args.steps, 'data_overrides': layer_overrides,
            'solver_overrides': solver_overrides, 'gpu': args.gpu,
            'versions': {'python': platform.python_version(), 'numpy': numpy.__version__, 'caffe': caffe,
                         'fcn': commit or 'unknown'}}
