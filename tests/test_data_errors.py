"""Bad input never passes silently: every case raises a clear Python error naming the file or the key."""
import numpy as np
import pytest
import scipy.io
from data_helpers import python_layer_net
from PIL import Image

from caffe_fcn.datalayers import DatasetError, ParamError
from caffe_fcn.datalayers.datasets import NYUD, SBDD, VOC, PASCALContext, SIFTFlow, context_voc_dir
from caffe_fcn.datalayers.synth import SIFTFLOW_SUBDIR, synthesize
from caffe_fcn import registry

caffe = pytest.importorskip('caffe')
SIZE = (32, 40)


def make(dataset, tmp_path):
    return synthesize(dataset, tmp_path / dataset, count=4, seed=0, size=SIZE)


@pytest.fixture
def voc(tmp_path):
    return make('voc', tmp_path)


def voc_net(tmp_path, params, tops=('data', 'label')):
    return python_layer_net(tmp_path, 'voc_layers', 'VOCSegDataLayer', params, list(tops))


def first_val(root):
    return (root / 'ImageSets/Segmentation/val.txt').read_text().split()[0]


# --- param_str ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('params, message', [
    ({'voc_dir': 'x', 'split': 'val', 'spilt': 'val'},
     r"unknown param_str key\(s\) \['spilt'\].*accepted keys: voc_dir"),
    ({'voc_dir': 'x', 'split': 3}, "'split' must be a non-empty string, got 3"),
    ({'voc_dir': 'x', 'split': 'val', 'mean': (1, 2)}, "'mean' must be a tuple of three finite numbers"),
    ({'voc_dir': 'x', 'split': 'val', 'seed': '1337'}, "'seed' must be an integer or None"),
    ({'voc_dir': 'x', 'split': 'val', 'randomize': 1}, "'randomize' must be True or False"),
    ({'split': 'val'}, r"lacks required key\(s\) \['voc_dir'\]"),
    ("['voc_dir', 'x']", 'must be a dict literal'),
    ("__import__('os').system('true')", 'not a Python dict literal'),
])
def test_bad_param_str(tmp_path, params, message):
    with pytest.raises(ParamError, match=message):
        voc_net(tmp_path, params)


def test_nyud_tops_must_be_known_modalities(tmp_path):
    root = make('nyud', tmp_path)
    with pytest.raises(ParamError, match=r"'tops' must be a list of distinct names from \['color', 'depth'"):
        python_layer_net(tmp_path, 'nyud_layers', 'NYUDSegDataLayer',
                         {'nyud_dir': str(root), 'split': 'test', 'tops': ['rgb', 'label']}, ['rgb', 'label'])


def test_number_of_tops_must_match(tmp_path, voc):
    with pytest.raises(ValueError, match=r'produces 2 tops \(data, label\), the net gives it 3'):
        voc_net(tmp_path, {'voc_dir': str(voc), 'split': 'val'}, tops=('data', 'label', 'extra'))


# --- missing files --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('cls, args', [(VOC, ()), (SBDD, ()), (NYUD, ()), (SIFTFlow, ())])
def test_missing_root_names_layout_and_source(tmp_path, cls, args):
    with pytest.raises(DatasetError) as e:
        cls(tmp_path / 'nowhere', *args)
    text = str(e.value)
    assert 'nowhere' in text and 'does not exist' in text and 'Expected layout' in text
    assert registry.source(cls.layer).download.split()[0] in text and 'fcn-data synth' in text


def test_missing_root_through_the_layer(tmp_path):
    with pytest.raises(DatasetError, match='JPEGImages/{id}.jpg'):
        voc_net(tmp_path, {'voc_dir': str(tmp_path / 'VOC2011'), 'split': 'seg11valid'})


def test_missing_split_file_names_it_and_the_layout(tmp_path, voc):
    with pytest.raises(DatasetError, match=r'missing split file .*ImageSets/Segmentation/seg12valid.txt'):
        voc_net(tmp_path, {'voc_dir': str(voc), 'split': 'seg12valid'})


def test_empty_split_file(voc):
    (voc / 'ImageSets/Segmentation/val.txt').write_text('\n')
    with pytest.raises(DatasetError, match='lists no images'):
        VOC(voc).ids('val')


def test_missing_image_file(voc):
    id_ = first_val(voc)
    (voc / 'JPEGImages' / f'{id_}.jpg').unlink()
    with pytest.raises(DatasetError, match=f'missing RGB image: .*{id_}.jpg'):
        VOC(voc).load(id_)


def test_pascalcontext_missing_voc2010(tmp_path):
    root = make('pascalcontext', tmp_path)
    with pytest.raises(DatasetError, match='VOC2010 directory .* does not exist'):
        PASCALContext(root, tmp_path / 'elsewhere')


# --- unreadable files -----------------------------------------------------------------------------------------

def test_truncated_image_names_the_file_during_forward(tmp_path, voc):
    ids = (voc / 'ImageSets/Segmentation/val.txt').read_text().split()
    path = voc / 'JPEGImages' / f'{ids[1]}.jpg'
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    net = voc_net(tmp_path, {'voc_dir': str(voc), 'split': 'val'})  # the first image is fine
    net.forward()
    with pytest.raises(DatasetError, match=f'unreadable or truncated RGB image .*{ids[1]}.jpg'):
        net.forward()


def test_garbage_label_png(voc):
    id_ = first_val(voc)
    (voc / 'SegmentationClass' / f'{id_}.png').write_bytes(b'not a png at all')
    with pytest.raises(DatasetError, match=f'unreadable or truncated label PNG .*{id_}.png'):
        VOC(voc).load(id_)


def test_rgb_rendering_instead_of_class_indices(voc):
    id_ = first_val(voc)
    path = voc / 'SegmentationClass' / f'{id_}.png'
    Image.open(path).convert('RGB').save(path)
    with pytest.raises(DatasetError, match="label PNG .* has image mode 'RGB'.*one class index per pixel"):
        VOC(voc).load(id_)


def test_grayscale_jpeg_is_refused(voc):
    id_ = first_val(voc)
    path = voc / 'JPEGImages' / f'{id_}.jpg'
    Image.open(path).convert('L').save(path)
    with pytest.raises(DatasetError, match=f"{id_}.jpg has image mode 'L'"):
        VOC(voc).load(id_)


def test_corrupt_mat(tmp_path):
    root = make('sbdd', tmp_path)
    id_ = (root / 'train.txt').read_text().split()[0]
    (root / 'cls' / f'{id_}.mat').write_bytes(b'MATLAB 5.0 MAT-file' + bytes(20))
    with pytest.raises(DatasetError, match=f'unreadable .mat file .*{id_}.mat'):
        SBDD(root).load(id_)


def test_mat_without_the_variable(tmp_path):
    root = make('nyud', tmp_path)
    id_ = (root / 'test.txt').read_text().split()[0]
    scipy.io.savemat(root / 'segmentation' / f'img_{id_}.mat', {'labels': np.ones(SIZE, np.uint8)})
    with pytest.raises(DatasetError, match=r"img_%s.mat has no variable 'segmentation' \(found \['labels'\]\)" % id_):
        NYUD(root).load(id_)


# --- inconsistent contents ------------------------------------------------------------------------------------

def test_image_and_label_of_different_sizes(voc):
    id_ = first_val(voc)
    path = voc / 'JPEGImages' / f'{id_}.jpg'
    Image.open(path).resize((SIZE[1] + 1, SIZE[0])).save(path)
    with pytest.raises(DatasetError, match=f'{id_}.jpg is 32x41 but its label .*{id_}.png is 32x40'):
        VOC(voc).load(id_)


def test_nyud_modalities_of_different_sizes(tmp_path):
    root = make('nyud', tmp_path)
    id_ = (root / 'test.txt').read_text().split()[0]
    path = root / 'data/hha' / f'img_{id_}.png'
    Image.open(path).resize((20, 20)).save(path)
    with pytest.raises(DatasetError, match=f'img_{id_}.png is 20x20 but'):
        NYUD(root).load(id_, ['color', 'hha'])


def test_voc_label_outside_the_classes(voc):
    id_ = first_val(voc)
    path = voc / 'SegmentationClass' / f'{id_}.png'
    label = np.array(Image.open(path))
    label[0, 0] = 21
    im = Image.fromarray(label, mode='P')
    im.putpalette(Image.open(path).getpalette())
    im.save(path)
    with pytest.raises(DatasetError, match=rf'{id_}.png: label values \[21\] are outside the 21 classes'):
        VOC(voc).load(id_)


def edit_mat(path, variable, edit):
    data = scipy.io.loadmat(path)[variable]
    scipy.io.savemat(path, {variable: edit(data)})


def test_sbdd_label_outside_the_classes(tmp_path):
    root = make('sbdd', tmp_path)
    id_ = (root / 'train.txt').read_text().split()[0]
    path = root / 'cls' / f'{id_}.mat'
    gt = scipy.io.loadmat(path)['GTcls'][0, 0]
    segmentation = gt['Segmentation'].copy()
    segmentation[0, 0] = 40
    scipy.io.savemat(path, {'GTcls': {'Segmentation': segmentation, 'Boundaries': gt['Boundaries']}})
    with pytest.raises(DatasetError, match=rf'{id_}.mat: label values \[40\] are not valid'):
        SBDD(root).load(id_)


def test_nyud_label_outside_the_classes(tmp_path):
    root = make('nyud', tmp_path)
    id_ = (root / 'test.txt').read_text().split()[0]
    edit_mat(root / 'segmentation' / f'img_{id_}.mat', 'segmentation', lambda s: np.where(s == 1, 41, s))
    with pytest.raises(DatasetError, match=rf'img_{id_}.mat: label values \[41\] are not valid'):
        NYUD(root).load(id_, ['label'])


def test_nyud_depth_with_holes(tmp_path):
    root = make('nyud', tmp_path)
    id_ = (root / 'test.txt').read_text().split()[0]
    path = root / 'data/depth' / f'img_{id_}.png'
    depth = np.array(Image.open(path))
    depth[:4] = 0
    Image.fromarray(depth).save(path)
    with pytest.raises(DatasetError, match=f'img_{id_}.png: depth must be .* positive'):
        NYUD(root).load(id_, ['depth'])


@pytest.mark.parametrize('kind, bad', [('SemanticLabels', 34), ('GeoLabels', 4)])
def test_siftflow_label_outside_the_classes(tmp_path, kind, bad):
    root = make('siftflow', tmp_path)
    id_ = (root / 'test.txt').read_text().split()[0]
    edit_mat(root / kind / SIFTFLOW_SUBDIR / f'{id_}.mat', 'S', lambda s: np.where(s == s.max(), bad, s))
    with pytest.raises(DatasetError, match=rf'{kind}/.*{id_}.mat: label values \[{bad}\] are not valid'):
        SIFTFlow(root).load(id_)


def three_channels(label):
    return np.repeat(label[..., None], 3, axis=2)


def sbdd_three_channels(root, id_):
    path = root / 'cls' / f'{id_}.mat'
    gt = scipy.io.loadmat(path)['GTcls'][0, 0]
    scipy.io.savemat(path, {'GTcls': {'Segmentation': three_channels(gt['Segmentation']),
                                      'Boundaries': gt['Boundaries']}})
    return SBDD(root)


@pytest.mark.parametrize('dataset, split, spoil', [
    ('sbdd', 'train.txt', sbdd_three_channels),
    ('siftflow', 'test.txt', lambda root, id_: edit_mat(root / 'SemanticLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat', 'S',
                                                        three_channels) or SIFTFlow(root)),
    ('siftflow', 'test.txt', lambda root, id_: edit_mat(root / 'GeoLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat', 'S',
                                                        three_channels) or SIFTFlow(root)),
    ('pascalcontext', 'val', lambda root, id_: edit_mat(root / 'trainval' / f'{id_}.mat', 'LabelMap',
                                                        three_channels) or PASCALContext(root, context_voc_dir(root))),
    ('nyud', 'test.txt', lambda root, id_: edit_mat(root / 'segmentation' / f'img_{id_}.mat', 'segmentation',
                                                    three_channels) or NYUD(root))])
def test_a_label_of_three_channels_is_refused_naming_it(tmp_path, dataset, split, spoil):
    """H x W x 3 passes a check of the first two axes, then aborts Caffe's loss: every axis is checked."""
    root = make(dataset, tmp_path)
    splits = context_voc_dir(root) / 'VOC2010/ImageSets/Main/val.txt' if dataset == 'pascalcontext' else root / split
    id_ = splits.read_text().split()[0]
    reader = spoil(root, id_)
    with pytest.raises(DatasetError, match=rf'{id_}\.mat .*(has shape \d+x\d+x3|is \d+x\d+ but)'):
        reader.load(id_)


def test_every_top_of_a_sample_is_checked_on_every_axis():
    from caffe_fcn.datalayers.layers import check_sample

    good = {'data': np.zeros((3, 8, 9), np.float32), 'label': np.zeros((1, 8, 9), np.uint8)}
    check_sample(good, 'a')
    for bad in ({**good, 'label': np.zeros((1, 8, 8), np.uint8)}, {**good, 'label': np.zeros((3, 8, 9), np.uint8)},
                {**good, 'depth': np.zeros((8, 9), np.float32)}):
        with pytest.raises(DatasetError, match='image a: its tops do not fit one another'):
            check_sample(bad, 'a')


def test_pascalcontext_raw_label_outside_the_list(tmp_path):
    root = make('pascalcontext', tmp_path)
    id_ = (context_voc_dir(root) / 'VOC2010/ImageSets/Main/val.txt').read_text().split()[0]
    edit_mat(root / 'trainval' / f'{id_}.mat', 'LabelMap', lambda m: np.where(m == m.max(), 999, m))
    with pytest.raises(DatasetError, match=rf'{id_}.mat: label values \[999\] are not valid'):
        PASCALContext(root, context_voc_dir(root)).load(id_)


def test_pascalcontext_task_class_missing_from_the_full_list(tmp_path):
    root = make('pascalcontext', tmp_path)
    labels = root / 'labels.txt'
    labels.write_text(''.join(line + '\n' for line in labels.read_text().splitlines() if not line.endswith(' sky')))
    with pytest.raises(DatasetError, match="class 'sky' of .*59_labels.txt is not in .*labels.txt"):
        PASCALContext(root, context_voc_dir(root))


def test_malformed_class_list(tmp_path):
    root = make('pascalcontext', tmp_path)
    (root / '59_labels.txt').write_text('aeroplane\nbicycle\n')
    with pytest.raises(DatasetError, match=r"59_labels.txt line 1: expected 'NUMBER: name'"):
        PASCALContext(root, context_voc_dir(root))
