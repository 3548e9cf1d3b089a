"""Instantiating caffe.Nets from a NetParameter or a prototxt path, checked in Python first."""
import tempfile
from pathlib import Path

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from .weights import WeightsError, load_weights


def read_prototxt(path):
    """Parse a text prototxt into a NetParameter; a missing or malformed file is a WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f'net definition {path} does not exist: check the path (nets are written by fcn-netgen)')
    try:
        return text_format.Parse(path.read_text(), caffe_pb2.NetParameter())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise WeightsError(f'{path} is not a valid net prototxt: {e}') from None


def instantiate(spec, weights=None, phase=caffe.TEST):
    """A caffe.Net from a NetParameter or a prototxt path, with `weights` validated and loaded if given."""
    param = spec if isinstance(spec, caffe_pb2.NetParameter) else read_prototxt(spec)
    if not param.layer and not param.layers:
        raise WeightsError(f'net definition {spec if not isinstance(spec, caffe_pb2.NetParameter) else ""} '
                           'has no layers')
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt') as f:
        f.write(text_format.MessageToString(param))
        f.flush()
        net = caffe.Net(f.name, phase)
    if weights is not None:
        load_weights(net, weights)
    return net
