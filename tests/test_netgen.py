"""netgen: reference equality, committed files, Caffe instantiation, geometry (CVPR Table 1), ILSVRC names."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import netgen
from netgen import geometry, netdiff

from common import QUIET, checked, child

REFERENCE = netgen.REPO.parent / 'shared' / 'reference-nets'
FCNS = [name for name, model in netgen.MODELS.items() if model.splits]


def reference_files():
    if not REFERENCE.is_dir():
        return []
    return sorted(path for path in REFERENCE.glob('*/*.prototxt') if path.parent.name in netgen.MODELS)


def generated(model, filename):
    stem = Path(filename).stem
    return netgen.solver(model) if stem == 'solver' else netgen.net(model, stem)


# --- the reference nets ------------------------------------------------------------------------------

def test_every_reference_file_is_compared():
    """All 46 of the reference's nets and solvers, each beside a file this project generates."""
    assert REFERENCE.is_dir(), f'the reference nets are not at {REFERENCE} (../shared beside the project)'
    compared = reference_files()
    assert len(compared) == 46 and len({p.parent.name for p in compared}) == 15
    assert all(path.name in netgen.MODELS[path.parent.name].files for path in compared)


@pytest.mark.parametrize('path', reference_files(), ids=lambda p: f'{p.parent.name}/{p.name}')
def test_generated_equals_reference(path):
    differences = netdiff.diff(netdiff.read(path), generated(path.parent.name, path.name))
    assert differences == [], '\n'.join(map(str, differences))


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f'reference nets not found at {REFERENCE}')
def test_committed_file_equals_reference_through_the_cli():
    ours = netgen.REPO / 'voc-fcn8s' / 'deploy.prototxt'
    result = subprocess.run([sys.executable, '-m', 'netgen.netdiff', str(ours), str(REFERENCE / 'voc-fcn8s' /
                                                                                      'deploy.prototxt')],
                            capture_output=True, text=True, env=QUIET, cwd=netgen.REPO)
    assert result.returncode == 0, result.stdout + result.stderr


# --- generated files -----------------------------------------------------------------------------------

@pytest.mark.parametrize('model', list(netgen.MODELS))
def test_committed_files_are_what_the_generator_writes(model):
    for filename, content in netgen.generate(model).items():
        path = netgen.REPO / model / filename
        assert path.exists(), f'{path} missing: run `make {model}`'
        assert path.read_text() == content, f'{path} is stale: run `make {model}`'


def test_output_is_deterministic():
    assert netgen.generate('nyud-fcn16s-color-hha') == netgen.generate('nyud-fcn16s-color-hha')


def test_write_makes_every_file_with_overrides(tmp_path):
    paths = netgen.write('voc-fcn32s', tmp_path, width=0.25, overrides={'sbdd_dir': '/tmp/synth/sbdd/dataset'})
    assert sorted(p.name for p in paths) == sorted(netgen.MODELS['voc-fcn32s'].files)
    train = netdiff.read(tmp_path / 'train.prototxt')
    assert ast.literal_eval(train.layer[0].python_param.param_str)['sbdd_dir'] == '/tmp/synth/sbdd/dataset'
    val = netdiff.read(tmp_path / 'val.prototxt')  # the override applies where it belongs
    assert 'sbdd_dir' not in ast.literal_eval(val.layer[0].python_param.param_str)
    assert train.layer[1].convolution_param.num_output == 16
    solver = netdiff.read(tmp_path / 'solver.prototxt')
    assert (solver.train_net, list(solver.test_net)) == ('train.prototxt', ['val.prototxt'])


def test_every_model_folder_has_its_files():
    """Each model's folder holds, as committed, its nets (the solver last) and, where it trains, its solve.py;
    every folder with a deploy net at the top is a declared model."""
    tracked = subprocess.run(['git', 'ls-files'], capture_output=True, text=True, cwd=netgen.REPO, check=True)
    folders = {}
    for path in map(Path, tracked.stdout.split()):
        if len(path.parts) == 2:
            folders.setdefault(path.parts[0], set()).add(path.name)
    assert {name for name, files in folders.items() if 'deploy.prototxt' in files} == set(netgen.MODELS)
    for name, model in netgen.MODELS.items():
        assert model.files[-1] == ('solver.prototxt' if model.splits else 'deploy.prototxt')
        assert folders[name] == set(model.files) | ({'solve.py'} if model.splits else set()), name
        assert model.init_from is None or model.init_from in netgen.MODELS


# --- declarations -------------------------------------------------------------------------------------

def test_models_and_contract_attributes():
    names = set(netgen.MODELS)
    assert {'voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s', 'voc-fcn8s-atonce', 'voc-fcn-alexnet', 'nyud-fcn32s-color',
            'nyud-fcn32s-hha', 'nyud-fcn32s-color-d', 'nyud-fcn32s-color-hha', 'siftflow-fcn32s',
            'siftflow-fcn16s', 'siftflow-fcn8s', 'pascalcontext-fcn32s', 'pascalcontext-fcn16s',
            'pascalcontext-fcn8s', 'voc-fcn-googlenet', 'nyud-fcn16s-color-hha', 'ilsvrc-vgg16',
            'ilsvrc-caffenet', 'ilsvrc-googlenet',
            'voc-fcn32s-fixed', 'voc-fcn16s-learned-up', 'voc-fcn8s-learned-up'} == names  # the last: ablations
    for model in netgen.MODELS.values():
        assert model.dataset in {'voc', 'nyud', 'siftflow', 'pascalcontext', 'ilsvrc'}
        assert model.trunk in {'vgg16', 'caffenet', 'googlenet'}
        assert model.splits in {('train', 'val'), ('trainval', 'test'), ()}
    assert netgen.MODELS['voc-fcn8s'].init_from == 'voc-fcn16s'
    assert netgen.MODELS['voc-fcn32s'].init_from is None
    assert netgen.REPO == Path(netgen.__file__).resolve().parent.parent


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='fcn-netgen --list'):
        netgen.net('voc-fcn64s', 'train')
    with pytest.raises(ValueError, match='trainval'):
        netgen.net('voc-fcn32s', 'trainval')
    with pytest.raises(ValueError, match='width'):
        netgen.net('voc-fcn32s', 'train', width=0)
    with pytest.raises(ValueError, match="'sbdd_dir'"):
        netgen.net('voc-fcn32s', 'train', overrides={'nyud_dir': '/x'})
    with pytest.raises(ValueError, match='SolverParameter'):
        netgen.solver('voc-fcn32s', learning_rate=1)
    with pytest.raises(ValueError, match='no solver'):
        netgen.solver('ilsvrc-vgg16')


def test_solver_overrides():
    solver = netgen.solver('voc-fcn-alexnet', max_iter=10, test_iter=[3])
    assert (solver.max_iter, list(solver.test_iter), solver.iter_size) == (10, [3], 20)
    assert solver.base_lr == pytest.approx(1e-4)


def test_reduced_width_keeps_topology_and_classes():
    for name in FCNS:
        model = netgen.MODELS[name]
        full, small = netgen.net(name, model.splits[0]), netgen.net(name, model.splits[0], width=1 / 16)
        assert [(x.name, x.type, list(x.bottom), list(x.top)) for x in full.layer] == \
            [(x.name, x.type, list(x.bottom), list(x.top)) for x in small.layer]
        for a, b in zip(full.layer, small.layer, strict=True):
            same = a.name.startswith(('score', 'upscore')) or a.type == 'Deconvolution'
            if a.type in ('Convolution', 'Deconvolution') and same:
                assert a.convolution_param.num_output == b.convolution_param.num_output, a.name
            elif a.type == 'Convolution':
                assert b.convolution_param.num_output < a.convolution_param.num_output, a.name
            if a.type == 'Crop':
                assert list(a.crop_param.offset) == list(b.crop_param.offset), a.name


def test_multi_input_deploy_nets_take_one_top_per_modality():
    deploy = netgen.net('nyud-fcn32s-color-d', 'deploy')
    first = deploy.layer[0]
    assert (first.name, first.type, list(first.top)) == ('input', 'Input', ['color', 'depth'])
    assert [list(s.dim) for s in first.input_param.shape] == [[1, 3, 500, 500], [1, 1, 500, 500]]
    assert (deploy.layer[1].type, list(deploy.layer[1].bottom)) == ('Concat', ['color', 'depth'])
    assert list(netgen.net('nyud-fcn32s-color-hha', 'deploy').layer[0].top) == ['color', 'hha']


def test_deploy_nets_have_no_data_loss_or_dropout():
    for name in FCNS:
        deploy = netgen.net(name, 'deploy')
        assert (deploy.layer[0].name, deploy.layer[0].type) == ('input', 'Input')
        assert not {'Python', 'SoftmaxWithLoss', 'Dropout'} & {layer.type for layer in deploy.layer}, name


# --- geometry -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', FCNS)
def test_every_score_is_aligned_with_the_input(name):
    """The crops put output pixel 0 on input pixel 0 (coord_map's offsets, checked by an independent walk)."""
    rows = {row.layer: row.blob for row in geometry.walk(netgen.net(name, 'deploy'))}
    for task in netgen.MODELS[name].tasks:
        assert (rows[task.score].origin, rows[task.score].stride) == (0, 1), name


def test_classifier_receptive_field_of_googlenet_is_the_papers_907():
    """CVPR Table 1's 907 is GoogLeNet's with its final 7x7 average pooling; FCN-GoogLeNet discards that pooling,
    so its score layer sees 907 - 6 * 32 = 715 pixels."""
    rows = {row.layer: row.blob for row in geometry.walk(netgen.net('ilsvrc-googlenet', 'deploy'))}
    assert rows['pool5/7x7_s1'].rf == 907
    assert rows['inception_5b/output'].rf == 715


@pytest.mark.parametrize('name, depth, millions, rf, stride', [
    ('voc-fcn-alexnet', 8, 57, 355, 32),
    ('voc-fcn32s', 16, 134, 404, 32),
    ('voc-fcn-googlenet', 22, 6, 715, 32),
])
def test_info_gives_table_1(name, depth, millions, rf, stride):
    result = subprocess.run([sys.executable, '-m', 'netgen.cli', '--info', name], capture_output=True, text=True,
                            env=QUIET, cwd=netgen.REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    total = result.stdout.strip().splitlines()[-2]
    assert f'conv depth {depth},' in total and f'parameters {millions}.' in total, total
    assert f'receptive field {rf}, stride {stride}' in total, total
    assert 'score_fr' in total
    assert len(result.stdout.splitlines()) > 20  # one row per layer


# --- Caffe (in child processes: a failed Caffe CHECK aborts the process, not pytest) -----------------------------

def caffe_net(proto):
    """A caffe.Net (TEST phase) of the NetParameter `proto`, through a prototxt file as Caffe reads one."""
    import tempfile

    import caffe

    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(str(proto))
    return caffe.Net(f.name, caffe.TEST)


def print_instantiated_shapes(names):
    """For each model of the JSON list `names`: the committed deploy net's score shapes, reshaped to 500x500 and
    333x457, and those of a real forward pass at reduced width (61x47); printed as JSON."""
    import caffe
    import numpy as np

    caffe.set_random_seed(0)
    out = {}
    for name in json.loads(names):
        model = netgen.MODELS[name]
        shapes = {}
        net = caffe.Net(str(netgen.REPO / name / 'deploy.prototxt'), caffe.TEST)  # the committed file
        for h, w in ((500, 500), (333, 457)):
            for top, channels in model.inputs.items():
                net.blobs[top].reshape(1, channels, h, w)
            net.reshape()
            shapes[f'{h}x{w}'] = {t.score: list(net.blobs[t.score].shape) for t in model.tasks}
        del net
        small = caffe_net(netgen.net(name, 'deploy', width=1 / 16))  # a real forward pass, at reduced width
        for top, channels in model.inputs.items():
            small.blobs[top].reshape(1, channels, 61, 47)
            small.blobs[top].data[...] = np.random.RandomState(0).randn(1, channels, 61, 47)
        small.reshape()
        result = small.forward()
        shapes['forward'] = {t.score: list(result[t.score].shape) for t in model.tasks}
        out[name] = shapes
    print(json.dumps(out))


@pytest.fixture(scope='module')
def instantiated():
    return json.loads(checked(child(print_instantiated_shapes, json.dumps(FCNS))))


@pytest.mark.slow
@pytest.mark.parametrize('name', FCNS)
def test_deploy_net_instantiates_and_scores_at_the_input_size(instantiated, name):
    model = netgen.MODELS[name]
    for task in model.tasks:
        assert instantiated[name]['500x500'][task.score] == [1, task.classes, 500, 500]
        assert instantiated[name]['333x457'][task.score] == [1, task.classes, 333, 457]
        assert instantiated[name]['forward'][task.score] == [1, task.classes, 61, 47]


def print_param_shapes(pairs):
    """For each (model, reference prototxt or None) of the JSON list `pairs`: the parameter blob shapes of our deploy
    net and of the reference's, as Caffe builds them; printed as JSON."""
    import caffe

    def shapes(net):
        return {name: [list(b.shape) for b in blobs] for name, blobs in net.params.items()}

    out = {}
    for name, reference in json.loads(pairs):
        out[name] = [shapes(caffe_net(netgen.net(name, 'deploy'))),
                     shapes(caffe.Net(reference, caffe.TEST)) if reference else None]
    print(json.dumps(out))


VGG16_PARAMS = {  # VGG_ILSVRC_16_layers (Simonyan & Zisserman, configuration D)
    **{f'conv{s}_{i}': [[c, cin if i == 1 else c, 3, 3], [c]]
       for s, (c, cin, n) in enumerate([(64, 3, 2), (128, 64, 2), (256, 128, 3), (512, 256, 3), (512, 512, 3)], 1)
       for i in range(1, n + 1)},
    'fc6': [[4096, 25088], [4096]], 'fc7': [[4096, 4096], [4096]], 'fc8': [[1000, 4096], [1000]],
}


@pytest.mark.slow
def test_ilsvrc_nets_have_the_published_layer_names_and_shapes():
    caffenet = REFERENCE / 'ilsvrc' / 'bvlc_reference_caffenet.deploy.prototxt'
    googlenet = REFERENCE / 'ilsvrc' / 'bvlc_googlenet.deploy.prototxt'
    have = REFERENCE.is_dir()
    pairs = [('ilsvrc-vgg16', None), ('ilsvrc-caffenet', str(caffenet) if have else None),
             ('ilsvrc-googlenet', str(googlenet) if have else None)]
    out = json.loads(checked(child(print_param_shapes, json.dumps(pairs), timeout=300)))
    assert out['ilsvrc-vgg16'][0] == VGG16_PARAMS
    if not have:
        pytest.skip(f'reference ilsvrc nets not found at {REFERENCE / "ilsvrc"}; VGG16 checked')
    for name in ('ilsvrc-caffenet', 'ilsvrc-googlenet'):
        ours, published = out[name]
        assert list(ours) == list(published), name  # same learned layers, same names, same order
        assert ours == published, name
    assert len(out['ilsvrc-googlenet'][0]) == 57 + 1  # 57 convolutions and the classifier


@pytest.mark.parametrize('name', ['nyud-fcn32s-color-hha', 'nyud-fcn16s-color-hha'])
def test_two_stream_nets_finish_each_stream_before_the_next(name):
    """As the reference: conv1_1color ... score_frcolor, then conv1_1hha ... score_frhha (Caffe runs in file order)."""
    names = [layer.name for layer in netgen.net(name, 'trainval', width=1 / 16).layer]
    order = ['conv1_1color', 'drop7color', 'score_frcolor', 'conv1_1hha', 'drop7hha', 'score_frhha', 'score_fused']
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)


def test_table1_computes_the_papers_columns_and_times_a_forward_pass():
    result = subprocess.run([sys.executable, '-m', 'netgen.cli', '--table1', '--size', '64', '--repeat', '1'],
                            capture_output=True, text=True, env=QUIET, cwd=netgen.REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {line[:26].strip(): [cell.strip() for cell in line[26:].split('  ') if cell.strip()]
            for line in result.stdout.splitlines() if not line.startswith('note')}
    assert rows[''] == ['FCN-AlexNet', 'FCN-VGG16', 'FCN-GoogLeNet']
    assert rows['conv layers'] == ['8 | 8', '16 | 16', '22 | 22']
    assert rows['max stride'] == ['32 | 32'] * 3
    assert rows['receptive field'] == ['355 | 355', '404 | 404', '715 | 907']  # see the note: 907 - 6 * 32
    assert [cell.split(' | ')[0].split('.')[0] for cell in rows['parameters (M)']] == ['57', '134', '6']
    times = rows['forward ms (64x64)']
    assert [cell.split(' | ')[1] for cell in times] == ['50 K40c', '210 K40c', '59 K40c']
    assert all(float(cell.split(' | ')[0]) > 0 for cell in times)
    assert rows['mean IU (paper)'] == ['39.8', '56.0', '42.5']


def test_info_on_a_train_split_needs_no_dataset(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'netgen.cli', '--info', 'voc-fcn8s', '--split', 'train'],
                            capture_output=True, text=True, env=QUIET, cwd=tmp_path, timeout=300)  # no ../data here
    assert result.returncode == 0, result.stderr
    assert 'parameters 134.4M' in result.stdout and 'loss' in result.stdout


@pytest.mark.parametrize('override,words', [('mean=(1,2)', "key 'mean' must be a tuple of three finite numbers"),
                                            ('seed=x', "key 'seed' must be an integer")])
def test_data_overrides_are_checked_as_the_layer_will_check_them(tmp_path, override, words):
    result = subprocess.run([sys.executable, '-m', 'netgen.cli', 'voc-fcn8s', '--data', override, '--out',
                             str(tmp_path / 'out')], capture_output=True, text=True, env=QUIET, timeout=300)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert not (tmp_path / 'out').exists()


def test_parameter_counts_are_the_blobs_caffe_allocates():
    """geometry counts parameters from the graph alone (no Caffe in netgen): for every model, what Caffe sizes."""
    import math

    import surgery

    for name in netgen.MODELS:
        proto = netgen.net(name, 'deploy', 1 / 8)
        net = surgery.instantiate(proto)
        layers = {layer.name: layer for layer in proto.layer}
        fixed = {n for n, layer in layers.items() if layer.param and all(p.lr_mult == 0 for p in layer.param)}
        allocated = {n: 0 if n in fixed else sum(math.prod(b.shape) for b in blobs) for n, blobs in net.params.items()}
        assert geometry.parameter_counts(proto) == allocated, name
