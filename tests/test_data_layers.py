"""Each data layer inside a real Caffe net, on synthetic data; tops checked against an independent read."""
import json
import random

import numpy as np
import pytest
from data_helpers import expected_image, mat, png, python_layer_net, split_ids

from caffe_fcn.datalayers.datasets import context_voc_dir
from caffe_fcn.datalayers.synth import SIFTFLOW_SUBDIR, synthesize
from caffe_fcn.registry import VOC_MEAN

caffe = pytest.importorskip('caffe')


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    """Small synthetic datasets (VOC-like ones with per-image sizes, to exercise the per-image reshape)."""
    root = tmp_path_factory.mktemp('synth')
    sizes = {'nyud': (40, 56), 'siftflow': (48, 48)}
    return {d: synthesize(d, root / d, count=8, seed=3, size=sizes.get(d)) for d in
            ('voc', 'sbdd', 'nyud', 'siftflow', 'pascalcontext')}


def test_voc_eval_split_in_file_order_through_a_training_net(synth, tmp_path):
    root = synth['voc']
    params = {'voc_dir': str(root), 'split': 'seg11valid', 'mean': VOC_MEAN, 'seed': 1337}
    # a 1x1 score layer and the FCN loss, so the tops really feed a net
    extra = ('layer { name: "score" type: "Convolution" bottom: "data" top: "score" '
             'convolution_param { num_output: 21 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }\n'
             'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" '
             'loss_param { normalize: false ignore_label: 255 } }')
    net = python_layer_net(tmp_path, 'voc_layers', 'VOCSegDataLayer', params, ['data', 'label'], extra)
    ids = split_ids(root / 'ImageSets/Segmentation/seg11valid.txt')
    shapes = set()
    for id_ in ids + ids[:1]:  # wraps around to the first image
        net.forward()
        image = expected_image(root / 'JPEGImages' / f'{id_}.jpg', VOC_MEAN)
        label = png(root / 'SegmentationClass' / f'{id_}.png')
        assert net.blobs['data'].data.shape == (1,) + image.shape
        np.testing.assert_allclose(net.blobs['data'].data[0], image, atol=1e-3)
        np.testing.assert_array_equal(net.blobs['label'].data[0, 0], label)
        assert net.blobs['score'].data.shape[2:] == image.shape[1:]
        assert np.isfinite(net.blobs['loss'].data).all()
        assert net.layers[0].current_id == id_
        shapes.add(image.shape)
    assert len(shapes) > 1, "synthetic VOC images should vary in size so the per-image reshape is exercised"


def test_voc_label_has_void_and_few_classes(synth):
    root = synth['voc']
    labels = np.concatenate([png(p).ravel() for p in (root / 'SegmentationClass').glob('*.png')])
    present = set(np.unique(labels).tolist())
    assert 255 in present and 0 in present
    assert 3 <= len(present - {0, 255}) <= 5


def visited(net, count):
    """The ids a net's data layer reads over `count` forward passes."""
    seen = []
    for _ in range(count):
        net.forward()
        seen.append(net.layers[0].current_id)
    return seen


def test_sbdd_train_draws_as_the_reference_with_its_own_generator(synth, tmp_path):
    root = synth['sbdd']
    params = {'sbdd_dir': str(root), 'split': 'train', 'mean': VOC_MEAN, 'seed': 1337}
    net = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label'])
    ids = split_ids(root / 'train.txt')
    seen = []
    for _ in range(2 * len(ids)):
        random.seed(0)  # the process-global generator (which the reference uses) does not move the order
        net.forward()
        id_ = net.layers[0].current_id
        seen.append(id_)
        expected = mat(root / 'cls' / f'{id_}.mat', 'GTcls')[0]['Segmentation'][0]
        np.testing.assert_array_equal(net.blobs['label'].data[0, 0], expected)
        np.testing.assert_allclose(net.blobs['data'].data[0], expected_image(root / 'img' / f'{id_}.jpg', VOC_MEAN),
                                   atol=1e-3)
    draws = random.Random(1337)  # the reference: random.seed(seed), then randint(0, n - 1) in setup and per forward
    assert seen == [ids[draws.randint(0, len(ids) - 1)] for _ in seen]
    assert visited(python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label']),
                   len(seen)) == seen, "the same seed gives the same order"
    unseeded = {k: v for k, v in params.items() if k != 'seed'}
    runs = [visited(python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', unseeded, ['data', 'label']), 12)
            for _ in range(3)]
    assert len({tuple(r) for r in runs}) > 1, "without a seed every run draws anew, as the reference"


def test_augmentation_and_loss_sampling_leave_the_order_alone(synth, tmp_path):
    params = {'sbdd_dir': str(synth['sbdd']), 'split': 'train', 'seed': 3}
    plain = visited(python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label']), 10)
    augmented = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer',
                                 {**params, 'mirror': True, 'jitter': 8, 'sample': 0.5, 'cell': 8}, ['data', 'label'])
    assert visited(augmented, 10) == plain


def test_state_restore_continues_the_sequence(synth, tmp_path):
    params = {'sbdd_dir': str(synth['sbdd']), 'split': 'train', 'seed': 7}
    net = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label'])
    for _ in range(9):
        net.forward()
    state = json.loads(json.dumps(net.layers[0].state()))  # survives a round trip through a file
    assert state['rng'][1] == list(net.layers[0].rng.getstate()[1])  # the generator's own state
    expected = []
    for _ in range(5):
        net.forward()
        expected.append(net.layers[0].current_id)
    fresh = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', {**params, 'seed': 99}, ['data', 'label'])
    fresh.layers[0].restore(state)
    resumed = []
    for _ in range(5):
        fresh.forward()
        resumed.append(fresh.layers[0].current_id)
    assert resumed == expected


def test_restore_rejects_a_state_of_another_split(synth, tmp_path):
    from caffe_fcn.datalayers import DatasetError
    net = python_layer_net(tmp_path, 'voc_layers', 'VOCSegDataLayer', {'voc_dir': str(synth['voc']), 'split': 'val'},
                           ['data', 'label'])
    state = net.layers[0].state()
    with pytest.raises(DatasetError, match='split'):
        net.layers[0].restore({**state, 'split': 'train'})
    for bad, match in [({**state, 'rng': [3, [1, 2], None]}, 'corrupt'), ({**state, 'index': 99}, 'out of range'),
                       ({'split': 'val', 'epoch': 0, 'position': 1}, 'older fcn')]:
        with pytest.raises(DatasetError, match=match):
            net.layers[0].restore(bad)


@pytest.mark.parametrize('tops', [['color', 'label'], ['hha', 'label'], ['color', 'depth', 'label'],
                                  ['label', 'hha', 'color']])
def test_nyud_tops_in_the_order_given(synth, tmp_path, tops):
    root = synth['nyud']
    net = python_layer_net(tmp_path, 'nyud_layers', 'NYUDSegDataLayer',
                           {'nyud_dir': str(root), 'split': 'test', 'tops': tops, 'seed': 1337}, tops)
    id_ = split_ids(root / 'test.txt')[0]
    net.forward()
    expected = {
        'color': expected_image(root / f'data/images/img_{id_}.png', (116.190, 97.203, 92.318)),
        'hha': (png(root / f'data/hha/img_{id_}.png').astype(np.float32)
                - np.array((132.431, 94.076, 118.477), np.float32)).transpose(2, 0, 1),
        'depth': np.log(png(root / f'data/depth/img_{id_}.png').astype(np.float32))[None] - 7.844,
        'label': mat(root / f'segmentation/img_{id_}.mat', 'segmentation').astype(np.int32)[None] - 1,
    }
    expected['label'][expected['label'] == -1] = 255
    for top in tops:
        assert net.blobs[top].data.shape == (1,) + expected[top].shape
        np.testing.assert_allclose(net.blobs[top].data[0], expected[top], atol=1e-3)
    assert 255 in net.blobs['label'].data


def test_siftflow_semantic_and_geometric_labels(synth, tmp_path):
    root = synth['siftflow']
    net = python_layer_net(tmp_path, 'siftflow_layers', 'SIFTFlowSegDataLayer',
                           {'siftflow_dir': str(root), 'split': 'test', 'seed': 1337}, ['data', 'sem', 'geo'])
    for id_ in split_ids(root / 'test.txt'):
        net.forward()
        sem = mat(root / 'SemanticLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat', 'S').astype(np.int32)
        geo = mat(root / 'GeoLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat', 'S').astype(np.int32)
        assert (geo == -1).any(), "the synthetic data has geometric void (-1)"
        expected_sem = np.where(sem == 0, 255, sem - 1)
        expected_geo = np.where(geo <= 0, 255, geo - 1)
        image = expected_image(root / 'Images' / SIFTFLOW_SUBDIR / f'{id_}.jpg', (114.578, 115.294, 108.353))
        np.testing.assert_allclose(net.blobs['data'].data[0], image, atol=1e-3)
        np.testing.assert_array_equal(net.blobs['sem'].data[0, 0], expected_sem)
        np.testing.assert_array_equal(net.blobs['geo'].data[0, 0], expected_geo)
        assert set(np.unique(expected_geo)) <= {0, 1, 2, 255}


def test_pascalcontext_maps_raw_labels_to_59_classes_by_name(synth, tmp_path):
    root = synth['pascalcontext']
    net = python_layer_net(tmp_path, 'pascalcontext_layers', 'PASCALContextSegDataLayer',
                           {'context_dir': str(root), 'voc_dir': str(context_voc_dir(root)), 'split': 'val',
                            'seed': 1337},
                           ['data', 'label'])
    # independent mapping, from the two lists as written on disk
    raw = {int(n): s.strip().replace(' ', '') for n, s in
           (line.split(':') for line in (root / 'labels.txt').read_text().splitlines())}
    task = {s.strip(): int(n) for n, s in
            (line.split(':') for line in (root / '59_labels.txt').read_text().splitlines())}
    task.update({'table': task['diningtable'], 'bedclothes': task['bedcloth'], 'cloth': task['clothes']})
    seen = set()
    for id_ in split_ids(context_voc_dir(root) / 'VOC2010/ImageSets/Main/val.txt'):
        net.forward()
        label_map = mat(root / 'trainval' / f'{id_}.mat', 'LabelMap')
        expected = np.vectorize(lambda v: task.get(raw[v], 0))(label_map)
        np.testing.assert_array_equal(net.blobs['label'].data[0, 0], expected)
        seen |= set(np.unique(expected).tolist())
        image = expected_image(context_voc_dir(root) / 'VOC2010/JPEGImages' / f'{id_}.jpg', (104.007, 116.669, 122.679))
        np.testing.assert_allclose(net.blobs['data'].data[0], image, atol=1e-3)
    assert 0 in seen and len(seen) >= 3 and max(seen) <= 59


def test_each_reader_names_the_layer_that_reads_it_and_the_keys_come_from_the_declaration():
    from caffe_fcn.datalayers import layers
    from caffe_fcn.datalayers.datasets import READERS
    from caffe_fcn.datalayers.synth import dir_overrides
    from caffe_fcn import registry

    for dataset, reader in READERS.items():
        source = registry.source(reader.layer)
        assert issubclass(getattr(layers, reader.layer), layers.SegDataLayer)
        assert layers.reader_class(source) is reader
        spec = getattr(layers, reader.layer).spec
        assert list(spec) == list(layers.layer_spec(source)) and set(source.params) < set(spec)
        assert set(dir_overrides(dataset, 'ROOT')) < set(spec)


# --- augmentation (CVPR 2015 sec. 4.3): mirror and jitter, image and labels alike, training splits only -----

def source_of(augmented, original):
    """For each kept pixel of an augmented sample, where it came from in the original (its data value there is
    its index + 1): (out rows, out cols, source rows, source cols); shifted-in pixels are 0."""
    kept = augmented['data'][0] != 0
    index = augmented['data'][0][kept].astype(int) - 1
    rows, cols = np.nonzero(kept)
    return rows, cols, index // original['label'].shape[2], index % original['label'].shape[2]


def test_augment_moves_image_and_label_alike():
    from caffe_fcn.datalayers.layers import augment

    h, w = 20, 30
    original = {'data': (np.arange(h * w, dtype=np.float32) + 1).reshape(1, h, w).repeat(3, 0),
                'label': (np.arange(h * w) % 21).astype(np.uint8).reshape(1, h, w)}
    flips, shifts = 0, set()
    for seed in range(40):
        out = augment(original, np.random.default_rng(seed), mirror=True, jitter=5)
        rows, cols, src_rows, src_cols = source_of(out, original)
        dy, straight, mirrored = set(rows - src_rows), set(cols - src_cols), set(cols + src_cols - (w - 1))
        assert len(dy) == 1 and -5 <= dy.pop() <= 5  # one translation for the whole image
        assert len(straight) == 1 or len(mirrored) == 1  # and one horizontal shift, of the image or its mirror
        flips += len(straight) != 1
        assert np.array_equal(out['label'][0][rows, cols], original['label'][0][src_rows, src_cols])
        assert (out['label'][0][out['data'][0] == 0] == 255).all()  # shifted in: void
        assert np.array_equal(out['data'][1], out['data'][0])  # every channel alike
        shifts.add((rows - src_rows)[0])
    assert 10 <= flips <= 30 and len(shifts) > 3
    same = augment(original, np.random.default_rng(0))  # both off: nothing changes
    assert all(np.array_equal(same[k], original[k]) for k in original)


def test_training_split_is_augmented_when_asked_and_evaluation_never(synth, tmp_path):
    root = synth['sbdd']
    params = {'sbdd_dir': str(root), 'split': 'train', 'mean': VOC_MEAN, 'seed': 1337, 'mirror': True, 'jitter': 8}
    net = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label'])
    changed = []
    for _ in range(8):
        net.forward()
        id_ = net.layers[0].current_id
        label = mat(root / 'cls' / f'{id_}.mat', 'GTcls')[0]['Segmentation'][0]
        changed.append(not np.array_equal(net.blobs['label'].data[0, 0], label))
        assert set(np.unique(net.blobs['label'].data)) <= set(np.unique(label)) | {255}
    assert any(changed)
    again = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label'])
    again.forward()
    net = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label'])
    net.forward()
    assert np.array_equal(net.blobs['data'].data, again.blobs['data'].data)  # seeded
    voc = synth['voc']
    params = {'voc_dir': str(voc), 'split': 'seg11valid', 'mean': VOC_MEAN, 'mirror': True, 'jitter': 8}
    net = python_layer_net(tmp_path, 'voc_layers', 'VOCSegDataLayer', params, ['data', 'label'])
    for id_ in split_ids(voc / 'ImageSets' / 'Segmentation' / 'seg11valid.txt'):
        net.forward()
        assert np.array_equal(net.blobs['label'].data[0, 0], png(voc / 'SegmentationClass' / f'{id_}.png'))


def test_bad_augmentation_parameters_are_refused(synth, tmp_path):
    from caffe_fcn.datalayers import ParamError
    from caffe_fcn.datalayers.layers import SBDDSegDataLayer
    from caffe_fcn.datalayers.params import parse

    with pytest.raises(ParamError, match="'jitter' must be a whole number of pixels"):
        parse(str({'sbdd_dir': 'x', 'split': 'train', 'jitter': -3}), SBDDSegDataLayer.spec, 'SBDDSegDataLayer')


def test_loss_sampling_ignores_whole_cells_with_probability_one_minus_p():
    from caffe_fcn.datalayers.layers import sample_cells

    label = np.zeros((1, 640, 640), np.uint8)
    for keep in (0.25, 0.5, 0.9):
        out = sample_cells(label, np.random.default_rng(0), keep, 32)
        cells = out[0].reshape(20, 32, 20, 32).transpose(0, 2, 1, 3).reshape(400, -1)
        assert all(len(set(c)) == 1 for c in cells)  # a cell is ignored whole or kept whole
        ignored = float((cells[:, 0] == 255).mean())
        tolerance = 4 * np.sqrt(keep * (1 - keep) / 400)  # 4 standard deviations of the binomial fraction
        assert abs(ignored - (1 - keep)) < tolerance, (keep, ignored)
    assert np.array_equal(sample_cells(label, np.random.default_rng(0), 1.0, 32), label)  # p = 1: today's net
    odd = sample_cells(np.ones((1, 50, 70), np.uint8), np.random.default_rng(1), 0.5, 32)
    assert odd.shape == (1, 50, 70) and set(np.unique(odd)) == {1, 255}  # partial cells at the edges too


def test_loss_sampling_in_the_training_layer(synth, tmp_path):
    root = synth['sbdd']
    params = {'sbdd_dir': str(root), 'split': 'train', 'mean': VOC_MEAN, 'seed': 1, 'sample': 0.5, 'cell': 8}
    net = python_layer_net(tmp_path, 'voc_layers', 'SBDDSegDataLayer', params, ['data', 'label'])
    ignored = []
    for _ in range(8):
        net.forward()
        id_ = net.layers[0].current_id
        np.testing.assert_allclose(net.blobs['data'].data[0], expected_image(root / 'img' / f'{id_}.jpg', VOC_MEAN),
                                   atol=1e-3)  # the image is untouched
        label = mat(root / 'cls' / f'{id_}.mat', 'GTcls')[0]['Segmentation'][0]
        got = net.blobs['label'].data[0, 0]
        kept = got != 255
        assert np.array_equal(got[kept], label[kept])
        ignored.append(1 - kept.mean())
    assert 0.3 < np.mean(ignored) < 0.7
