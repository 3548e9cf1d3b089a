"""Synthetic datasets: the real layouts and formats, determinism, learnable content; fcn-data synth/check."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import scipy.ndimage as ndi
from data_helpers import mat, png, split_ids
from PIL import Image

from caffe_fcn.datalayers.cli import main
from caffe_fcn.datalayers.synth import SIFTFLOW_SUBDIR, dir_overrides, synthesize

DATASETS = ('voc', 'sbdd', 'nyud', 'siftflow', 'pascalcontext')


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('dataset', DATASETS)
def test_deterministic_for_a_seed(tmp_path, dataset):
    a = synthesize(dataset, tmp_path / 'a', count=4, seed=5, size=(32, 32))
    b = synthesize(dataset, tmp_path / 'b', count=4, seed=5, size=(32, 32))
    c = synthesize(dataset, tmp_path / 'c', count=4, seed=6, size=(32, 32))
    assert files(a) == files(b)
    assert files(a) != files(c)


def test_voc_layout(tmp_path):
    root = synthesize('voc', tmp_path, count=8, seed=0)
    assert root == tmp_path / 'VOC2011'
    splits = {s: split_ids(root / f'ImageSets/Segmentation/{s}.txt') for s in
              ('train', 'val', 'trainval', 'seg11valid')}
    assert sorted(splits['train'] + splits['val']) == sorted(splits['trainval'])
    assert set(splits['seg11valid']) < set(splits['val'])
    for id_ in splits['trainval']:
        assert Image.open(root / 'JPEGImages' / f'{id_}.jpg').format == 'JPEG'
        for folder in ('SegmentationClass', 'SegmentationObject'):
            label = Image.open(root / folder / f'{id_}.png')
            assert label.mode == 'P' and label.size == Image.open(root / 'JPEGImages' / f'{id_}.jpg').size
    assert Image.open(root / 'SegmentationClass' / f'{id_}.png').getpalette()[3:6] == [128, 0, 0]


def test_sbdd_layout_shares_images_with_voc(tmp_path):
    voc = synthesize('voc', tmp_path / 'pascal', count=8, seed=0)
    root = synthesize('sbdd', tmp_path / 'sbdd', count=8, seed=0)
    assert root == tmp_path / 'sbdd' / 'dataset'
    train, val = split_ids(root / 'train.txt'), split_ids(root / 'val.txt')
    assert not set(train) & set(val)
    assert not set(train) & set(split_ids(voc / 'ImageSets/Segmentation/seg11valid.txt'))
    gt = scipy.io.loadmat(root / 'cls' / f'{train[0]}.mat')['GTcls']
    assert set(gt.dtype.names) == {'Boundaries', 'Segmentation', 'CategoriesPresent'}
    segmentation = gt[0]['Segmentation'][0]
    assert segmentation.dtype == np.uint8 and gt[0]['Boundaries'][0].shape == (20, 1)
    # the same id is the same picture, and VOC's label is SBD's plus a void band
    voc_label = png(voc / 'SegmentationClass' / f'{train[0]}.png')
    assert np.array_equal(voc_label[voc_label != 255], segmentation[voc_label != 255])
    assert (voc_label == 255).any() and not (segmentation == 255).any()


def test_nyud_layout(tmp_path):
    root = synthesize('nyud', tmp_path, count=8, seed=0, size=(30, 40))
    ids = split_ids(root / 'trainval.txt') + split_ids(root / 'test.txt')
    assert sorted(split_ids(root / 'train.txt') + split_ids(root / 'val.txt')) == split_ids(root / 'trainval.txt')
    id_ = ids[0]
    assert Image.open(root / f'data/images/img_{id_}.png').mode == 'RGB'
    depth = Image.open(root / f'data/depth/img_{id_}.png')
    assert depth.mode.startswith('I;16') and np.array(depth).min() > 0
    assert Image.open(root / f'data/hha/img_{id_}.png').mode == 'RGB'
    label = mat(root / f'segmentation/img_{id_}.mat', 'segmentation')
    assert label.shape == (30, 40) and label.dtype == np.uint8 and label.max() <= 40 and (label == 0).any()


def test_siftflow_layout(tmp_path):
    root = synthesize('siftflow', tmp_path, count=8, seed=0)
    id_ = split_ids(root / 'trainval.txt')[0]
    assert Image.open(root / 'Images' / SIFTFLOW_SUBDIR / f'{id_}.jpg').size == (96, 96)
    sem = scipy.io.loadmat(root / 'SemanticLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat')
    geo = scipy.io.loadmat(root / 'GeoLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat')
    assert sem['names'].size == 33 and geo['names'].size == 3
    assert sem['S'].max() <= 33 and set(np.unique(geo['S'])) <= {-1, 1, 2, 3}
    assert np.array_equal(sem['S'] == 0, geo['S'] == -1)


def test_pascalcontext_layout(tmp_path):
    root = synthesize('pascalcontext', tmp_path / 'pascal-context', count=8, seed=0)
    assert (tmp_path / 'pascal' / 'VOC2010').is_dir(), 'VOC2010 goes where the nets read it, data/pascal/VOC2010'
    assert len((root / '59_labels.txt').read_text().splitlines()) == 59
    raw = (root / 'labels.txt').read_text()
    assert ': table\n' in raw and ': bedclothes\n' in raw and ': air conditioner\n' in raw
    id_ = split_ids(tmp_path / 'pascal/VOC2010/ImageSets/Main/train.txt')[0]
    assert (tmp_path / 'pascal/VOC2010/JPEGImages' / f'{id_}.jpg').is_file()
    raw_ids = {name.strip(): int(n) for n, name in (line.split(':') for line in raw.splitlines())}
    used = {raw_ids[name] for name in ('sky', 'grass', 'person', 'table', 'cat', 'air conditioner')}
    assert set(np.unique(mat(root / 'trainval' / f'{id_}.mat', 'LabelMap')).tolist()) <= used  # raw labels


@pytest.mark.parametrize('model, folders', [('voc-fcn32s', {'sbdd': 'sbdd', 'voc': 'pascal'}),
                                             ('nyud-fcn32s-color-hha', {'nyud': 'nyud'}),
                                             ('siftflow-fcn32s', {'siftflow': 'sift-flow'}),
                                             ('pascalcontext-fcn32s', {'pascalcontext': 'pascal-context'})])
def test_synth_into_the_data_folder_is_what_the_nets_read(model, folders, tmp_path, capsys):
    """`fcn-data synth D --out DATA/<its folder>` for each dataset a model reads: `--data-root DATA` finds
    every folder, and each split's data layer reads an image from it."""
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    import netgen
    from caffe_fcn import registry
    from solvers import runs

    for dataset, folder in folders.items():
        assert main(['synth', dataset, '--out', str(tmp_path / 'data' / folder), '--count', '4', '--size', '32x32']) \
            == 0
    model = registry.get(model)
    dirs = runs.data_dirs(model, tmp_path / 'data')  # a SetupError naming the folder where one is missing
    for split in model.splits:
        net = caffe_pb2.NetParameter(name=split)
        net.layer.add().CopyFrom(netgen.net(model, split, overrides=dirs).layer[0])
        (tmp_path / f'{split}.prototxt').write_text(text_format.MessageToString(net))
        caffe.Net(str(tmp_path / f'{split}.prototxt'), caffe.TRAIN).forward()


def test_content_is_learnable_from_color_alone(tmp_path):
    """Nearest class-mean color of smoothed pixels, fit on train, must label val pixels far above chance."""
    root = synthesize('voc', tmp_path, count=16, seed=0)

    def pixels(split):
        xs, ys = [], []
        for id_ in split_ids(root / f'ImageSets/Segmentation/{split}.txt'):
            rgb = ndi.uniform_filter(png(root / 'JPEGImages' / f'{id_}.jpg').astype(float), size=(7, 7, 1))
            label = png(root / 'SegmentationClass' / f'{id_}.png')
            xs.append(rgb[label != 255])
            ys.append(label[label != 255])
        return np.concatenate(xs), np.concatenate(ys)

    x, y = pixels('train')
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    x, y = pixels('val')
    predicted = classes[np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)]
    ious = [((predicted == c) & (y == c)).sum() / ((predicted == c) | (y == c)).sum() for c in np.unique(y)]
    assert np.mean(ious) > 0.9


@pytest.mark.parametrize('count, size, message', [(3, None, 'count must be'), (8, (8, 8), 'size must be')])
def test_bad_synth_arguments(tmp_path, count, size, message):
    with pytest.raises(ValueError, match=message):
        synthesize('voc', tmp_path, count=count, size=size)
    with pytest.raises(ValueError, match='unknown dataset'):
        synthesize('coco', tmp_path)


@pytest.mark.parametrize('dataset', DATASETS)
def test_cli_synth_then_check(tmp_path, capsys, dataset):
    assert main(['synth', dataset, '--out', str(tmp_path), '--count', '4', '--size', '24x32', '--seed', '2']) == 0
    root = {'voc': tmp_path / 'VOC2011', 'sbdd': tmp_path / 'dataset'}.get(dataset, tmp_path)
    assert main(['check', dataset, str(root)]) == 0
    out = capsys.readouterr().out
    assert 'no problems found' in out and 'pixels per class' in out


def test_cli_check_reports_problems(tmp_path, capsys):
    root = synthesize('voc', tmp_path, count=8, seed=0, size=(24, 32))
    bad = split_ids(root / 'ImageSets/Segmentation/train.txt')[1]
    (root / 'JPEGImages' / f'{bad}.jpg').write_bytes(b'\xff\xd8 broken')
    assert main(['check', 'voc', str(root), '--split', 'train']) == 1
    out = capsys.readouterr().out
    assert 'train 4 images' in out and f'{bad}.jpg' in out and '1 problem(s)' in out


def test_cli_errors_exit_nonzero_with_a_message(tmp_path):
    run = subprocess.run([sys.executable, '-m', 'caffe_fcn.datalayers.cli', 'check', 'nyud', str(tmp_path / 'none')],
                         capture_output=True, text=True)
    assert run.returncode == 2 and 'Expected layout' in run.stderr and 'img_{id}.png' in run.stderr
    assert subprocess.run([sys.executable, '-m', 'caffe_fcn.datalayers.cli', 'synth', 'voc', '--out', str(tmp_path),
                           '--size', '96'], capture_output=True).returncode == 2


def test_check_skips_a_class_list_beside_the_splits(tmp_path, capsys):
    root = synthesize('nyud', tmp_path, count=4, seed=0, size=(24, 32))
    (root / 'classes.txt').write_text('wall\nfloor\n')
    assert main(['check', 'nyud', str(root)]) == 0
    assert 'classes' not in capsys.readouterr().out.splitlines()[0]


def test_data_params_name_the_dir_keys_of_the_reading_layer(tmp_path):
    expected = {'voc': ['voc_dir'], 'sbdd': ['sbdd_dir'], 'nyud': ['nyud_dir'], 'siftflow': ['siftflow_dir'],
                'pascalcontext': ['context_dir', 'voc_dir']}
    for dataset, keys in expected.items():
        beside = {'voc_dir': str(tmp_path.parent / 'pascal')} if dataset == 'pascalcontext' else {}
        assert dir_overrides(dataset, tmp_path) == {**dict.fromkeys(keys, str(tmp_path)), **beside}


def test_synth_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / 'VOC2011').mkdir()
    (tmp_path / 'VOC2011' / 'mine.jpg').write_bytes(b'a real photo')
    assert main(['synth', 'voc', '--out', str(tmp_path), '--count', '4', '--size', '24x32']) == 2
    assert 'is not empty' in capsys.readouterr().err and sorted(p.name for p in tmp_path.rglob('*')) == \
        ['VOC2011', 'mine.jpg']
    assert main(['synth', 'voc', '--out', str(tmp_path), '--count', '4', '--size', '24x32', '--overwrite']) == 0
    assert (tmp_path / 'VOC2011' / 'mine.jpg').read_bytes() == b'a real photo'  # only its own names replaced
