"""This project against the reference FCN's own code (../shared/reference-code), run side by side on the same
synthetic data: the data layers' tops and order bit for bit, and the solve.py flow's weights and scores.

Both sides run in child processes (each with its own modules first on the path, and a failed Caffe CHECK
aborts a process); they compare through the files they write.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from reference import FORWARD, MODULES, REPO, reference_code, run_python

FORWARDS = 14  # more than any split holds: the evaluation splits wrap around
# (model, split, param_str overrides): every dataset, every split, every set of NYUDv2 modalities
LAYER_CASES = [('voc-fcn32s', 'train', {}), ('voc-fcn32s', 'val', {}), ('voc-fcn32s', 'train', {'seed': 5}),
               ('nyud-fcn32s-color', 'trainval', {}), ('nyud-fcn32s-color', 'test', {}),
               ('nyud-fcn32s-hha', 'trainval', {}), ('nyud-fcn32s-color-d', 'trainval', {}),
               ('nyud-fcn32s-color-hha', 'trainval', {}), ('nyud-fcn32s-color-hha', 'test', {}),
               ('siftflow-fcn32s', 'trainval', {}), ('siftflow-fcn32s', 'test', {}),
               ('pascalcontext-fcn32s', 'train', {}), ('pascalcontext-fcn32s', 'val', {})]


@pytest.fixture(scope='module')
def refcode(tmp_path_factory):
    return reference_code(tmp_path_factory.mktemp('reference-code'))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """All five datasets, synthetic, laid out as data/README.md says (VOC-like image sizes vary)."""
    from datalayers.synth import synthesize

    root = tmp_path_factory.mktemp('data')
    for dataset, folder, size in [('sbdd', 'sbdd', None), ('voc', 'pascal', None), ('nyud', 'nyud', (48, 64)),
                                  ('siftflow', 'sift-flow', (40, 40)), ('pascalcontext', 'pascal-context', None)]:
        synthesize(dataset, root / folder, count=8, seed=4, size=size)
    return root


def data_layer_net(model, split, data_root, overrides, path):
    """A net of the model's generated data layer alone, its folders under `data_root`."""
    import netgen
    from fcn import registry
    from solvers import runs

    model = registry.get(model)
    layer = netgen.net(model, split, data=runs.data_dirs(model, data_root, overrides)).layer[0]
    net = caffe_pb2.NetParameter(name=f'{model.name}-{split}')
    net.layer.add().CopyFrom(layer)
    path.write_text(text_format.MessageToString(net))
    return str(path)


def forward_both(cases, refcode, tmp_path):
    """{side: {case: npz}} of the project's and the reference's layers over the same cases."""
    (tmp_path / 'cases.json').write_text(json.dumps(cases))
    found = {}
    for side, path_first in (('project', REPO), ('reference', refcode)):
        out = tmp_path / side
        out.mkdir()
        result = run_python(FORWARD, path_first, tmp_path / 'cases.json', out, *MODULES[:4])
        assert result.returncode == 0, result.stderr[-3000:]
        files = json.loads(result.stdout.splitlines()[0])
        assert all(Path(f).parent == Path(path_first) for f in files.values()), files  # who ran
        found[side] = {case['name']: np.load(out / f"{case['name']}.npz") for case in cases}
    return found


def test_every_data_layer_gives_the_references_tops_in_its_order(refcode, data_root, tmp_path):
    cases = [{'name': f'{model}-{split}-{i}', 'forwards': FORWARDS,
              'prototxt': data_layer_net(model, split, data_root, overrides, tmp_path / f'{i}.prototxt')}
             for i, (model, split, overrides) in enumerate(LAYER_CASES)]
    found = forward_both(cases, refcode, tmp_path)
    for case in cases:
        mine, theirs = found['project'][case['name']], found['reference'][case['name']]
        assert list(mine['ids']) == list(theirs['ids']), f"{case['name']}: another order"
        assert sorted(mine.files) == sorted(theirs.files), case['name']
        for key in theirs.files:
            a, b = mine[key], theirs[key]
            assert a.dtype == b.dtype and a.shape == b.shape, f"{case['name']} {key}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            assert a.tobytes() == b.tobytes(), f"{case['name']} {key}: other bits (max |diff| {np.abs(a - b).max()})"
    train = found['project']['voc-fcn32s-train-0']['ids']
    assert len(set(train)) < len(train), 'the reference draws training images with replacement'
    assert list(train) != list(found['project']['voc-fcn32s-train-2']['ids']), 'the seed decides the order'
