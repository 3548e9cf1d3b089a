"""fcn-infer's engines: Caffe (the faithful one, the default) and onnxruntime on this project's own ONNX export,
made once per weights file and model, checked against Caffe as fcn-export checks it, and cached under
FCN_CACHE/onnx by the weights' sha256. Both take {input top: C x H x W float32} and give {output: C x H x W}."""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

from caffe_fcn import cli
from solvers.deploy import forward

ENGINES = ('caffe', 'onnxruntime')


class Caffe:
    def __init__(self, net):
        self.net = net

    def scores(self, inputs):
        forward(self.net, inputs)  # NotFinite, naming the first layer, for NaN or infinite outputs
        return {out: self.net.blobs[out].data[0].copy() for out in self.net.outputs}


class OnnxRuntime:
    def __init__(self, path):
        from caffe_fcn.export.check import onnx_runner

        self.run = onnx_runner(path)

    def scores(self, inputs):
        from solvers.score import NotFinite

        scores = {out: array[0] for out, array in self.run({k: v[np.newaxis] for k, v in inputs.items()}).items()}
        if not all(np.isfinite(s).all() for s in scores.values()):
            raise NotFinite('the net gives non-finite outputs (NaN or infinity): the weights are out of range or '
                            'broken (a diverged run?); nothing was written from them')
        return scores


def cache_dir():
    return Path(os.environ.get('FCN_CACHE') or Path.home() / '.cache' / 'fcn') / 'onnx'


def onnx_export(model, net, proto, weights, width):
    """The cached ONNX export of these weights for this model and width, made and checked first if missing."""
    from caffe_fcn.export.cli import DEFAULT_SIZES, check_cases, checked_export, require
    from surgery.published import digest

    require('onnx')
    path = cache_dir() / f'{model.name}-w{width:g}-{digest(weights, "sha256")[:20]}.onnx'
    if not path.is_file():
        print(f'onnxruntime engine: exporting {model.name} from {weights} once, checked against Caffe, into '
              f'{path}', file=sys.stderr)
        cases = check_cases(model, proto, argparse.Namespace(sizes=DEFAULT_SIZES, seed=0, image=None))
        checked_export(model, 'onnx', net, proto, weights, width, path, cases, echo=lambda text: None)
    return path


def engine(name, model, net, proto, weights, width):
    """The engine `name` on the model's deploy net `net` (loaded with `weights`)."""
    if name == 'caffe':
        return Caffe(net)
    if name == 'onnxruntime':
        return OnnxRuntime(onnx_export(model, net, proto, weights, width))
    raise cli.BadInput(f'--engine {name}: one of {", ".join(ENGINES)}')
