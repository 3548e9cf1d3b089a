"""Instantiating caffe.Nets from a NetParameter or a prototxt path, checked in Python first."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from .weights import WeightsError, load_weights


def read_prototxt(path, message=None):
    """Parse a text prototxt into `message` (default: a new NetParameter; a SolverParameter reads a solver); a
    missing or malformed file is a WeightsError."""
    path = Path(path)
    message = caffe_pb2.NetParameter() if message is None else message
    kind = 'net' if isinstance(message, caffe_pb2.NetParameter) else 'solver'
    if not path.is_file():
        raise WeightsError(f'{kind} definition {path} does not exist: check the path ({kind}s are written by '
                           'fcn-netgen)')
    try:
        return text_format.Parse(path.read_text(), message)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise WeightsError(f'{path} is not a valid {kind} prototxt: {e}') from None


def allowed_python_modules():
    """The modules a net's Python layers may name: the declared data layers, fcn's loss layer, and those the user
    allows in FCN_PYTHON_LAYERS (comma-separated): Caffe imports and runs whatever module a prototxt names."""
    from caffe_fcn import registry

    declared = {source.module for data in registry.DATASETS.values() for source in data.sources.values()}
    allowed = set(filter(None, os.environ.get('FCN_PYTHON_LAYERS', '').split(',')))
    return declared | {registry.GENERIC_LAYER[0], 'solvers.losses'} | allowed


def check_python_layers(param, where):
    allowed = allowed_python_modules()
    for layer in param.layer:
        if layer.type == 'Python' and layer.python_param.module not in allowed:
            raise WeightsError(f'{where}: layer {layer.name!r} would import and run the Python module '
                               f'{layer.python_param.module!r}, which is not one of fcn\'s layer modules '
                               f'({", ".join(sorted(allowed))}); to allow it, set FCN_PYTHON_LAYERS='
                               f'{layer.python_param.module}')


def probe(path, where):
    """Build the net in a child process first: on a net it cannot build (an unknown bottom or layer type, a kernel
    larger than its input) Caffe aborts the whole process. Its reason becomes a WeightsError."""
    result = subprocess.run([sys.executable, '-c', 'import sys, caffe; caffe.Net(sys.argv[1], caffe.TEST)', path],
                            capture_output=True, text=True, env={**os.environ, 'GLOG_minloglevel': '2'})
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ['(no message)']
        reason = next((line for line in lines if 'Check failed' in line or 'Unknown' in line), lines[-1])
        raise WeightsError(f'{where}: Caffe cannot build this net: {reason.split("] ", 1)[-1]}')  # less glog's prefix


def instantiate(spec, weights=None, phase=caffe.TEST, partial=False, model=None):
    """A caffe.Net from a NetParameter or a prototxt path, with `weights` validated and loaded if given
    (all of the net's layers, or with `partial` those the file has: see load_weights). A prototxt from a path,
    unlike a net netgen made, is built once in a child process first, so that Caffe cannot abort this one.
    `model`: the model's name, which load_weights compares with the file's."""
    from_file = not isinstance(spec, caffe_pb2.NetParameter)
    param = read_prototxt(spec) if from_file else spec
    where = spec if from_file else f'net {param.name!r}'
    if not param.layer and not param.layers:
        raise WeightsError(f'{where} has no layers')
    check_python_layers(param, where)
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt') as f:
        f.write(text_format.MessageToString(param))
        f.flush()
        if from_file:
            probe(f.name, where)
        net = caffe.Net(f.name, phase)
    if weights is not None:
        load_weights(net, weights, partial=partial, model=model)
    return net


def save_net(net, out, layers=None, model=None):
    """net.save through the one write path: Caffe writes into a private temporary folder beside `out`, whose room
    for the file is proved first (Caffe aborts the process when a write fails); Python then keeps `layers` (default
    all) and writes `out` atomically, so a good file is never replaced by a truncated one. `model` names the
    file's model (NetParameter.name), which loading compares."""
    from caffe_fcn.files import reserve, write_atomic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = sum(blob.data.nbytes for blobs in net.params.values() for blob in blobs) + (4 << 20)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix='.save-') as tmp:
        reserve(tmp, [size, size], out)  # Caffe's file, then Python's copy of it
        full = Path(tmp) / 'net.caffemodel'
        net.save(str(full))
        param = caffe_pb2.NetParameter.FromString(full.read_bytes())
        if layers is not None:
            keep = set(layers)
            kept = caffe_pb2.NetParameter(name=param.name)
            kept.layer.extend(layer for layer in param.layer if layer.name in keep)
            param = kept
        full.unlink()
        if model is not None:
            param.name = model
        return write_atomic(out, param.SerializeToString())
