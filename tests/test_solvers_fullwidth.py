"""One SGD step of every FCN model at full width on tiny synthetic images: the loss is finite.

Each model runs in its own child process (a failed Caffe CHECK would abort the test run); the trunk gets a
random initialization so that the step does real arithmetic in every layer.
"""
import json
from pathlib import Path

import pytest

import netgen
from common import checked, child

FCN_MODELS = [name for name, model in netgen.MODELS.items() if model.splits]


def print_one_step(name, out, data):
    """One SGD step of model `name` at full width (prepared in `out`, the data folders of the JSON object `data`)
    from random He-scaled kernels; prints the iteration, the losses and whether all are finite, as JSON."""
    import math

    import caffe
    import numpy as np
    from caffe_fcn import registry
    from solvers import runs, score

    prepared = runs.prepare(registry.get(name), Path(out), 1.0, overrides=json.loads(data))
    solver = caffe.SGDSolver(str(prepared.solver))
    rng = np.random.default_rng(0)
    for blobs in solver.net.params.values():
        kernel = blobs[0].data
        kernel[...] = rng.standard_normal(kernel.shape, dtype=np.float32) * np.sqrt(1 / np.prod(kernel.shape[1:]))
    solver.step(1)
    losses = {o.loss: float(solver.net.blobs[o.loss].data.flat[0]) for o in score.outputs(prepared.train_net)}
    print(json.dumps({'iter': solver.iter, 'losses': losses, 'finite': all(map(math.isfinite, losses.values()))}))


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """Every dataset at 4 images of 32 x 32 (FCN-GoogLeNet has no pad 100: smaller inputs vanish in its pools)."""
    from caffe_fcn.datalayers.synth import dir_overrides, synthesize

    root = tmp_path_factory.mktemp('tiny')
    made = {d: dir_overrides(d, synthesize(d, root / d, count=4, seed=0, size=(32, 32)))
            for d in ('voc', 'sbdd', 'nyud', 'siftflow', 'pascalcontext')}
    made['voc'].update(made.pop('sbdd'))  # VOC models train on SBD and score on VOC
    return made


@pytest.mark.slow
@pytest.mark.parametrize('name', FCN_MODELS)
def test_one_sgd_step_at_full_width(name, tiny_data, tmp_path):
    data = json.dumps(tiny_data[netgen.MODELS[name].dataset])
    report = json.loads(checked(child(print_one_step, name, tmp_path, data)).strip().splitlines()[-1])
    assert report['iter'] == 1 and report['finite'], report
