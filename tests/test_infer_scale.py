"""fcn-infer at scale: the onnxruntime engine agrees with Caffe on every model family; an image whose pass would
not fit --max-memory is segmented in tiles that give the whole image's scores; class probabilities and
confidences are saved; shards split a folder without collisions and a rerun skips what is done; a corrupt image
in a folder is one line and the rest goes on; the peak memory estimate is Caffe's own allocation."""
import importlib.util
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from data_helpers import REFERENCE_DATA
from common import BIN, ENV, REPO
from test_hostile import WIDTH
from test_own_data import readme_commands

ORT = all(importlib.util.find_spec(m) for m in ('onnx', 'onnxruntime'))
DEMO = REFERENCE_DATA / 'demo' / 'image.jpg'


@pytest.fixture(scope='module')
def stand_ins(tmp_path_factory):
    """{model: He-scaled random weights of every layer at width 1/16} (fcn-surgery init's score layers are zero,
    which would make every score map constant and every comparison trivial), made once."""
    from caffe_fcn.bench.infer import he_weights

    folder = tmp_path_factory.mktemp('weights')
    made = {}

    def weights(model):
        if model not in made:
            made[model] = he_weights(model, 1 / 16, folder / f'{model}.caffemodel')
        return made[model]
    return weights


def infer(*args, env=None, timeout=600):
    return subprocess.run([str(BIN / 'fcn-infer'), *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, cwd='/', timeout=timeout)


def images(folder, n=3, size=(120, 160)):
    folder.mkdir(parents=True, exist_ok=True)
    demo = Image.open(DEMO)
    for i in range(n):
        demo.crop((i * 20, i * 10, i * 20 + 300, i * 10 + 225)).resize(size[::-1]).save(folder / f'im{i}.jpg')
    return folder


FAMILIES = [('voc-fcn8s', False), ('voc-fcn-alexnet', False), ('voc-fcn-googlenet', False),
            ('nyud-fcn32s-color-d', True), ('siftflow-fcn16s', False)]


@pytest.mark.skipif(not ORT, reason='the export extra (onnx, onnxruntime) is not installed')
@pytest.mark.parametrize('model,twins', FAMILIES, ids=[m for m, _ in FAMILIES])
def test_the_onnxruntime_engine_agrees_with_caffe(stand_ins, tmp_path, model, twins):
    photos, extra = images(tmp_path / 'photos', n=2), []
    if twins:  # NYUDv2: each photo (as PNG) with its depth twin of the same name, in millimetres, positive
        (tmp_path / 'twins').mkdir()
        for photo in list(photos.iterdir()):
            png = photo.with_suffix('.png')
            Image.open(photo).save(png)
            photo.unlink()
            depth = 1000 + np.asarray(Image.open(png).convert('L'), np.uint16) * 10
            Image.fromarray(depth).save(tmp_path / 'twins' / png.name)
        extra = ['--twins', tmp_path / 'twins']
    env = {**ENV, 'FCN_CACHE': str(tmp_path / 'cache')}
    outs = {}
    for engine in ('caffe', 'onnxruntime'):
        outs[engine] = tmp_path / engine
        result = infer(model, '--weights', stand_ins(model), '--width', WIDTH, photos, *extra, '--engine', engine,
                       '--save-scores', '--out', outs[engine], env=env)
        assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / 'cache' / 'onnx').glob(f'{model}-w0.0625-*.onnx'))) == 1  # cached by weights
    scores = sorted(p.name for p in outs['caffe'].glob('*.npy'))
    assert scores and scores == sorted(p.name for p in outs['onnxruntime'].glob('*.npy'))
    assert len(scores) == 2 * (2 if model.startswith('siftflow') else 1)  # SIFT Flow: semantics and geometry
    for name in scores:
        caffe, ort = (np.load(outs[e] / name).astype(np.float32) for e in ('caffe', 'onnxruntime'))
        assert caffe.shape == ort.shape and caffe.shape[1:] == (120, 160)
        np.testing.assert_allclose(caffe.sum(0), 1, atol=2e-2)  # probabilities (float16)
        assert np.abs(caffe - ort).max() < 2e-3
        assert (caffe.argmax(0) == ort.argmax(0)).mean() > 0.999


def test_tiles_give_the_whole_images_scores(stand_ins, tmp_path):
    """In process, float32: FCN-8s on a 1002 x 1500 image whole and in tiles of a 300 MB budget."""
    import netgen
    from solvers import engines, tiles
    from solvers.deploy import load_deploy_net, read_image
    from solvers.infer import model_inputs
    from caffe_fcn import registry

    model = registry.get('voc-fcn8s')
    Image.open(DEMO).resize((1500, 1002)).save(tmp_path / 'big.jpg', quality=95)
    net, proto = load_deploy_net(model, stand_ins('voc-fcn8s'), 1 / 16)
    assert proto == netgen.net(model, 'deploy', 1 / 16)
    rgb = read_image(tmp_path / 'big.jpg')
    inputs = model_inputs(model, tmp_path / 'big.jpg', rgb)
    engine = engines.Caffe(net)
    whole = engine.scores(inputs)['score']
    tile, margin = tiles.plan(proto, 1002, 1500, 300 << 20)
    assert (tile, margin) == (480, 256) and tiles.peak_memory(proto, 1002, 1500) > 300 << 20
    stitched = np.empty_like(whole)
    parts = list(tiles.tiled(engine.scores, inputs, tile, margin))
    for (y0, y1, x0, x1), got in parts:
        stitched[:, y0:y1, x0:x1] = got['score']
    assert len(parts) == 12  # 3 rows x 4 columns
    assert np.ptp(whole) > 0 and len(np.unique(whole.argmax(0))) > 2  # scores that say something
    error = np.abs(stitched - whole).max() / np.abs(whole).max()
    agreement = (stitched.argmax(0) == whole.argmax(0)).mean()
    print(f'tiles: {len(parts)} of {tile} px with {margin} px context; max relative error {error:.1e}, argmax '
          f'agreement {100 * agreement:.4f}%')
    assert error < 1e-5 and agreement > 0.999


def test_max_memory_tiles_from_the_command_line_and_refuses_too_little(stand_ins, tmp_path):
    Image.open(DEMO).resize((1500, 1002)).save(tmp_path / 'big.jpg', quality=95)
    weights = stand_ins('voc-fcn8s')
    for out, budget in (('whole', []), ('tiled', ['--max-memory', '300M'])):
        result = infer('voc-fcn8s', '--weights', weights, '--width', WIDTH, tmp_path / 'big.jpg', '--out',
                       tmp_path / out, '--save-scores', '--scores-format', 'top1', '--report', tmp_path / f'{out}.json',
                       *budget)
        assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / 'tiled.json').read_text())['tiled'] == 1
    assert json.loads((tmp_path / 'whole.json').read_text())['tiled'] == 0
    whole, tiled = (np.array(Image.open(tmp_path / o / 'big.png')) for o in ('whole', 'tiled'))
    assert (whole == tiled).mean() > 0.999
    confidence = Image.open(tmp_path / 'tiled' / 'big_confidence.png')
    assert confidence.mode == 'L' and confidence.size == (1500, 1002)
    assert np.array(confidence).min() >= 255 // 21  # the winner of 21 classes has 1/21 at least
    result = infer('voc-fcn8s', '--weights', weights, '--width', WIDTH, tmp_path / 'big.jpg', '--out',
                   tmp_path / 'none', '--max-memory', '20M')
    assert result.returncode == 2 and 'below what one tile needs' in result.stderr and 'MB (32-pixel tiles' in \
        result.stderr, result.stderr
    assert not (tmp_path / 'none').exists()


def test_shards_cover_every_image_once_and_a_rerun_skips_what_is_done(stand_ins, tmp_path):
    photos = images(tmp_path / 'photos', n=7, size=(64, 80))
    weights = stand_ins('voc-fcn32s')
    for k in (1, 2, 3):
        result = infer('voc-fcn32s', '--weights', weights, '--width', WIDTH, photos, '--out', tmp_path / 'out',
                       '--shard', f'{k}/3', '--report', tmp_path / f'{k}.json')
        assert result.returncode == 0, result.stderr[-2000:]
    counts = [json.loads((tmp_path / f'{k}.json').read_text())['images'] for k in (1, 2, 3)]
    assert counts == [3, 2, 2]
    assert sorted(p.name for p in (tmp_path / 'out').glob('*_overlay.png')) == [f'im{i}_overlay.png' for i in range(7)]
    (tmp_path / 'out' / 'im3.png').unlink()  # as if shard 1 had been killed before im3's label map
    result = infer('voc-fcn32s', '--weights', weights, '--width', WIDTH, photos, '--out', tmp_path / 'out',
                   '--shard', '1/3', '--skip-done', '--report', tmp_path / 'again.json')
    again = json.loads((tmp_path / 'again.json').read_text())
    assert result.returncode == 0 and (again['images'], again['skipped_done']) == (1, 2)
    assert (tmp_path / 'out' / 'im3.png').is_file()
    for bad in ('0/3', '4/3', 'x'):
        result = infer('voc-fcn32s', '--weights', weights, photos, '--out', tmp_path / 'out', '--shard', bad)
        assert result.returncode == 2 and '--shard takes K/N' in result.stderr


def test_a_corrupt_image_in_a_folder_is_one_line_and_the_rest_goes_on(stand_ins, tmp_path):
    photos = images(tmp_path / 'photos', n=3, size=(64, 80))
    data = (photos / 'im1.jpg').read_bytes()
    (photos / 'im1.jpg').write_bytes(data[:len(data) // 3])  # truncated: the header reads, the pixels do not
    (photos / 'im2.jpg').write_bytes(b'not an image')
    weights = stand_ins('voc-fcn32s')
    result = infer('voc-fcn32s', '--weights', weights, '--width', WIDTH, photos, '--out', tmp_path / 'out')
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 2 and any('im1.jpg' in e for e in errors) and any('im2.jpg' in e for e in errors)
    assert '2 failed' in result.stderr and (tmp_path / 'out' / 'im0.png').is_file()
    single = infer('voc-fcn32s', '--weights', weights, '--width', WIDTH, photos / 'im2.jpg', '--out', tmp_path / 'x')
    assert single.returncode == 2 and 'im2.jpg' in single.stderr and 'Traceback' not in single.stderr


def test_the_peak_memory_is_what_caffe_allocates(stand_ins):
    """The activations estimated from the graph are the bytes of the blobs Caffe allocates at that size."""
    import netgen
    from netgen import geometry
    from solvers.deploy import forward
    import surgery

    for name, (h, w) in (('voc-fcn8s', (200, 300)), ('voc-fcn-googlenet', (187, 251))):
        proto = netgen.net(name, 'deploy', 1 / 16)
        net = surgery.instantiate(proto)
        forward(net, {'data': np.zeros((3, h, w), np.float32)})
        shared = {top for layer, (name, tops) in zip(net.layers, net.top_names.items(), strict=True)
                  if layer.type == 'Split' for top in tops}  # Caffe's Split tops share their bottom's data
        allocated = 4 * sum(blob.count for name, blob in net.blobs.items() if name not in shared)
        assert geometry.forward_memory(proto, h, w)[0] == allocated, name
    result = subprocess.run([str(BIN / 'fcn-netgen'), '--info', 'voc-fcn8s', '--size', '500x500'],
                            capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert result.returncode == 0 and 'forward pass at 500x500, beyond the weights: CPU 623 MB' in result.stdout


@pytest.mark.skipif(not ORT, reason='the export extra (onnx, onnxruntime) is not installed')
@pytest.mark.skipif(not (REPO / '.venv' / 'bin').is_dir(), reason="the README's commands name .venv/bin")
def test_the_readme_commands_run_as_written(tmp_path):
    commands = readme_commands('Segmenting many images, large ones, on many machines')
    assert len(commands) == 5
    env = {**ENV, 'FCN_CACHE': str(tmp_path / 'cache')}
    for command in commands:
        result = subprocess.run(command.replace('/tmp/fcn-many', str(tmp_path)), shell=True, capture_output=True,
                                text=True, cwd=REPO, env=env, timeout=900)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    assert len(list((tmp_path / 'seg').glob('*.npy'))) == 12 and len(list((tmp_path / 'tiles').glob(
        '*_confidence.png'))) == 12
    assert 'forward pass at 2048x2048' in result.stdout
