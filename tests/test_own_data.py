"""Your own data: a folder of images and masks (made here in the real formats, with the real VOC image and label
of ../shared/reference-data/demo among them) and a dataset declared in one Python file both train through
fcn-train, score, segment and (the folder one) export, with no code; --stages chains the stages on their best
weights; --from published keeps the rows of the classes a dataset shares with PASCAL, bit for bit."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_helpers import REFERENCE_DATA
from common import BIN, ENV, REPO, child
from test_hostile import tool
from test_published import publish
from test_toy_dataset import print_toy_data

WIDTH = '1/16'
EXPORT = all(importlib.util.find_spec(m) for m in ('torch', 'onnx', 'onnxruntime'))
TOY = REPO / 'tests' / 'toy' / 'toy_dataset.py'


def make_folder(root, names, count=6, size=(48, 64), demo=False):
    """A folder dataset: JPEG photos, palette PNG labels (classes 0..len(names)-1 in squares, void 255 borders),
    classes.txt; with `demo`, the real VOC image and label as one more pair."""
    from caffe_fcn.datalayers.io import write_label_png

    rng = np.random.default_rng(0)
    (root / 'images').mkdir(parents=True)
    for i in range(count):
        label = np.zeros(size, np.uint8)
        for k in range(1, len(names)):
            y, x = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
            label[y:y + size[0] // 3, x:x + size[1] // 3] = k
        label[0] = 255
        rgb = (label[..., None] * np.array([40, 90, 20]) % 256 + rng.integers(0, 30, (*size, 3))).astype(np.uint8)
        Image.fromarray(rgb).save(root / 'images' / f'img{i}.jpg', quality=95)
        write_label_png(root / 'labels' / f'img{i}.png', label)
    if demo:
        shutil.copy(REFERENCE_DATA / 'demo' / 'image.jpg', root / 'images' / 'demo.jpg')
        shutil.copy(REFERENCE_DATA / 'demo' / 'label.png', root / 'labels' / 'demo.png')
    (root / 'classes.txt').write_text(''.join(f'{n}\n' for n in names))
    return root


def data_tool(*args):
    return tool(BIN / 'fcn-data', *args)


@pytest.fixture(scope='module')
def voc_like(tmp_path_factory):
    """A folder dataset with VOC's 21 class names, the real demo pair among its images, split and its stats."""
    from caffe_fcn import registry

    root = make_folder(tmp_path_factory.mktemp('own') / 'mine', registry.VOC_CLASSES, demo=True)
    assert data_tool('split', root, '--val', '0.3', '--seed', '1').returncode == 0
    (root / 'val.txt').write_text('demo\n' + (root / 'val.txt').read_text())  # the real pair is scored
    (root / 'train.txt').write_text(''.join(f'{i}\n' for i in (root / 'train.txt').read_text().split() if i != 'demo'))
    result = data_tool('stats', root)
    assert result.returncode == 0, result.stderr
    return root


def test_split_stats_and_check_write_what_the_data_says(voc_like):
    train, val = ((voc_like / f'{s}.txt').read_text().split() for s in ('train', 'val'))
    assert sorted(train + val) == sorted(p.stem for p in (voc_like / 'images').iterdir()) and not set(train) & set(val)
    stats = json.loads((voc_like / 'dataset.json').read_text())
    pixels = [np.array(Image.open(voc_like / 'images' / f'{i}.jpg').convert('RGB'), np.float64) for i in train]
    mean_bgr = (sum(p.sum((0, 1)) for p in pixels) / sum(p.shape[0] * p.shape[1] for p in pixels))[::-1]
    np.testing.assert_allclose(stats['mean'], mean_bgr, atol=1e-4)
    demo = np.array(Image.open(REFERENCE_DATA / 'demo' / 'label.png'))
    assert stats['pixels']['val']['person'] >= (demo == 15).sum() > 0 and stats['sizes']['500x334'] == 1
    result = data_tool('check', voc_like)
    assert result.returncode == 0 and 'no problems found' in result.stdout, result.stdout + result.stderr


def test_the_folder_layer_feeds_the_files_bit_for_bit(voc_like):
    from caffe_fcn.datalayers.datasets import Folder

    reader = Folder(voc_like)
    sample = reader.load('demo')
    rgb = np.array(Image.open(REFERENCE_DATA / 'demo' / 'image.jpg'), np.float32)
    expected = (rgb[:, :, ::-1] - np.array(reader.declared.means['color'], np.float32)).transpose(2, 0, 1)
    assert sample['data'].tobytes() == expected.astype(np.float32).tobytes()
    assert (sample['label'][0] == np.array(Image.open(REFERENCE_DATA / 'demo' / 'label.png'))).all()


def train(*args, cwd='/'):
    return subprocess.run([str(BIN / 'fcn-train'), *map(str, args)], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=900)


def start_weights(tmp_path, dataset):
    out = tmp_path / 'start.caffemodel'
    result = tool(BIN / 'fcn-surgery', 'init', 'voc-fcn32s', '--random', '--dataset', dataset, '--width', WIDTH,
                  '--out', out)
    assert result.returncode == 0, result.stderr
    return out


def test_stages_train_score_segment_and_export_a_folder_dataset(voc_like, tmp_path):
    import netgen
    import surgery
    from caffe_fcn import registry

    result = train('voc-fcn8s', '--dataset', voc_like, '--stages', '--weights', start_weights(tmp_path, voc_like),
                   '--width', WIDTH, '--rounds', '1', '--steps', '2', '--out', tmp_path / 'runs')
    assert result.returncode == 0, result.stderr[-3000:]
    assert "voc-fcn16s: base_lr 6.1e-11, the reference's 1e-12 scaled by PASCAL's 187500 pixels" in result.stdout
    data = registry.folder_dataset(voc_like)
    nets = {}
    for stage in ('voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s'):
        run = tmp_path / 'runs' / stage
        record = json.loads((run / 'run.json').read_text())
        assert record['dataset'] == str(voc_like.resolve()) and record['model'] == stage
        model = registry.for_dataset(stage, data)
        nets[stage] = surgery.instantiate(netgen.net(model, 'deploy', 1 / 16), weights=str(run / 'best.caffemodel'))
        (row,) = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
        assert list(row['scores']['score']['per_class_iu'])[:3] == ['background', 'aeroplane', 'bicycle']
    for previous, stage in (('voc-fcn32s', 'voc-fcn16s'), ('voc-fcn16s', 'voc-fcn8s')):
        record = json.loads((tmp_path / 'runs' / stage / 'run.json').read_text())
        assert record['weights'] == str(tmp_path / 'runs' / previous / 'best.caffemodel')
        # score_fr starts at zero and learns in FCN-32s; a later stage moves it by far less than it holds
        before, after = (nets[s].params['score_fr'][0].data for s in (previous, stage))
        assert np.abs(before).max() > 1e-4 and np.abs(after - before).max() < 0.05 * np.abs(before).max()
    run = tmp_path / 'runs' / 'voc-fcn8s'
    scored = tool(BIN / 'fcn-score', '--run', run, '--json', tmp_path / 'score.json')
    assert scored.returncode == 0, scored.stderr
    assert 'person' in json.loads((tmp_path / 'score.json').read_text())['score']['per_class_iu']
    segmented = tool(BIN / 'fcn-infer', '--run', run, voc_like / 'images' / 'demo.jpg', '--out', tmp_path / 'seg')
    assert segmented.returncode == 0, segmented.stderr
    assert Image.open(tmp_path / 'seg' / 'demo.png').size == (334, 500)
    if EXPORT:
        exported = tool(BIN / 'fcn-export', '--run', run, '--format', 'torch', '--out', tmp_path / 'mine8s.py')
        assert exported.returncode == 0, exported.stderr[-2000:]
        assert "'person'" in (tmp_path / 'mine8s.py').read_text()  # the module's CLASSES are the folder's


def test_a_dataset_declared_in_one_file_trains_scores_and_segments_by_its_path(tmp_path):
    made = child(print_toy_data, tmp_path / 'data', env=ENV, timeout=300)  # its declarations stay out of here
    assert made.returncode == 0, made.stderr
    root = Path(made.stdout.strip())
    start = tmp_path / 'start.caffemodel'
    assert tool(BIN / 'fcn-surgery', 'init', 'voc-fcn32s', '--random', '--dataset', TOY, '--width', WIDTH,
                '--out', start).returncode == 0
    out = tmp_path / 'run'
    result = train('voc-fcn32s', '--dataset', TOY, '--weights', start, '--width', WIDTH, '--data-root', root,
                   '--steps', '2', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / 'run.json').read_text())['dataset'] == str(TOY)
    scored = tool(BIN / 'fcn-score', '--run', out, '--data-root', root)
    assert scored.returncode == 0 and 'square' in scored.stdout, scored.stderr
    image = root / 'toy' / 'images' / 'toy000.png'
    segmented = tool(BIN / 'fcn-infer', '--run', out, image, '--out', tmp_path / 'seg')
    assert segmented.returncode == 0 and (tmp_path / 'seg' / 'toy000_overlay.png').is_file(), segmented.stderr


def train_from_published(*args):
    """What the fcn-train console script runs, on ARGS, its status the exit status, once voc-fcn32s-fixed's weights
    are published (at a host that is gone: --mirror serves them)."""
    publish('http://gone.invalid/w.caffemodel')
    from solvers.driver import train_command
    sys.exit(train_command(list(args)))


def test_from_published_keeps_the_rows_of_the_shared_classes_bit_for_bit(server, tmp_path):
    import netgen
    import surgery
    from caffe_fcn import registry

    net = surgery.instantiate(netgen.net('voc-fcn32s-fixed', 'deploy', width=1 / 16))
    surgery.stand_in_trunk(net, seed=0)
    rng = np.random.default_rng(0)
    for blob in net.params['score_fr']:
        blob.data[...] = rng.normal(0, 0.01, blob.data.shape)
    net.save(str(tmp_path / 'w.caffemodel'))
    server.files['w.caffemodel'] = (tmp_path / 'w.caffemodel').read_bytes()
    root = make_folder(tmp_path / 'three', ('background', 'zebra', 'cat'))
    assert data_tool('split', root).returncode == 0
    result = child(train_from_published, 'voc-fcn32s-fixed', '--dataset', root, '--from', 'published', '--mirror',
                   server.url, '--width', WIDTH, '--rounds', '1', '--steps', '1', '--base-lr', '1e-30', '--out',
                   tmp_path / 'run', env={**ENV, 'FCN_CACHE': str(tmp_path / 'cache')}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'classes kept from it: background, cat' in result.stdout
    model = registry.for_dataset('voc-fcn32s-fixed', registry.folder_dataset(root))
    trained = surgery.instantiate(netgen.net(model, 'deploy', 1 / 16),
                                  weights=str(tmp_path / 'run' / 'best.caffemodel'))
    for new, old in ((0, 0), (2, registry.VOC_CLASSES.index('cat'))):
        for blob, source in zip(trained.params['score_fr'], net.params['score_fr'], strict=True):
            assert blob.data[new].tobytes() == source.data[old].tobytes()
    assert np.abs(trained.params['score_fr'][0].data[1]).max() < 1e-20  # zebra: new, from zero
    assert trained.params['conv1_1'][0].data.tobytes() == net.params['conv1_1'][0].data.tobytes()


def broken(root, how):
    """A split folder dataset of three classes, broken one way."""
    from caffe_fcn.datalayers.io import write_label_png

    make_folder(root, ('background', 'a', 'b'), count=4)
    (root / 'train.txt').write_text('img0\nimg1\nimg2\n')
    (root / 'val.txt').write_text('img3\n')
    if how == 'no label':
        (root / 'labels' / 'img1.png').unlink()
    elif how == 'no image':
        (root / 'images' / 'img2.jpg').unlink()
    elif how == 'other size':
        write_label_png(root / 'labels' / 'img1.png', np.zeros((10, 10), np.uint8))
    elif how == 'value':
        write_label_png(root / 'labels' / 'img1.png', np.full((48, 64), 7, np.uint8))
    elif how == 'rgb':
        Image.new('RGB', (64, 48)).save(root / 'labels' / 'img1.png')
    elif how == 'twice':
        (root / 'classes.txt').write_text('background\na\na\n')
    elif how == 'empty name':
        (root / 'classes.txt').write_text('background\n\nb\n')
    elif how == 'too many':
        (root / 'classes.txt').write_text(''.join(f'c{i}\n' for i in range(256)))
    elif how == 'empty split':
        (root / 'val.txt').write_text('\n')
    elif how == 'not an image':
        (root / 'images' / 'notes.txt').write_text('hello')
    elif how == 'separator':
        (root / 'train.txt').write_text('img0\n../img1\n')
    return root


@pytest.mark.parametrize('how, words', [
    ('no label', 'labels/img1.png is missing'), ('no image', 'images/img2.jpg or .png is missing'),
    ('other size', 'is 48x64 but its label'), ('value', 'label values [7] are outside the 3 classes'),
    ('rgb', 'RGB colour image, not class indices'), ('twice', "'a' given twice"), ('empty name', 'line 2 is empty'),
    ('too many', 'names 256 classes; at most 255'), ('empty split', 'val.txt lists no images'),
    ('not an image', 'notes.txt is not an image'), ('separator', "'../img1'"),
])
def test_a_broken_folder_dataset_is_one_line_naming_the_file(tmp_path, how, words):
    root = broken(tmp_path / 'd', how)
    trained = train('voc-fcn32s', '--dataset', root, '--width', WIDTH, '--steps', '1', '--weights',
                    tmp_path / 'none.caffemodel', '--out', tmp_path / 'r')
    for result in (data_tool('check', root), trained):
        assert result.returncode in (1, 2), result.stderr
        assert words in result.stdout + result.stderr, (how, result.stdout, result.stderr)
        assert 'Traceback' not in result.stderr
    assert not (root / 'dataset.json').exists() or how in ('no image', 'other size', 'value', 'rgb', 'not an image')


def test_an_id_in_both_splits_is_a_warning_and_a_dataset_that_is_not_one_is_refused(tmp_path):
    root = broken(tmp_path / 'd', None)
    (root / 'val.txt').write_text('img3\nimg0\n')
    result = data_tool('check', root)
    assert result.returncode == 0 and "in both train.txt and val.txt (e.g. 'img0')" in result.stderr
    (tmp_path / 'plain').mkdir()
    for args in (('check', tmp_path / 'plain'), ('stats', tmp_path / 'plain')):
        result = data_tool(*args)
        assert result.returncode == 2 and 'classes.txt' in result.stderr and 'Traceback' not in result.stderr
    result = tool(BIN / 'fcn-score', 'voc-fcn8s', '--dataset', tmp_path / 'plain')
    assert result.returncode == 2 and 'classes.txt not found' in result.stderr


def test_weights_for_another_class_count_name_both_counts(voc_like, tmp_path):
    weights = tmp_path / 'three.caffemodel'
    three = make_folder(tmp_path / 'three', ('background', 'a', 'b'))
    assert data_tool('split', three).returncode == 0
    assert tool(BIN / 'fcn-surgery', 'init', 'voc-fcn8s', '--random', '--dataset', three, '--width', WIDTH,
                '--out', weights).returncode == 0
    result = tool(BIN / 'fcn-score', 'voc-fcn8s', '--dataset', voc_like, '--weights', weights, '--width', WIDTH)
    assert result.returncode == 2 and 'trained for 3 classes' in result.stderr and 'this net has 21' in result.stderr


def test_split_draws_with_its_seed_and_fills_in_the_missing_file(tmp_path):
    root = make_folder(tmp_path / 'd', ('background', 'a'), count=10)
    assert data_tool('split', root, '--val', '0.3', '--seed', '5').returncode == 0
    first = [(root / f'{s}.txt').read_text() for s in ('train', 'val')]
    assert len(first[1].split()) == 3 and data_tool('split', root).returncode == 2  # both there: left alone
    (root / 'val.txt').unlink()
    assert data_tool('split', root).returncode == 0 and (root / 'val.txt').read_text() == first[1]
    (root / 'train.txt').unlink()
    (root / 'val.txt').unlink()
    assert data_tool('split', root, '--val', '0.3', '--seed', '5').returncode == 0
    assert [(root / f'{s}.txt').read_text() for s in ('train', 'val')] == first


def readme_commands(section, block=0):
    """The shell commands of the README's sh block number `block` under `section`, continuation lines joined."""
    text = (REPO / 'README.md').read_text().split(f'\n## {section}\n', 1)[1].split('\n## ', 1)[0]
    block = text.split('```sh\n')[block + 1].split('```', 1)[0]
    return [line.split('  #')[0].strip() for line in block.replace('\\\n', ' ').splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / '.venv' / 'bin').is_dir(), reason="the README's commands name .venv/bin")
def test_the_readme_own_data_commands_run_as_written(tmp_path):
    commands = readme_commands('Your own data')
    assert commands[0].startswith('.venv/bin/fcn-data synth folder') and len(commands) == 9
    for command in commands:
        if 'fcn-export' in command and not EXPORT:
            continue
        result = subprocess.run(command.replace('/tmp/fcn-own', str(tmp_path)), shell=True, capture_output=True,
                                text=True, cwd=REPO, env=ENV, timeout=900)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    scores = [json.loads(line)['scores']['score']['mean_iu']
              for line in (tmp_path / 'photos' / 'runs' / 'voc-fcn8s' / 'log.jsonl').read_text().splitlines()]
    assert scores[-1] > 0.3  # learned beyond predicting background everywhere
    assert len(list((tmp_path / 'seg').glob('*_overlay.png'))) == 40 and (tmp_path / 'photos-fcn8s.onnx').is_file()
