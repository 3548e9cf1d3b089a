"""Where a model's nets, data, weights and outputs are, resolved before Caffe is called.

The reference runs `solve.py` from inside the model folder: its solver names the nets relative to that
folder and the data layers read '../data/...'. Here every path is resolved against the model folder (or
against --data-root) and the nets that are run are written, with absolute paths, into a run directory.
"""
import ast
import os
import re
import tempfile
from pathlib import Path

from google.protobuf import text_format

import netgen


class SetupError(Exception):
    """Bad input found before any Caffe call: the message says what to do."""


def check_model(name):
    """The netgen Model of a trainable FCN model, or a SetupError listing the choices."""
    model = netgen.MODELS.get(name)
    if model is None or not model.splits:
        choices = ', '.join(n for n, m in netgen.MODELS.items() if m.splits)
        raise SetupError(f'unknown model {name!r}: choose one of {choices}')
    return model


def model_dir(name):
    return Path(netgen.REPO) / name


def eval_split(name):
    return check_model(name).splits[1]


def read_prototxt(path, message):
    try:
        return text_format.Parse(Path(path).read_text(), message)
    except text_format.ParseError as err:
        raise SetupError(f'{path} is not a valid prototxt ({err}): regenerate it with `fcn-netgen`') from err


def net_param(name, split, width=1.0):
    """The model's net for a split: the model folder's file at full width (what a user sees and may
    have edited), netgen's reduced-width variant otherwise."""
    check_model(name)
    path = model_dir(name) / f'{split}.prototxt'
    if width == 1.0 and path.exists():
        from caffe.proto import caffe_pb2

        return read_prototxt(path, caffe_pb2.NetParameter())
    return netgen.net(name, split, width=width)


def solver_param(name):
    path = model_dir(name) / 'solver.prototxt'
    if path.exists():
        from caffe.proto import caffe_pb2

        return read_prototxt(path, caffe_pb2.SolverParameter())
    return netgen.solver(name)


def data_params(layer):
    """The param_str dict of a Python data layer (a Python literal, never eval'd)."""
    try:
        return ast.literal_eval(layer.python_param.param_str)
    except (ValueError, SyntaxError) as err:
        raise SetupError(f'data layer {layer.name!r} has a param_str that is not a Python literal: '
                         f'{layer.python_param.param_str!r}') from err


def python_layers(param):
    return [layer for layer in param.layer if layer.type == 'Python']


def under_data_root(value, data_root):
    """'../data/pascal/VOC2011' -> DATA_ROOT/pascal/VOC2011: the part after the 'data' folder."""
    parts = Path(value).parts
    if 'data' not in parts:
        return None
    return Path(data_root) / Path(*parts[parts.index('data') + 1:])


def resolve_data(param, base, data_root=None, data=None):
    """Rewrite the data layers' '*_dir' paths in place: explicit `data` overrides first, then relative
    paths under `data_root`, else against `base` (the model folder). Raises SetupError for a missing dir."""
    for layer in python_layers(param):
        params = data_params(layer)
        for key, value in params.items():
            if not key.endswith('_dir'):
                continue
            if data and key in data:
                path = Path(data[key])
            elif data_root is not None and under_data_root(value, data_root) is not None:
                path = under_data_root(value, data_root)
            else:
                path = Path(base) / value
            path = path.resolve()
            if not path.is_dir():
                rest = under_data_root(value, 'DIR')
                hint = f'pass --data-root DIR holding {rest.relative_to("DIR")}' if rest else 'fix the path'
                raise SetupError(f'data layer {layer.name!r} needs {key} = {path}, which is not a directory. '
                                 f'Get the dataset (see data/README.md and `fcn-data --help`), or {hint}.')
            params[key] = str(path)
        layer.python_param.param_str = str(params)
    return param


def current_umask():
    mask = os.umask(0o022)  # reading it means setting it: put it straight back
    os.umask(mask)
    return mask


def write_atomic(path, data):
    """Write bytes or text so that `path` is either the old file or the complete new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide a run from colleagues
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_net(param, path):
    return write_atomic(path, text_format.MessageToString(param))


def prepare(name, out, width=1.0, data_root=None, data=None, solver_overrides=None, transform=None):
    """Write the nets and solver that a run trains into out/run/ and return the solver's path.

    The run solver names its nets absolutely, leaves snapshots to the driver (snapshot 0: the driver writes
    them atomically after each round) with prefix out/.partial/<reference prefix>, and takes `solver_overrides`
    (e.g. base_lr for the demo). `transform(param)` may edit each net (tests use it to drop dropout).
    """
    check_model(name)
    out = Path(out).resolve()
    run = out / 'run'
    solver = solver_param(name)
    nets = {}
    for field, split in zip(('train_net', 'test_net'), check_model(name).splits, strict=True):
        param = resolve_data(net_param(name, split, width), model_dir(name), data_root, data)
        if transform is not None:
            param = transform(param) or param
        nets[field] = write_net(param, run / f'{split}.prototxt')
    solver.train_net = str(nets['train_net'])
    del solver.test_net[:]
    solver.test_net.append(str(nets['test_net']))
    if not solver.test_iter:
        solver.test_iter.append(1)
    solver.snapshot = 0
    solver.snapshot_prefix = str(out / '.partial' / snapshot_stem(solver))
    for key, value in (solver_overrides or {}).items():
        setattr(solver, key, value)
    return write_atomic(run / 'solver.prototxt', text_format.MessageToString(solver))


def snapshot_stem(solver):
    """The reference prefix 'snapshot/train' -> 'train' (the driver puts snapshots in its out dir)."""
    return Path(solver.snapshot_prefix).name or 'train'


SNAPSHOT = re.compile(r'_iter_(\d+)\.caffemodel$')


def latest_snapshot(folder):
    """The caffemodel with the highest iteration in `folder`, or None."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob('*_iter_*.caffemodel') if (m := SNAPSHOT.search(p.name))]
    return max(found)[1] if found else None
