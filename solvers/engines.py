"""fcn-infer's engines: Caffe (the faithful one, the default) and onnxruntime on this project's own ONNX export,
made once per weights file and model, checked against Caffe as fcn-export checks it, and cached under
FCN_CACHE/onnx by the weights' sha256. Both take {input top: C x H x W float32} and give {output: C x H x W}.

A cache entry is trusted by its content, never by its name: the record beside it (what it was made from and its
own sha256) must match, and it must agree with Caffe on one small input; else it is rebuilt."""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from caffe_fcn import cli
from caffe_fcn.files import write_atomic
from solvers.deploy import forward

ENGINES = ('caffe', 'onnxruntime')


class Caffe:
    def __init__(self, net):
        self.net = net

    def scores(self, inputs):
        forward(self.net, inputs)  # NotFinite, naming the first layer, for NaN or infinite outputs
        return {out: self.net.blobs[out].data[0].copy() for out in self.net.outputs}


class OnnxRuntime:
    def __init__(self, run):
        self.run = run  # {input: 1 x C x H x W} -> {output: 1 x C x H x W}

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
    """A runner of the cached ONNX export of these weights for this model and width, made and checked first where
    it is missing or does not check out (`verified`)."""
    from caffe_fcn.export.check import onnx_runner
    from caffe_fcn.export.cli import require

    require('onnx')
    made_from = provenance(model, weights, width)
    path = cache_dir() / f'{model.name}-w{width:g}-{made_from["weights_sha256"][:20]}.onnx'
    if path.is_file():
        reason, run = verified(path, made_from, net, proto, model)
        if reason is None:
            return run
        print(f'onnxruntime engine: the cached export {path} {reason}: rebuilding it', file=sys.stderr)
    else:
        print(f'onnxruntime engine: exporting {model.name} from {weights} once, checked against Caffe, into '
              f'{path}', file=sys.stderr)
    build(model, net, proto, weights, width, path, made_from)
    return onnx_runner(path)


def provenance(model, weights, width):
    """What an export is made from, as its record keeps it (the export's own sha256 is added once written)."""
    from importlib.metadata import PackageNotFoundError, version

    from surgery.published import digest

    try:
        ours = version('caffe-fcn')
    except PackageNotFoundError:  # run from a clone that is not installed
        ours = 'unknown'
    return {'model': model.name, 'width': float(width), 'weights_sha256': digest(weights, 'sha256'),
            'fcn_version': ours}


def record_path(path):
    return path.with_name(path.name + '.json')


def build(model, net, proto, weights, width, path, made_from):
    """Export, check against Caffe and write the entry (fcn-export's checked_export, each file whole), then its
    record: an entry killed between the two has no record and is rebuilt."""
    from caffe_fcn.export.cli import DEFAULT_SIZES, check_cases, checked_export
    from surgery.published import digest

    record_path(path).unlink(missing_ok=True)
    cases = check_cases(model, proto, argparse.Namespace(sizes=DEFAULT_SIZES, seed=0, image=None))
    checked_export(model, 'onnx', net, proto, weights, width, path, cases, echo=lambda text: None)
    write_atomic(record_path(path), json.dumps({**made_from, 'onnx_sha256': digest(path, 'sha256')}, indent=1))


def verified(path, made_from, net, proto, model):
    """(None, a runner) where the cached export at `path` is what its record says, made from `made_from`, and
    agrees with Caffe's `net` on one small input; else (why not, None)."""
    from caffe_fcn.export import check
    from surgery.published import digest

    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return 'has no readable record of what it was made from', None
    differs = [key for key, value in made_from.items() if record.get(key) != value]
    if differs:
        return f'is recorded as made from another {" and ".join(differs)}', None
    if record.get('onnx_sha256') != digest(path, 'sha256'):
        return 'is not the file its record describes (changed, emptied or cut short since)', None
    label, inputs = check.smallest_case(proto, model.inputs)
    expected = check.caffe_outputs(net, inputs)  # Caffe's own failures are not the cache's: they propagate
    try:
        run = check.onnx_runner(path)
        rows = check.compare(label, expected, run(inputs))
    except Exception as err:  # a cache file onnxruntime cannot load or run is rebuilt, whatever it raises
        return f'cannot be run by onnxruntime ({type(err).__name__}: {" ".join(str(err).split())[:160]})', None
    failed = [r for r in rows if not r.passed]
    if failed:
        return (f'disagrees with Caffe on a {label} input ({failed[0].output}: argmax agrees on '
                f'{100 * failed[0].agreement:.1f}%)'), None
    return None, run


def engine(name, model, net, proto, weights, width):
    """The engine `name` on the model's deploy net `net` (loaded with `weights`)."""
    if name == 'caffe':
        return Caffe(net)
    if name == 'onnxruntime':
        return OnnxRuntime(onnx_export(model, net, proto, weights, width))
    raise cli.BadInput(f'--engine {name}: one of {", ".join(ENGINES)}')
