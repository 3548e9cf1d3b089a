"""Preparing real data (seg11valid, SBD .mat -> PNG), the VOC palette, and the real files in ../shared."""
import numpy as np
import pytest
from data_helpers import REFERENCE_DATA, mat, png, python_layer_net, split_ids
from PIL import Image

from caffe_fcn.datalayers import label_image, palette
from caffe_fcn.datalayers.cli import main
from caffe_fcn.datalayers.datasets import PASCALContext
from caffe_fcn.datalayers.io import read_split, write_label_png
from caffe_fcn.datalayers.synth import synthesize
from caffe_fcn.datalayers.tools import sbdd_to_png, seg11valid, write_seg11valid
from caffe_fcn.registry import VOC_MEAN


def need(path):
    if not path.exists():
        pytest.skip(f'{path} is absent (the shared reference material is not next to the project)')
    return path


def test_seg11valid_is_val_minus_sbd_train_in_val_order():
    val = ['2008_000002', '2007_000033', '2009_000100', '2011_000005']
    sbd_train = ['2011_000005', '2008_000002', '2010_000001']
    assert seg11valid(val, sbd_train) == ['2007_000033', '2009_000100']


def test_seg11valid_written_from_synthetic_voc_and_sbd(tmp_path, capsys):
    voc = synthesize('voc', tmp_path / 'pascal', count=16, seed=0, size=(24, 24))
    sbdd = synthesize('sbdd', tmp_path / 'sbdd', count=16, seed=0, size=(24, 24))
    out = write_seg11valid(voc, sbdd, tmp_path / 'seg11valid.txt')
    expected = [i for i in split_ids(voc / 'ImageSets/Segmentation/val.txt')
                if i not in split_ids(sbdd / 'train.txt')]
    assert split_ids(out) == expected == split_ids(voc / 'ImageSets/Segmentation/seg11valid.txt')
    assert 0 < len(expected) < len(split_ids(voc / 'ImageSets/Segmentation/val.txt'))
    assert main(['seg11valid', str(voc), str(sbdd)]) == 0
    assert f'({len(expected)} images)' in capsys.readouterr().out


def test_reference_seg11valid_format():
    path = need(REFERENCE_DATA / 'data/pascal/seg11valid.txt')
    ids = read_split(path, 'a VOC split file')
    assert len(ids) == 736 and len(set(ids)) == 736
    assert all(len(i) == 11 and i[4] == '_' and i.replace('_', '').isdigit() for i in ids)


def test_sbdd_to_png(tmp_path, capsys):
    root = synthesize('sbdd', tmp_path, count=4, seed=0, size=(24, 24))
    written = sbdd_to_png(root)
    assert len(written) == 4
    for path in written:
        label = Image.open(path)
        assert label.mode == 'P'
        assert np.array_equal(np.array(label), mat(root / 'cls' / f'{path.stem}.mat', 'GTcls')[0]['Segmentation'][0])
    assert main(['sbdd-png', str(root), '--out', str(tmp_path / 'png'), '--split', 'val']) == 0
    assert len(list((tmp_path / 'png').glob('*.png'))) == len(split_ids(root / 'val.txt'))


def test_palette_is_the_voc_colormap():
    cmap = palette()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert cmap[15].tolist() == [192, 128, 128] and cmap[255].tolist() == [224, 224, 192]
    assert palette(21).shape == (21, 3)


def test_label_image_is_what_write_label_png_saves(tmp_path):
    label = np.array([[0, 1, 255], [15, 20, 3]], dtype=np.uint8)
    write_label_png(tmp_path / 'label.png', label)
    saved, im = Image.open(tmp_path / 'label.png'), label_image(label)
    assert im.mode == saved.mode == 'P' and im.getpalette() == saved.getpalette() == palette().ravel().tolist()
    assert np.array_equal(np.array(im), label) and np.array_equal(np.array(saved), label)


def test_palette_matches_the_real_voc_label():
    label = Image.open(need(REFERENCE_DATA / 'demo/label.png'))
    real = np.array(label.getpalette()[:256 * 3], dtype=np.uint8).reshape(-1, 3)
    assert np.array_equal(real, palette(len(real)))


def test_real_voc_image_and_label_through_the_layer(tmp_path):
    """The real PASCAL image and label, laid out as VOC2011 (links, not copies), through VOCSegDataLayer."""
    image, label = need(REFERENCE_DATA / 'demo/image.jpg'), need(REFERENCE_DATA / 'demo/label.png')
    root = tmp_path / 'VOC2011'
    for folder, source, suffix in (('JPEGImages', image, '.jpg'), ('SegmentationClass', label, '.png')):
        (root / folder).mkdir(parents=True)
        (root / folder / f'demo{suffix}').symlink_to(source)
    (root / 'ImageSets/Segmentation').mkdir(parents=True)
    (root / 'ImageSets/Segmentation/seg11valid.txt').write_text('demo\n')
    net = python_layer_net(tmp_path, 'voc_layers', 'VOCSegDataLayer',
                           {'voc_dir': str(root), 'split': 'seg11valid', 'mean': VOC_MEAN}, ['data', 'label'])
    net.forward()
    data, top_label = net.blobs['data'].data, net.blobs['label'].data
    assert data.shape == (1, 3, 500, 334) and top_label.shape == (1, 1, 500, 334)  # a portrait image
    rgb = png(image).astype(np.float32)
    for channel, rgb_channel in enumerate((2, 1, 0)):  # BGR order
        np.testing.assert_allclose(data[0, channel] + VOC_MEAN[channel], rgb[:, :, rgb_channel], atol=1e-3)
    assert set(np.unique(top_label).tolist()) == {0, 2, 15, 255}  # background, bicycle, person, void


def test_reference_pascalcontext_lists_map_all_59_classes(tmp_path):
    classes = need(REFERENCE_DATA / 'data/pascal-context')
    (tmp_path / 'labels.txt').symlink_to(classes / 'classes-400.txt')
    (tmp_path / '59_labels.txt').symlink_to(classes / 'classes-59.txt')  # this copy lists '0: background' too
    (tmp_path / 'VOC2010').mkdir()
    lookup = PASCALContext(tmp_path, tmp_path).lookup
    assert sorted(set(lookup.tolist()) - {0}) == list(range(1, 60))
    raw = {name.strip(): int(n) for n, name in
           (line.split(':') for line in (classes / 'classes-400.txt').read_text().splitlines())}
    assert lookup[raw['table']] == 11 and lookup[raw['bedclothes']] == 52 and lookup[raw['cloth']] == 28
    assert lookup[raw['potted plant' if 'potted plant' in raw else 'pottedplant']] == 16
    assert lookup[raw['clothes tree']] == 0 and lookup[raw['pool table']] == 0


def test_reference_nets_param_str_accepted():
    """Every data layer param_str of the reference nets parses under the layer's own spec."""
    import importlib

    from google.protobuf import text_format

    from caffe.proto import caffe_pb2
    from caffe_fcn.datalayers import params
    nets = [p for p in sorted(need(REFERENCE_DATA.parent / 'reference-nets').rglob('*.prototxt'))
            if 'python_param' in p.read_text()]
    checked = 0
    for path in nets:
        net = text_format.Parse(path.read_text(), caffe_pb2.NetParameter())
        for layer in net.layer:
            if layer.type == 'Python':
                python = layer.python_param
                cls = getattr(importlib.import_module(python.module), python.layer)
                parsed = params.parse(python.param_str, cls.spec, python.layer)
                assert parsed['seed'] == 1337 and parsed['split'] and parsed['randomize'] is True
                checked += 1
    assert checked >= 8


def test_check_names_the_classes(tmp_path):
    from caffe_fcn.datalayers import tools
    from caffe_fcn.datalayers.synth import synthesize

    root = synthesize('voc', tmp_path, count=6, seed=0, size=(32, 32))
    summary = tools.check('voc', root).summary()
    assert 'label pixels per class: background: ' in summary and 'void: ' in summary
