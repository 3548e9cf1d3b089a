"""Hostile data, third pass (issue 34, part B): sizes and coordinates bounded in Python before pycocotools or PIL
see them (the image on disk decides), geometry far beyond the image clipped to it as labelme's and COCO's own
tools draw it, masks and photos read for their meaning (one rule for a photo's mode everywhere), dataset.json
checked against the files it was computed from and for values that make sense, and valid input taken."""
import argparse
import json
import os
import resource
import subprocess
import threading

import numpy as np
import pytest
from PIL import Image

from common import BIN, ENV, child
from test_import import SIZE, import_, index_source, labelme_doc, labelme_shape, photo, save_photo, segmentation

from caffe_fcn import cli, registry
from caffe_fcn.datalayers import folder, resolve
from caffe_fcn.datalayers.datasets import Folder
from caffe_fcn.datalayers.io import DatasetError

pycocotools = pytest.importorskip('pycocotools')

H, W = SIZE
MEMORY_CAP = 8 << 30  # below the 40 GB a file-declared size asked for: a native allocation by it fails there


def bounded_import(*args):
    """fcn-data import in a child process with its address space capped: an allocation sized by a file fails
    there as it would on a smaller machine, and cannot swap this one."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    return subprocess.run([str(BIN / 'fcn-data'), 'import', *map(str, args)], capture_output=True, text=True,
                          env={**ENV, 'OPENBLAS_NUM_THREADS': '1'}, cwd='/', timeout=300, preexec_fn=cap)


def leftovers(tmp_path):
    return [p.name for p in tmp_path.rglob('.*') if '.import-' in p.name]


def refused(result, tmp_path, *words):
    """Exit 2, one error line holding `words`, nothing internal, no hidden import folder left behind."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), result.stderr[-2000:]
    assert 'internal' not in result.stderr and 'Traceback' not in result.stderr
    assert not leftovers(tmp_path)


def imported(result, tmp_path, out):
    """The labels an import that succeeded wrote, by id."""
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert not leftovers(tmp_path)
    return {p.stem: np.array(Image.open(p)) for p in sorted((out / 'labels').iterdir())}


def coco_file(root, segmentations, declared=SIZE, names=('cat',)):
    """Two 40x56 photos and instances.json declaring them `declared` (H, W), each with the annotations
    [(category index, segmentation)] (category i is names[i], id 10 + i)."""
    images, anns = [], []
    for i in range(2):
        save_photo(root / 'images' / f'im{i}.jpg', photo(segmentation(i), i))
        images.append({'id': i + 1, 'file_name': f'im{i}.jpg', 'height': declared[0], 'width': declared[1]})
        anns += [{'id': 100 * i + n, 'image_id': i + 1, 'category_id': 10 + cat, 'iscrowd': 0, 'segmentation': s}
                 for n, (cat, s) in enumerate(segmentations)]
    doc = {'images': images, 'annotations': anns,
           'categories': [{'id': 10 + i, 'name': name} for i, name in enumerate(names)]}
    (root / 'instances.json').write_text(json.dumps(doc))
    return root / 'instances.json', root / 'images'


def labelme_files(root, shapes):
    """Two 40x56 photos with labelme files holding `shapes`."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        save_photo(root / f'im{i}.jpg', photo(segmentation(i), i))
        (root / f'im{i}.json').write_text(json.dumps(labelme_doc(f'im{i}.jpg', shapes)))
    return root


def box(c):
    """A square polygon from -c to c: it covers the image."""
    return [-c, -c, c, -c, c, c, -c, c]


# --- 2. native crashes ----------------------------------------------------------------------------------------

def test_a_coco_image_declared_larger_than_its_file_is_refused_naming_both_sizes(tmp_path):
    """200000 x 200000 declared, 40 x 56 on disk: pycocotools allocated 40 GB and segfaulted (exit -11)."""
    annotations, images = coco_file(tmp_path / 'coco', [(0, [box(10.0)])], declared=(200000, 200000))
    result = bounded_import('coco', annotations, '--images', images, '--out', tmp_path / 'out')
    refused(result, tmp_path, 'im0.jpg', '200000x200000', '40x56', 'instances.json')


@pytest.mark.parametrize('corner', [1e9, 1e12, 1e300])
def test_a_coco_polygon_far_beyond_the_image_is_clipped_to_it(tmp_path, corner):
    """Corners at +-1e300 segfaulted pycocotools; at +-1e9 and +-1e12 the image it covers came out empty. COCO's
    annToRLE draws on the image's canvas: the polygon clipped to it covers it."""
    annotations, images = coco_file(tmp_path / 'coco', [(0, [box(corner)])])
    labels = imported(bounded_import('coco', annotations, '--images', images, '--out', tmp_path / 'out'), tmp_path,
                      tmp_path / 'out')
    assert all((label == 1).all() for label in labels.values())


def test_a_coco_polygon_keeps_its_shape_when_clipped(tmp_path):
    """A half-plane through the image's corners, drawn from corners 1e3 away and 1e12 away: the same pixels."""
    def half(c):
        return [-c, -c * H / W, c, c * H / W, c, -c]

    drawn = []
    for corner in (1e3, 1e12):
        annotations, images = coco_file(tmp_path / f'coco{corner:g}', [(0, [half(corner)])])
        out = tmp_path / f'out{corner:g}'
        drawn.append(imported(bounded_import('coco', annotations, '--images', images, '--out', out), tmp_path, out))
    assert 0.4 < drawn[0]['im0'].mean() < 0.6 and (drawn[0]['im0'] == drawn[1]['im0']).all()


# --- 3. geometry that vanishes ----------------------------------------------------------------------------------

@pytest.mark.parametrize('corner', [1e9, 1e12, 1e300])
def test_labelme_shapes_far_beyond_the_image_are_clipped_to_it(tmp_path, corner):
    """A polygon or rectangle with corners at +-1e9, +-1e12 drew 0 pixels; a circle of radius 1e300 413 of 2240."""
    for kind, points in (('polygon', [[-corner, -corner], [corner, -corner], [corner, corner], [-corner, corner]]),
                         ('rectangle', [[-corner, -corner], [corner, corner]]),
                         ('circle', [[20, 20], [20 + corner, 20]])):
        src = labelme_files(tmp_path / kind / 'lm', [labelme_shape('cat', points, kind)])
        out = tmp_path / kind / 'out'
        labels = imported(import_('labelme', src, '--out', out), tmp_path, out)
        assert all((label == 1).sum() == H * W for label in labels.values()), kind


def test_a_labelme_circle_far_away_keeps_its_edge(tmp_path):
    """A circle of radius 1e9 whose edge crosses the image at x = 20: the left part of the image is inside."""
    src = labelme_files(tmp_path / 'lm', [labelme_shape('cat', [[20 - 1e9, 20], [20, 20]], 'circle')])
    labels = imported(import_('labelme', src, '--out', tmp_path / 'out'), tmp_path, tmp_path / 'out')
    assert (labels['im0'][:, :20] == 1).all() and (labels['im0'][:, 21:] == 0).all()


# --- 5. meaning, not only format ----------------------------------------------------------------------------------

def test_an_index_mask_of_jpeg_data_is_refused(tmp_path):
    """A JPEG saved under a .png name imported as 255 classes of compression noise."""
    src = index_source(tmp_path / 'ix')
    Image.open(src / 'masks' / 'im3.png').save(src / 'masks' / 'im3.png', format='JPEG', quality=90)
    refused(import_('index', src, '--out', tmp_path / 'out'), tmp_path, 'im3.png', 'JPEG', 'PNG')


def save_16_bit(path, seed=0):
    """A dark 16-bit grayscale photo (mean about 6400 of 65535); its values as written."""
    values = np.random.default_rng(seed).integers(0, 12800, SIZE).astype(np.uint16)
    Image.fromarray(values).save(path)
    return values


def test_a_16_bit_photo_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    """Source mean 24.8 of 255 came out 254.9: every value above 255 was clipped to white."""
    src = index_source(tmp_path / 'ix')
    (src / 'images' / 'im3.jpg').unlink()
    values = save_16_bit(src / 'images' / 'im3.png')
    result = import_('index', src, '--out', tmp_path / 'out')
    imported(result, tmp_path, tmp_path / 'out')
    rgb = np.array(Image.open(tmp_path / 'out' / 'images' / 'im3.png'))
    assert (rgb == (values >> 8).astype(np.uint8)[..., None]).all()
    assert '16-bit' in result.stdout, result.stdout


def folder_dataset(tmp_path):
    """An imported folder dataset (with its dataset.json)."""
    src = index_source(tmp_path / 'ix')
    imported(import_('index', src, '--out', tmp_path / 'out', '--val', '0.5'), tmp_path, tmp_path / 'out')
    return tmp_path / 'out'


def test_statistics_of_images_that_changed_since_are_computed_again(tmp_path):
    """Every image rewritten under its id kept the old mean (78, 96, 95 where the images gave 177, 159, 160)."""
    root = folder_dataset(tmp_path)
    old = registry.folder_stats(root)['mean']
    for path in (root / 'images').iterdir():
        Image.fromarray(255 - np.array(Image.open(path))).save(path, format=Image.open(path).format)
    said = []
    data = resolve.resolve_dataset(str(root), said.append)
    assert said and 'computing dataset.json' in said[0]
    assert data.means['color'] != tuple(old)
    assert data.means['color'] == tuple(folder.compute_stats(root, progress=False)['mean'])


def tool(*argv):
    return subprocess.run([str(BIN / argv[0]), *map(str, argv[1:])], capture_output=True, text=True, env=ENV,
                          cwd='/', timeout=600)


def test_a_run_is_fed_the_mean_it_trained_with_after_its_images_changed(tmp_path):
    """Recomputing dataset.json for changed images (above) is right for a new training, wrong for a trained net:
    `fcn-infer --run` and `fcn-score --run` feed it the mean its run.json recorded, and write nothing into the
    training folder."""
    root = folder_dataset(tmp_path)
    start, run = tmp_path / 'start.caffemodel', tmp_path / 'run'
    for argv in (['fcn-surgery', 'init', 'voc-fcn32s', '--random', '--dataset', root, '--width', '1/16', '--out',
                  start],
                 ['fcn-train', 'voc-fcn32s', '--dataset', root, '--weights', start, '--width', '1/16', '--rounds', 1,
                  '--steps', 1, '--base-lr', 1e-12, '--out', run]):
        assert tool(*argv).returncode == 0
    trained = json.loads((root / 'dataset.json').read_text())['mean']
    assert json.loads((run / 'run.json').read_text())['means'] == {'color': trained}
    for path in (root / 'images').iterdir():  # new pictures under the old ids
        Image.fromarray(255 - np.array(Image.open(path))).save(path, format=Image.open(path).format)
    stats = (root / 'dataset.json').read_bytes()
    assert resolve.resolve_model(argparse.Namespace(run=run, model=None, dataset=None, width=1.0, weights=None),
                                 pytest.fail).mean == tuple(trained)
    for argv in (['fcn-infer', '--run', run, root / 'images', '--out', tmp_path / 'seg'], ['fcn-score', '--run', run]):
        result = tool(*argv)
        assert result.returncode == 0 and 'computing' not in result.stderr + result.stdout, result.stderr[-2000:]
    assert (root / 'dataset.json').read_bytes() == stats


@pytest.mark.parametrize('means', [5, {'color': [1, 'x', 3]}, {'color': [1, float('nan'), 3]}, {'color': [1, 2]},
                                   {'color': [1, 2, 300]}])
def test_a_run_record_whose_mean_is_damaged_is_named(means):
    with pytest.raises(cli.BadInput, match="run.json's means .* hold no colour mean"):
        resolve.trained_mean({'means': means}, 'RUN')
    assert resolve.trained_mean({'means': {'hha': [1, 2, 3]}}, 'RUN') is None  # no colour input: nothing to feed


@pytest.mark.parametrize('key,value,words', [('mean_pixels', -5, 'mean_pixels -5'),
                                              ('mean_pixels', float('inf'), 'mean_pixels inf'),
                                              ('mean_pixels', 0, 'mean_pixels 0'),
                                              ('mean', [1.0, float('nan'), 2.0], 'mean'),
                                              ('mean', [1.0, 300.0, 2.0], 'mean'),
                                              ('mean', [1.0, 2.0], 'mean'),
                                              ('pixels', {'train': 'many'}, 'pixels')])
def test_statistics_out_of_range_are_refused_naming_the_file_and_the_command(tmp_path, key, value, words):
    """mean_pixels -5 trained at base_lr -3.75e-06 and Infinity at base_lr 0; a NaN mean was a param_str syntax
    error in training and 'the weights are broken' in fcn-infer."""
    root = folder_dataset(tmp_path)
    stats = json.loads((root / 'dataset.json').read_text())
    stats[key] = value
    (root / 'dataset.json').write_text(json.dumps(stats))
    for read in (registry.folder_dataset, lambda r: registry.mean_pixels(registry.dataset(str(r)))):
        with pytest.raises(registry.NotADataset) as err:
            read(root)
        assert all(w in str(err.value) for w in (str(root / 'dataset.json'), words, f'fcn-data stats {root}')), \
            str(err.value)


def test_fcn_train_and_fcn_infer_refuse_a_damaged_mean_before_caffe(tmp_path):
    """The tools say which file and which command, where a NaN was a param_str syntax error or broken weights."""
    root = folder_dataset(tmp_path)
    stats = json.loads((root / 'dataset.json').read_text())
    (root / 'dataset.json').write_text(json.dumps({**stats, 'mean': [1.0, float('nan'), 2.0]}))
    image = tmp_path / 'ix' / 'images' / 'im0.jpg'
    for argv in (['fcn-train', 'voc-fcn32s', '--out', tmp_path / 'run'],
                 ['fcn-infer', 'voc-fcn32s', '--weights', tmp_path / 'w.caffemodel', image, '--out', tmp_path / 'inf']):
        result = subprocess.run([str(BIN / argv[0]), *map(str, argv[1:]), '--dataset', str(root), '--width', '1/16'],
                                capture_output=True, text=True, env=ENV, cwd='/', timeout=300)
        assert result.returncode == 2 and 'dataset.json: its mean' in result.stderr and \
            f'fcn-data stats {root}' in result.stderr, result.stderr[-2000:]


def test_fcn_data_stats_rewrites_a_damaged_dataset_json(tmp_path):
    """It failed with "... run it again", the very command that had failed."""
    root = folder_dataset(tmp_path)
    good = json.loads((root / 'dataset.json').read_text())
    for damage in ('{"mean": [1, 2', json.dumps({**good, 'mean': 'NaN'}), '[' * 200000):
        (root / 'dataset.json').write_text(damage)
        result = subprocess.run([str(BIN / 'fcn-data'), 'stats', str(root)], capture_output=True, text=True, env=ENV,
                                cwd='/', timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads((root / 'dataset.json').read_text())['mean'] == good['mean']


# --- 8. one line naming the file, never internal ---------------------------------------------------------------

@pytest.mark.parametrize('shape', ['cat', None, 7, ['cat']])
def test_a_labelme_shape_that_is_not_an_object_is_named(tmp_path, shape):
    src = labelme_files(tmp_path / 'lm', [labelme_shape('cat', [[1, 1], [9, 9]], 'rectangle'), shape])
    refused(import_('labelme', src, '--out', tmp_path / 'out'), tmp_path, 'im0.json shape 1')


def test_json_nested_too_deep_is_named(tmp_path):
    """200000 '[' was a RecursionError, an internal error."""
    deep = '[' * 200000 + ']' * 200000
    src = labelme_files(tmp_path / 'lm', [])
    (src / 'im1.json').write_text(deep)
    refused(import_('labelme', src, '--out', tmp_path / 'out'), tmp_path, 'im1.json')
    (tmp_path / 'coco.json').write_text(deep)
    refused(import_('coco', tmp_path / 'coco.json', '--images', src, '--out', tmp_path / 'out'), tmp_path,
            'coco.json')
    root = folder_dataset(tmp_path / 'ds')
    (root / 'dataset.json').write_text(deep)
    with pytest.raises(registry.NotADataset, match='dataset.json'):
        registry.folder_dataset(root)


# --- 9. valid input taken ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('value', [0, 9])
def test_an_undefined_or_invalid_exif_orientation_is_read_as_stored(tmp_path, value):
    """EXIF orientation 0 (undefined) and 9 (invalid) were refused as 'turns or flips it'; viewers show the image
    as stored, and so does the import (the file copied as it is)."""
    src = index_source(tmp_path / 'ix')
    image = src / 'images' / 'im3.jpg'
    exif = Image.Exif()
    exif[0x0112] = value
    Image.open(image).save(image, quality=92, exif=exif)
    imported(import_('index', src, '--out', tmp_path / 'out'), tmp_path, tmp_path / 'out')
    assert (tmp_path / 'out' / 'images' / 'im3.jpg').read_bytes() == image.read_bytes()


def test_a_coco_category_named_background_is_label_0(tmp_path):
    """It was refused as 'background' given twice: the category is the background, label 0."""
    annotations, images = coco_file(tmp_path / 'coco', [(0, [box(100.0)]), (1, [[4, 5, 30, 5, 30, 25, 4, 25]])],
                                    names=('background', 'cat'))
    out = tmp_path / 'out'
    labels = imported(import_('coco', annotations, '--images', images, '--out', out), tmp_path, out)
    assert (out / 'classes.txt').read_text().split() == ['background', 'cat']
    assert (labels['im0'] == 1).sum() > 400 and set(np.unique(labels['im0'])) == {0, 1}


def declare_from(path):
    """A child program: registry.dataset(path), its error printed."""
    try:
        registry.dataset(path)
    except registry.NotADataset as err:
        print(err)


def test_a_dataset_file_named_like_an_installed_module_says_why(tmp_path):
    """--dataset numpy.py could not be imported, without a reason (the file replaced numpy while it ran)."""
    path = tmp_path / 'numpy.py'
    path.write_text('from caffe_fcn import registry\n')
    result = child(declare_from, path)
    assert result.returncode == 0 and 'numpy' in result.stdout and 'rename' in result.stdout, \
        (result.stdout, result.stderr[-2000:])


PHOTO_MODES = ['L', 'LA', 'P', 'RGBA', 'CMYK', 'I;16']


def save_in_mode(path, mode, seed):
    """A 40x56 photo in `mode` (CMYK as a JPEG, the others as PNG); the path written."""
    if mode == 'I;16':
        save_16_bit(path.with_suffix('.png'), seed)
        return path.with_suffix('.png')
    im = Image.fromarray(photo(segmentation(seed), seed))
    im = im.convert(mode) if mode != 'LA' else im.convert('L').convert('LA')
    path = path.with_suffix('.jpg' if mode == 'CMYK' else '.png')
    im.save(path)
    return path


@pytest.mark.parametrize('mode', PHOTO_MODES)
def test_one_rule_for_a_photos_mode_in_import_training_and_inference(tmp_path, mode):
    """fcn-data import converted a grayscale, CMYK, RGBA or 16-bit photo that fcn-train then refused ('convert
    it to RGB'); fcn-infer read it a third way (16-bit clipped). Now all three read the same RGB."""
    from solvers.deploy import read_image

    src = index_source(tmp_path / 'ix')
    (src / 'images' / 'im3.jpg').unlink()
    photo_path = save_in_mode(src / 'images' / 'im3', mode, 3)
    root = tmp_path / 'out'
    imported(import_('index', src, '--out', root, '--val', '0.5'), tmp_path, root)
    written = np.array(Image.open(root / 'images' / 'im3.png'))
    (root / 'images' / 'im3.png').unlink()
    (root / 'images' / photo_path.name).write_bytes(photo_path.read_bytes())  # the photo as it came
    rgb, _ = Folder(root).pair('im3')
    assert rgb.dtype == np.uint8 and (rgb == written).all() and (read_image(photo_path) == written).all()


def read_twice(path):
    """A child program: read_image's header check, then the pixels, of one path (a pipe is read once)."""
    from solvers.deploy import read_image

    print(*read_image(path, decode=False), int(read_image(path).astype(np.int64).sum()))


def test_an_image_piped_as_dev_stdin_is_read_once_whole(tmp_path):
    """/dev/stdin from a pipe was refused as 'not a regular file'."""
    path = tmp_path / 'photo.png'
    Image.fromarray(photo(segmentation(), 0)).save(path)
    with open(path, 'rb') as stdin:
        piped = subprocess.Popen(['cat'], stdin=stdin, stdout=subprocess.PIPE)
        result = child(read_twice, '/dev/stdin', stdin=piped.stdout)
        piped.wait()
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(W), str(H), str(int(photo(segmentation(), 0).astype(np.int64).sum()))]


def test_a_folder_and_a_device_are_refused_as_images(tmp_path):
    from solvers.deploy import read_image

    for path in (tmp_path, '/dev/zero'):
        with pytest.raises(ValueError, match='not a regular file'):
            read_image(path)


def write_quietly(path, data):
    """A FIFO's writer; its reader may stop early (a closed pipe is its answer)."""
    try:
        path.write_bytes(data)
    except BrokenPipeError:
        pass


def test_a_piped_image_larger_than_the_bound_is_refused(tmp_path, monkeypatch):
    from solvers import deploy

    monkeypatch.setattr(deploy, 'MAX_PIPED_BYTES', 1000)
    fifo = tmp_path / 'big.png'
    os.mkfifo(fifo)
    threading.Thread(target=write_quietly, args=(fifo, bytes(5000)), daemon=True).start()
    with pytest.raises(ValueError, match='more than 1000 bytes'):
        deploy.read_image(fifo)


def test_a_folder_dataset_reader_names_a_jpeg_label(tmp_path):
    """The same meaning check in training: a label of JPEG data under a .png name is compression noise."""
    root = folder_dataset(tmp_path)
    label = root / 'labels' / 'im0.png'
    Image.open(label).convert('L').save(label, format='JPEG')
    with pytest.raises(DatasetError, match='im0.png.*JPEG'):
        Folder(root).pair('im0')


def test_numbers_past_floats_range_and_odd_names_are_named(tmp_path):
    """An integer coordinate of 401 digits was an OverflowError (internal); a category named 'ca\\nt' imported as
    two classes 'ca' and 't' (classes.txt one a line); a file_name with a NUL was 'embedded null byte' alone."""
    huge = 10 ** 400
    annotations, images = coco_file(tmp_path / 'coco', [(0, [[4, 5, huge, 5, 30, 25]])])
    refused(import_('coco', annotations, '--images', images, '--out', tmp_path / 'out'), tmp_path,
            'instances.json annotation', 'finite numbers')
    src = labelme_files(tmp_path / 'lm', [labelme_shape('cat', [[1, 1], [huge, 9]], 'rectangle')])
    refused(import_('labelme', src, '--out', tmp_path / 'out'), tmp_path, 'im0.json shape 0', 'finite')
    for name, words in (('ca\nt', "'ca\\nt'"), (' cat', "' cat'")):
        annotations, images = coco_file(tmp_path / 'named', [(0, [box(10.0)])], names=(name,))
        refused(import_('coco', annotations, '--images', images, '--out', tmp_path / 'out'), tmp_path,
                'instances.json', words, 'line break')
    doc = json.loads(annotations.read_text())
    doc['categories'][0]['name'] = 'cat'
    doc['images'][0]['file_name'] = 'im\0.jpg'
    annotations.write_text(json.dumps(doc))
    refused(import_('coco', annotations, '--images', images, '--out', tmp_path / 'out'), tmp_path,
            'instances.json', 'file_name')


def test_a_coco_annotations_not_a_list_and_a_labelme_image_path_with_a_nul_are_named(tmp_path):
    """Found by fuzzing: TypeError: 'int' object is not iterable (internal); ValueError: embedded null byte."""
    annotations, images = coco_file(tmp_path / 'coco', [])
    doc = json.loads(annotations.read_text())
    annotations.write_text(json.dumps({**doc, 'annotations': 7}))
    refused(import_('coco', annotations, '--images', images, '--out', tmp_path / 'out'), tmp_path,
            'instances.json', '"annotations" is not a list')
    src = labelme_files(tmp_path / 'lm', [])
    doc = json.loads((src / 'im1.json').read_text())
    (src / 'im1.json').write_text(json.dumps({**doc, 'imagePath': 'im\0.jpg'}))
    refused(import_('labelme', src, '--out', tmp_path / 'out'), tmp_path, 'im1.json', 'imagePath')
