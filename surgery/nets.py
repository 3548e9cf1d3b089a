"""Instantiating caffe.Nets from a NetParameter or a prototxt path, checked in Python first."""
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


def instantiate(spec, weights=None, phase=caffe.TEST, partial=False):
    """A caffe.Net from a NetParameter or a prototxt path, with `weights` validated and loaded if given
    (all of the net's layers, or with `partial` those the file has: see load_weights)."""
    param = spec if isinstance(spec, caffe_pb2.NetParameter) else read_prototxt(spec)
    if not param.layer and not param.layers:
        raise WeightsError(f'net definition {spec if not isinstance(spec, caffe_pb2.NetParameter) else ""} '
                           'has no layers')
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt') as f:
        f.write(text_format.MessageToString(param))
        f.flush()
        net = caffe.Net(f.name, phase)
    if weights is not None:
        load_weights(net, weights, partial=partial)
    return net
