"""A run's snapshots: written atomically with their data order and log row, checked when read back, resumed.

Caffe aborts the process on a failed write or a solverstate that does not fit the net, so room is proven and
each state is checked in Python before Caffe sees it.
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from caffe_fcn import cli
from caffe_fcn.files import reserve
from solvers import runs
from solvers.runs import ROW, SetupError


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
    from surgery.weights import blob_shape, shape_equals

    path = Path(path)
    if not path.is_file():
        raise SetupError(f'--resume {path}: no such file; pass a .solverstate written by a previous run')
    try:
        state = caffe_pb2.SolverState.FromString(path.read_bytes())
    except Exception as err:  # protobuf raises DecodeError or RuntimeError depending on the backend
        raise unusable(path, f'not a Caffe solverstate ({err})') from err
    beside = path.parent / Path(state.learned_net).name  # a copied run resumes from its own weights, not the
    model = beside if beside.is_file() else Path(state.learned_net)  # original folder's
    if not state.learned_net or not model.is_file():
        raise SetupError(f'--resume {path}: its weights {state.learned_net or "(none named)"} are missing; '
                         'keep the .caffemodel beside the .solverstate')
    params = [(layer, j, tuple(b.data.shape)) for layer, blobs in net.params.items() for j, b in enumerate(blobs)]
    if len(state.history) != len(params):
        raise SetupError(f'--resume {path}: its momentum history has {len(state.history)} blobs but this net has '
                         f'{len(params)}: it was saved from a different model or width')
    for k, (history, (layer, j, shape)) in enumerate(zip(state.history, params, strict=True)):
        if not shape_equals(shape, history):  # equal counts are not enough: a permuted shape is another net's
            raise SetupError(f'--resume {path}: its momentum history blob {k} has shape {blob_shape(history)} but '
                             f'this net\'s {layer} blob {j} is {shape}: it was saved from a different model or width')
    short = [i for i, h in enumerate(state.history) if (len(h.data) or len(h.double_data)) != np.prod(blob_shape(h))]
    if short:
        raise SetupError(f'--resume {path}: momentum history blob {short[0]} holds fewer values than its shape '
                         'says: the file is corrupt')
    if state.iter < 0:
        raise SetupError(f'--resume {path}: it says iteration {state.iter}: the file is corrupt')
    state.learned_net = str(model.resolve())
    return state


def unusable(path, problem):
    """The SetupError for a state (or its weights) that cannot be resumed from; for a run's own snapshot it says how
    to go on without it."""
    hint = '. Delete this snapshot (its .solverstate and .caffemodel) to go on from an earlier one, or start over ' \
        'with --overwrite' if runs.MODEL_ITER.search(Path(path).with_suffix('.caffemodel').name) else ''
    return SetupError(f'--resume {path}: {problem}{hint}')


def resume(solver, path):
    """Restore iteration, weights, momentum history and (when saved) the data order."""
    import surgery

    state = read_state(path, solver.net)
    try:
        surgery.load_weights(solver.net, state.learned_net)  # validates shapes in Python before Caffe copies
    except surgery.WeightsError as err:
        raise unusable(path, f'its weights cannot be loaded: {err}') from None
    with tempfile.TemporaryDirectory() as tmp:  # the state with its weights' path made absolute
        restored = runs.write_atomic(Path(tmp) / 'resume.solverstate', state.SerializeToString())
        solver.restore(str(restored))
    if any(layer.type == 'Dropout' for layer in solver.net.layers):
        print('note: Caffe keeps its random state out of the solverstate and pycaffe cannot read or set it, so the '
              'dropout masks after a resume differ from those of an uninterrupted run (the weights stay within about '
              '1e-3 of it); --seed makes each run repeatable', file=sys.stderr)
    restore_data_order(solver.net, Path(path).with_suffix('.data.json'))


def restore_data_order(net, order):
    """The data layers' image order as the snapshot saved it in `order` (the .data.json beside it), if there."""
    if not order.is_file():
        print(f'note: {order} not found: the data order restarts', file=sys.stderr)
        return
    try:
        saved = json.loads(order.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise SetupError(f'--resume: {order} is not a data state ({err}); delete it to restart the data '
                         'order') from None
    if not isinstance(saved, dict):
        raise SetupError(f'--resume: {order} is not a data state (a JSON object of layer states)')
    for name, layer in data_layers(net).items():
        if name in saved:
            layer.restore(saved[name])
