"""This project against the reference FCN's own code (../shared/reference-code), run side by side on the same
synthetic data: the data layers' tops and order bit for bit, and the solve.py flow's weights and scores.

Both sides run in child processes (each with its own modules first on the path, and a failed Caffe CHECK
aborts a process); they compare through the files they write.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from PIL import Image

from common import checked, child, save_stand_in
from data_helpers import voc_data
from reference import MODULES, REPO, forward_data_layers, reference_code, run_script

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
    from caffe_fcn.datalayers.synth import synthesize

    root = tmp_path_factory.mktemp('data')
    for dataset, folder, size in [('sbdd', 'sbdd', None), ('voc', 'pascal', None), ('nyud', 'nyud', (48, 64)),
                                  ('siftflow', 'sift-flow', (40, 40)), ('pascalcontext', 'pascal-context', None)]:
        synthesize(dataset, root / folder, count=8, seed=4, size=size)
    return root


def data_layer_net(model, split, data_root, overrides, path):
    """A net of the model's generated data layer alone, its folders under `data_root`."""
    import netgen
    from caffe_fcn import registry
    from solvers import runs

    model = registry.get(model)
    layer = netgen.net(model, split, overrides=runs.data_dirs(model, data_root, overrides)).layer[0]
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
        stdout = checked(child(forward_data_layers, tmp_path / 'cases.json', out, *MODULES[:4], path_first=path_first))
        files = json.loads(stdout.splitlines()[0])
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
            assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{case['name']} {key}: {a.dtype}{a.shape} vs {b.shape}"
            assert a.tobytes() == b.tobytes(), f"{case['name']} {key}: other bits (max |diff| {np.abs(a - b).max()})"
    train = found['project']['voc-fcn32s-train-0']['ids']
    assert len(set(train)) < len(train), 'the reference draws training images with replacement'
    assert list(train) != list(found['project']['voc-fcn32s-train-2']['ids']), 'the seed decides the order'


# --- training: the reference's solve.py flow against fcn-train, on the CPU ---------------------------------------

ROUNDS, STEPS, SEED, BASE_LR = 2, 3, 5, 1e-6  # K = 6 steps per stage; a base_lr at which the weights move far
WIDTH = 1 / 16
METRIC = re.compile(r'^>>> \S+ \S+ Iteration (\d+) (overall accuracy|mean accuracy|mean IU|fwavacc) (\S+)$', re.M)
NAMES = {'overall accuracy': 'overall_acc', 'mean accuracy': 'mean_acc', 'mean IU': 'mean_iu', 'fwavacc': 'fwavacc'}


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    return voc_data(tmp_path_factory.mktemp('voc-data'))


@pytest.fixture(scope='module')
def start(tmp_path_factory):
    """A reduced-width stand-in for the converted VGG16 trunk (both sides start from this file)."""
    path = tmp_path_factory.mktemp('start') / 'vgg16-fcn.caffemodel'
    checked(child(save_stand_in, 'voc-fcn32s', WIDTH, path))
    return path


def ours(model, weights, voc_root, out, seed=SEED, command='fcn-train'):
    """This project's run (`fcn-train MODEL`, or `python MODEL/solve.py`), with the reference's values but
    base_lr; the weights it ends with."""
    entry = [sys.executable, str(REPO / model / 'solve.py')] if command == 'solve.py' else \
        [str(Path(sys.executable).parent / 'fcn-train'), model]
    args = ['--width', WIDTH, '--weights', weights, '--data-root', voc_root, '--rounds', ROUNDS, '--steps', STEPS,
            '--seed', seed, '--base-lr', BASE_LR, '--out', out]
    result = subprocess.run([*entry, *map(str, args)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, 'GLOG_minloglevel': '2'})
    assert result.returncode == 0, result.stderr[-3000:]
    return out / f'train_iter_{ROUNDS * STEPS}.caffemodel'


def theirs(model, refcode, folder, run_dir, voc_root, weights_at, weights):
    """The reference's own MODEL/solve.py, run as the reference lays it out (from MODEL/, with
    ../data/segvalid11.txt and the start weights where it names them: `weights_at`, under `folder`), on the
    solver and nets this project's run wrote; edited only to run on the CPU for ROUNDS rounds of STEPS steps and
    to save its weights at the end. Returns those weights and the four metrics it printed last."""
    here = folder / model
    here.mkdir(parents=True)
    (folder / 'data').mkdir(exist_ok=True)
    shutil.copy(voc_root / 'pascal/VOC2011/ImageSets/Segmentation/seg11valid.txt', folder / 'data/segvalid11.txt')
    if not (folder / weights_at).exists():  # a later stage starts from what the reference's earlier one saved
        (folder / weights_at).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(weights, folder / weights_at)
    shutil.copy(run_dir / 'solver.prototxt', here / 'solver.prototxt')
    source = (refcode / f'{model}-solve.py').read_text()
    assert f"weights = '../{weights_at}'" in source, f'the reference {model}/solve.py starts elsewhere'
    for old, new in [('caffe.set_device(int(sys.argv[1]))\ncaffe.set_mode_gpu()', 'caffe.set_mode_cpu()'),
                     ('range(25)', f'range({ROUNDS})'), ('solver.step(4000)', f'solver.step({STEPS})')]:
        assert old in source, f'the reference {model}/solve.py no longer says {old!r}'
        source = source.replace(old, new)
    (here / 'solve.py').write_text(source + f"\nsolver.net.save('{model}.caffemodel')\n")
    result = child(run_script, 'solve.py', '0', path_first=refcode, cwd=here)
    printed = {NAMES[name]: float(value) for it, name, value in METRIC.findall(checked(result))
               if int(it) == ROUNDS * STEPS}
    assert len(printed) == 4, result.stdout[-2000:]
    return here / f'{model}.caffemodel', printed


def weights(path):
    from surgery import read_caffemodel

    return {layer.name: [np.array(blob.data, np.float32) for blob in layer.blobs]
            for layer in read_caffemodel(path).layer if layer.blobs}


def worst(a, b):
    """The largest |difference| between the weights of the layers both hold."""
    return max(float(np.abs(x - y).max()) for name in a.keys() & b.keys() for x, y in zip(a[name], b[name],
                                                                                              strict=True))


def fcn_score(model, weights_file, voc_root, out):
    result = subprocess.run([str(Path(sys.executable).parent / 'fcn-score'), model, '--weights', str(weights_file),
                             '--width', str(WIDTH), '--data-root', str(voc_root), '--json', str(out)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, 'GLOG_minloglevel': '2'})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())['score']


def test_training_is_bit_identical_to_the_reference_solve_py(refcode, voc_root, start, tmp_path):
    """voc-fcn32s from the trunk (python voc-fcn32s/solve.py), then voc-fcn16s from those weights (fcn-train),
    each K = 6 steps with dropout under random_seed: the same weights, bit for bit, and the same four metrics
    as the reference's score.py printed, in the run's log and from fcn-score."""
    figures, start_of = {}, {'ours': start, 'theirs': start}
    for model, command, weights_at in [('voc-fcn32s', 'solve.py', 'ilsvrc-nets/vgg16-fcn.caffemodel'),
                                       ('voc-fcn16s', 'fcn-train', 'voc-fcn32s/voc-fcn32s.caffemodel')]:
        out = tmp_path / f'ours-{model}'
        mine = ours(model, start_of['ours'], voc_root, out, command=command)
        reference, printed = theirs(model, refcode, tmp_path / 'reference', out / 'run', voc_root, weights_at,
                                    start_of['theirs'])
        a, b = weights(mine), weights(reference)
        assert a.keys() == b.keys()
        assert worst(a, b) == 0.0, f"{model}: the weights differ from the reference's by up to {worst(a, b)}"
        moved = worst(a, weights(start_of['ours']))
        assert moved > 1e-2, f'{model}: the weights hardly moved ({moved}): the comparison would prove nothing'
        logged = json.loads((out / 'log.jsonl').read_text().splitlines()[-1])['scores']['score']
        scored = fcn_score(model, mine, voc_root, tmp_path / f'{model}.json')
        for metric, value in printed.items():
            assert logged[metric] == value and scored[metric] == value, (model, metric, value, logged, scored)
        figures[model] = {'max |weights - start|': moved, 'max |ours - reference|': worst(a, b), **printed}
        start_of = {'ours': mine, 'theirs': reference}
    other = ours('voc-fcn32s', start, voc_root, tmp_path / 'other-seed', seed=SEED + 1)
    assert worst(weights(other), weights(tmp_path / 'ours-voc-fcn32s' / other.name)) > 0, \
        'another random_seed gives other dropout masks, so other weights: the comparison sees a difference'
    print(json.dumps(figures))


# --- inference: fcn-infer against the reference's infer.py -----------------------------------------------------

def save_random_net(model, width, prototxt, weights):
    """`model`'s deploy net at `width` written to `prototxt`, and its He-normal random weights
    (caffe_fcn.bench.worker's, seed 3) to `weights`."""
    import netgen
    import surgery
    from caffe_fcn.bench.worker import init_weights

    param = netgen.net(model, 'deploy', width=float(width))
    Path(prototxt).write_text(text_format.MessageToString(param))
    net = surgery.instantiate(param)
    init_weights(net, 3)
    net.save(str(weights))


def test_fcn_infer_feeds_the_net_what_the_reference_infer_py_feeds_it(refcode, tmp_path):
    """The reference's infer.py on its demo image (a real VOC photo), up to its argmax, against this project's
    input preparation and fcn-infer, with the same random weights in a reduced-width voc-fcn8s."""
    demo = REPO.parent / 'shared' / 'reference-data' / 'demo' / 'image.jpg'
    if not demo.is_file():
        pytest.skip(f'the reference demo image is not at {demo}')
    (tmp_path / 'demo').mkdir()
    (tmp_path / 'voc-fcn8s').mkdir()
    shutil.copy(demo, tmp_path / 'demo' / 'image.jpg')
    model_file = tmp_path / 'voc-fcn8s' / 'fcn8s-heavy-pascal.caffemodel'
    checked(child(save_random_net, 'voc-fcn8s', WIDTH, tmp_path / 'voc-fcn8s' / 'deploy.prototxt', model_file))
    source = (refcode / 'infer.py').read_text()
    assert '# visualize segmentation' in source, 'the reference infer.py changed'
    source = source[:source.index('# visualize segmentation')]  # its pictures need vis.py, Python 2 (xrange)
    source += "np.save('in.npy', in_)\nnp.save('score.npy', net.blobs['score'].data[0])\n"
    (tmp_path / 'infer.py').write_text(source)  # the reference's own program, cut: run as its file
    checked(child(run_script, 'infer.py', path_first=refcode, cwd=tmp_path))
    fed = np.load(tmp_path / 'in.npy')

    from caffe_fcn import registry
    from solvers.deploy import read_image
    from solvers.infer import model_inputs

    mine = model_inputs(registry.get('voc-fcn8s'), demo, read_image(demo))['data']
    assert (mine.dtype, mine.shape) == (fed.dtype, fed.shape) and mine.tobytes() == fed.tobytes()
    out = tmp_path / 'ours'
    result = subprocess.run([str(Path(sys.executable).parent / 'fcn-infer'), 'voc-fcn8s', '--width', str(WIDTH),
                             '--weights', str(model_file), str(demo), '--out', str(out)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, 'GLOG_minloglevel': '2'})
    assert result.returncode == 0, result.stderr[-3000:]
    labels = np.array(Image.open(out / 'image.png'))
    expected = np.load(tmp_path / 'score.npy').argmax(0)
    assert len(np.unique(expected)) > 1, 'random weights that predict one class would prove little'
    assert np.array_equal(labels, expected)
