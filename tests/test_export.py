"""fcn-export: every FCN model to ONNX and to a PyTorch module file, each checked against Caffe by the exporter
itself; then the files used as their users would, without this project; and the failures that leave nothing."""
import subprocess

import numpy as np
import pytest
from PIL import Image

import netgen
import surgery
from caffe_fcn.bench.worker import init_weights
from caffe_fcn.export import check
from caffe_fcn.export.cli import main
from caffe_fcn import registry
from bare import export_without_onnxruntime, use_the_torch_module
from common import child, child_command

pytest.importorskip('torch', reason='the export extra is not installed (pip install -e ".[export]")')
pytest.importorskip('onnxruntime', reason='the export extra is not installed (pip install -e ".[export]")')

WIDTH = '1/16'
SIZES = ['72x96', '57x83']  # the second odd in both
FCNS = [name for name, model in registry.MODELS.items() if model.splits]


def random_weights(path, model, width=1 / 16, seed=1):
    """A caffemodel of He-normal weights for the model's deploy net (scores that vary, unlike a stand-in's)."""
    net = surgery.instantiate(netgen.net(model, 'deploy', width))
    init_weights(net, seed)
    net.save(str(path))
    return path


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp('weights')
    return lambda model: random_weights(folder / f'{model}.caffemodel', model) \
        if not (folder / f'{model}.caffemodel').exists() else folder / f'{model}.caffemodel'


def run_export(model, weights, out, fmt, *extra):
    return main([model, '--weights', str(weights), '--width', WIDTH, '--format', fmt, '--out', str(out),
                 '--sizes', *SIZES, *extra])


def rows_of(text):
    """{(input, output): (relative error, agreement %)} from the exporter's printed table."""
    rows = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[0] == 'random':
            rows[(parts[1], parts[2])] = (float(parts[3]), float(parts[4].rstrip('%')))
    return rows


@pytest.mark.parametrize('fmt', ['onnx', 'torch'])
@pytest.mark.parametrize('model', FCNS)
def test_every_fcn_exports_and_matches_caffe(tmp_path, capsys, weights, model, fmt):
    out = tmp_path / (f'{model}.onnx' if fmt == 'onnx' else 'net.py')
    assert run_export(model, weights(model), out, fmt) == 0
    rows = rows_of(capsys.readouterr().out)
    scores = [t.score for t in registry.MODELS[model].tasks]
    assert sorted(rows) == sorted((size, score) for size in SIZES for score in scores)
    for error, agreement in rows.values():
        assert error < 1e-5 and agreement >= 99.9
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ([out.name] if fmt == 'onnx' else ['net.pt', 'net.py'])  # and no temporary left


def caffe_scores(model, weights, inputs):
    net = surgery.instantiate(netgen.net(model, 'deploy', 1 / 16), str(weights))
    return check.caffe_outputs(net, inputs)


def test_onnx_model_runs_any_size_and_batch(tmp_path, weights):
    """Dynamic batch, height and width: a batch of two at a size the check did not use, against Caffe image by
    image."""
    import onnx
    import onnxruntime

    model = 'nyud-fcn16s-color-hha'  # two inputs, late fusion
    out = tmp_path / 'net.onnx'
    assert run_export(model, weights(model), out, 'onnx') == 0
    graph = onnx.load(str(out)).graph
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input] == \
        [['batch', 3, 'height', 'width']] * 2
    session = onnxruntime.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    batch = check.random_inputs({'color': 3, 'hha': 3}, 45, 61, seed=7)
    second = check.random_inputs({'color': 3, 'hha': 3}, 45, 61, seed=8)
    (scores,) = session.run(['score'], {k: np.concatenate([batch[k], second[k]]) for k in batch})
    assert scores.shape == (2, 40, 45, 61)
    for i, inputs in enumerate([batch, second]):
        expected = caffe_scores(model, weights(model), inputs)['score']
        assert np.linalg.norm(scores[i:i + 1] - expected) / np.linalg.norm(expected) < 1e-5


def test_torch_module_needs_only_torch(tmp_path, weights):
    """The module file and its weights, copied elsewhere, used by an isolated interpreter (no project on its
    path): SIFT Flow's two outputs, the documented preprocess() and load()."""
    model = 'siftflow-fcn8s'
    out = tmp_path / 'export' / 'siftflow_fcn8s.py'
    assert run_export(model, weights(model), out, 'torch') == 0
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    for name in ('siftflow_fcn8s.py', 'siftflow_fcn8s.pt'):
        (elsewhere / name).write_bytes((out.parent / name).read_bytes())
    rgb = np.random.default_rng(3).integers(0, 256, (41, 53, 3), dtype=np.uint8)
    np.save(tmp_path / 'rgb.npy', rgb)
    python, *rest = child_command(use_the_torch_module, tmp_path / 'rgb.npy', tmp_path, path_first=elsewhere)
    result = subprocess.run([python, '-I', *rest], capture_output=True, text=True, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[0] == "('score_sem', 'score_geo') 33 3"
    from caffe_fcn.datalayers.datasets import preprocess
    expected = caffe_scores(model, weights(model), {'data': preprocess(rgb, registry.MODELS[model].mean)[None]})
    for name in ('sem', 'geo'):
        got = np.load(tmp_path / f'{name}.npy')
        assert np.linalg.norm(got - expected[f'score_{name}']) / np.linalg.norm(expected[f'score_{name}']) < 1e-5


def test_a_real_image_is_checked_too(tmp_path, capsys, weights):
    image = tmp_path / 'photo.png'
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (49, 75, 3), dtype=np.uint8)).save(image)
    assert run_export('voc-fcn32s', weights('voc-fcn32s'), tmp_path / 'net.onnx', 'onnx', '--image', str(image)) == 0
    assert 'photo.png 49x75' in capsys.readouterr().out


@pytest.mark.parametrize('fmt', ['onnx', 'torch'])
def test_an_export_that_differs_from_caffe_fails_and_writes_nothing(tmp_path, capsys, monkeypatch, weights, fmt):
    """A crop one pixel off (the hand-converted ports' classic slip) fails the check; the old file stays."""
    import caffe_fcn.export.graph

    offsets = caffe_fcn.export.graph.crop_offsets
    monkeypatch.setattr(caffe_fcn.export.graph, 'crop_offsets', lambda spec, rank=4: {a: o + 1 for a, o in
                                                                              offsets(spec, rank).items()})
    monkeypatch.setattr('caffe_fcn.export.onnx_graph.crop_offsets', caffe_fcn.export.graph.crop_offsets)
    monkeypatch.setattr('caffe_fcn.export.torch_source.crop_offsets', caffe_fcn.export.graph.crop_offsets)
    out = tmp_path / 'net.onnx' if fmt == 'onnx' else tmp_path / 'net.py'
    out.write_text('the previous export')
    assert run_export('voc-fcn8s', weights('voc-fcn8s'), out, fmt) == 1
    err = capsys.readouterr().err
    assert 'does not match Caffe' in err and 'nothing written' in err and 'Traceback' not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert out.read_text() == 'the previous export'


def test_nan_weights_are_refused(tmp_path, capsys):
    path = random_weights(tmp_path / 'w.caffemodel', 'voc-fcn32s')
    net = surgery.instantiate(netgen.net('voc-fcn32s', 'deploy', 1 / 16), str(path))
    net.params['fc7'][0].data[0, 0] = np.nan
    net.save(str(path))
    assert run_export('voc-fcn32s', path, tmp_path / 'net.onnx', 'onnx') == 2
    assert 'fc7' in capsys.readouterr().err
    assert not (tmp_path / 'net.onnx').exists()


@pytest.mark.parametrize('args, message', [
    (['--format', 'torch', '--out', 'my-net.py'], 'must be a Python identifier'),
    (['--image', 'photo.png'], 'takes color and hha images'),
    (['--sizes', '0x5', '9x9'], 'a check size is 1 to 4096'),
])
def test_bad_options_are_one_line(tmp_path, capsys, args, message):
    try:
        code = main(['nyud-fcn32s-color-hha', '--weights', 'w.caffemodel', *args])
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_extra_says_how_to_install(tmp_path):
    result = child(export_without_onnxruntime, tmp_path / 'n.onnx')
    assert result.returncode == 1
    assert result.stderr.strip() == ("fcn-export: error: --format onnx needs onnx and onnxruntime, which are not "
                                     "installed: pip install -e '.[export]' (make test installs them)")


def test_unsupported_layers_are_named():
    from caffe.proto import caffe_pb2

    from caffe_fcn.export.graph import Unsupported, graph
    net = caffe_pb2.NetParameter()
    net.layer.add(name='pool', type='Pooling').pooling_param.pool = caffe_pb2.PoolingParameter.AVE
    with pytest.raises(Unsupported, match='pool: only square MAX pooling'):
        graph(net)
    net.layer[0].type = 'InnerProduct'
    with pytest.raises(Unsupported, match='Caffe InnerProduct layers have no export'):
        graph(net)


def test_a_weights_file_name_cannot_write_code_into_the_module(tmp_path, weights):
    """The file name goes into the module's docstring: quotes and backslashes in it stay text."""
    hostile = tmp_path / 'w"""; import os; os.remove(__file__); """\\.caffemodel'
    hostile.write_bytes(weights('voc-fcn32s').read_bytes())
    assert run_export('voc-fcn32s', hostile, tmp_path / 'net.py', 'torch') == 0
    module = check.load_module(tmp_path / 'net.py')
    assert 'import os; os.remove' in module.__doc__ and (tmp_path / 'net.py').exists()
