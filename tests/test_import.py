"""fcn-data import: index PNGs, RGB colour masks, labelme JSON (as labelme 5 writes it) and COCO JSON (polygons,
compressed and uncompressed RLE, made with pycocotools) become folder datasets that check and train; one
segmentation given three ways imports to the same bytes; the real VOC label rendered in its palette comes back
bit for bit; EXIF orientation follows the annotation; every bad input is one line and leaves no --out."""
import base64
import io
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from data_helpers import REFERENCE_DATA
from common import BIN, ENV, REPO
from test_hostile import tool
from test_own_data import WIDTH, readme_commands, start_weights, train

pycocotools = pytest.importorskip('pycocotools')

SIZE = (40, 56)
NAMES = ('background', 'cat', 'dog')
COLOURS = {0: (0, 0, 0), 1: (200, 30, 30), 2: (30, 200, 30)}
# three overlapping rectangles, later over earlier: (value, x0, y0, x1, y1), corners included
RECTS = ((1, 4, 5, 30, 25), (2, 20, 12, 50, 36), (255, 0, 0, 55, 1))


def data_tool(*args, **kw):
    return tool(BIN / 'fcn-data', *args, **kw)


def segmentation(shift=0):
    label = np.zeros(SIZE, np.uint8)
    for value, x0, y0, x1, y1 in RECTS:
        label[y0 + shift:y1 + 1 + shift, x0:x1 + 1] = value
    return label


def photo(label, seed):
    rng = np.random.default_rng(seed)
    return (label[..., None] * np.array([3, 5, 7]) % 256 + rng.integers(0, 40, (*label.shape, 3))).astype(np.uint8)


def save_photo(path, rgb, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    Image.fromarray(rgb).save(path, quality=92, exif=exif)


def rgb_of(label, colours):
    out = np.zeros((*label.shape, 3), np.uint8)
    for value, colour in colours.items():
        out[label == value] = colour
    return out


def index_source(root, n=4):
    """SRC/images/*.jpg and SRC/masks/*.png (8-bit grayscale), one segmentation shifted per image."""
    (root / 'masks').mkdir(parents=True)
    for i in range(n):
        label = segmentation(i)
        save_photo(root / 'images' / f'im{i}.jpg', photo(label, i))
        Image.fromarray(label).save(root / 'masks' / f'im{i}.png')
    (root / 'classes.txt').write_text(''.join(f'{n}\n' for n in NAMES))
    return root


def rgb_source(root, n=4):
    index_source(root, n)
    for mask in (root / 'masks').iterdir():
        Image.fromarray(rgb_of(np.array(Image.open(mask)), {**COLOURS, 255: (255, 255, 255)})).save(mask)
    (root / 'colors.txt').write_text('# name,r,g,b\n' + ''.join(f'{NAMES[v]},{r},{g},{b}\n'
                                                                for v, (r, g, b) in COLOURS.items()) +
                                     'void,255,255,255\n')
    return root


def labelme_shape(label, points, shape_type='polygon'):
    return {'label': label, 'points': points, 'group_id': None, 'description': '', 'shape_type': shape_type,
            'flags': {}, 'mask': None}


def labelme_doc(image_path, shapes, size=SIZE, image_data=None):
    """A labelme 5 file, as its Save writes one."""
    return {'version': '5.4.1', 'flags': {}, 'shapes': shapes, 'imagePath': image_path,
            'imageData': image_data, 'imageHeight': size[0], 'imageWidth': size[1]}


def labelme_source(root, n=4, embed=()):
    """The rectangles as labelme polygons (void as __ignore__), image i beside its JSON or embedded in it."""
    root.mkdir(parents=True)
    names = {1: 'cat', 2: 'dog', 255: '__ignore__'}
    for i in range(n):
        shapes = [labelme_shape(names[v], [[x0, y0 + i], [x1, y0 + i], [x1, y1 + i], [x0, y1 + i]])
                  for v, x0, y0, x1, y1 in RECTS]
        save_photo(root / f'im{i}.jpg', photo(segmentation(i), i))
        data = base64.b64encode((root / f'im{i}.jpg').read_bytes()).decode() if i in embed else None
        if data:
            (root / f'im{i}.jpg').unlink()
        (root / f'im{i}.json').write_text(json.dumps(labelme_doc(f'im{i}.jpg', shapes, image_data=data), indent=2))
    return root


def coco_source(root, n=4):
    """instances.json with a polygon (cat), a compressed RLE (dog, inside the cat: the smaller wins) and an
    uncompressed iscrowd RLE per image; images/ beside it."""
    from pycocotools import mask as cocomask

    (root / 'images').mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        save_photo(root / 'images' / f'im{i}.jpg', photo(segmentation(i), i))
        images.append({'id': 10 + i, 'file_name': f'im{i}.jpg', 'height': SIZE[0], 'width': SIZE[1]})
        cat = [4.0, 5.0 + i, 40.0, 5.0 + i, 40.0, 30.0 + i, 4.0, 30.0 + i]
        dog = np.zeros(SIZE, np.uint8)
        dog[10 + i:20 + i, 10:20] = 1
        rle = cocomask.encode(np.asfortranarray(dog))
        crowd = np.zeros(SIZE, np.uint8)
        crowd[34:, 44:] = 1
        anns += [{'id': 3 * i, 'image_id': 10 + i, 'category_id': 7, 'iscrowd': 0, 'segmentation': [cat]},
                 {'id': 3 * i + 1, 'image_id': 10 + i, 'category_id': 9, 'iscrowd': 0,
                  'segmentation': {'size': list(SIZE), 'counts': rle['counts'].decode()}},
                 {'id': 3 * i + 2, 'image_id': 10 + i, 'category_id': 7, 'iscrowd': 1,
                  'segmentation': {'size': list(SIZE), 'counts': uncompressed(crowd)}}]
    doc = {'images': images, 'annotations': anns,
           'categories': [{'id': 7, 'name': 'cat', 'supercategory': 'animal'},
                          {'id': 9, 'name': 'dog', 'supercategory': 'animal'}]}
    (root / 'instances.json').write_text(json.dumps(doc))
    return root


def uncompressed(mask):
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a run of zeros."""
    flat = mask.ravel(order='F')
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return ([0] if flat[0] else []) + runs


def import_(fmt, *args, **kw):
    return data_tool('import', fmt, *args, **kw)


def sources(tmp_path):
    """(format, arguments) for each format's source made in tmp_path."""
    return {'index': [index_source(tmp_path / 'ix'), '--classes', tmp_path / 'ix' / 'classes.txt'],
            'rgb': [rgb_source(tmp_path / 'rgb'), '--colors', tmp_path / 'rgb' / 'colors.txt'],
            'labelme': [labelme_source(tmp_path / 'lm', embed={1}), '--classes', tmp_path / 'ix' / 'classes.txt'],
            'coco': [coco_source(tmp_path / 'coco') / 'instances.json', '--images', tmp_path / 'coco' / 'images']}


@pytest.mark.parametrize('fmt', ['index', 'rgb', 'labelme', 'coco'])
def test_each_format_imports_to_a_dataset_that_checks_and_trains(tmp_path, fmt):
    out = tmp_path / 'out'
    result = import_(fmt, *sources(tmp_path)[fmt], '--out', out, '--val', '0.25')
    assert result.returncode == 0, result.stderr
    assert 'imported 4 images' in result.stdout and 'train 3, val 1' in result.stdout, result.stdout
    assert (out / 'classes.txt').read_text().split() == list(NAMES)
    assert json.loads((out / 'dataset.json').read_text())['images'] == {'train': 3, 'val': 1}
    labels = [Image.open(p) for p in sorted((out / 'labels').iterdir())]
    assert all(im.mode == 'P' and im.size == SIZE[::-1] for im in labels)
    checked = data_tool('check', out)
    assert checked.returncode == 0 and 'no problems found' in checked.stdout, checked.stdout + checked.stderr
    trained = train('voc-fcn32s', '--dataset', out, '--weights', start_weights(tmp_path, out), '--width', WIDTH,
                    '--rounds', '1', '--steps', '2', '--out', tmp_path / 'run')
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / 'run' / 'best.caffemodel').is_file()


def test_one_segmentation_three_ways_imports_to_the_same_bytes(tmp_path):
    src = sources(tmp_path)
    for fmt in ('index', 'rgb', 'labelme'):
        result = import_(fmt, *src[fmt], '--out', tmp_path / f'{fmt}-out')
        assert result.returncode == 0, result.stderr
    for i in range(4):
        index, rgb, labelme = ((tmp_path / f'{f}-out' / 'labels' / f'im{i}.png').read_bytes()
                               for f in ('index', 'rgb', 'labelme'))
        assert index == rgb == labelme
        assert (np.array(Image.open(io.BytesIO(index))) == segmentation(i)).all()
    # the photos are the source files, byte for byte (the embedded one too)
    copied = tmp_path / 'index-out' / 'images' / 'im0.jpg'
    assert copied.read_bytes() == (tmp_path / 'ix' / 'images' / 'im0.jpg').read_bytes()
    assert (tmp_path / 'labelme-out' / 'images' / 'im1.jpg').read_bytes() == \
        base64.b64decode(json.loads((tmp_path / 'lm' / 'im1.json').read_text())['imageData'])


def test_the_real_voc_label_rendered_in_its_palette_comes_back_bit_for_bit(tmp_path):
    from caffe_fcn.datalayers.io import palette

    (tmp_path / 'src' / 'images').mkdir(parents=True)
    (tmp_path / 'src' / 'masks').mkdir()
    (tmp_path / 'src' / 'images' / 'demo.jpg').write_bytes((REFERENCE_DATA / 'demo' / 'image.jpg').read_bytes())
    (tmp_path / 'src' / 'images' / 'twin.jpg').write_bytes((REFERENCE_DATA / 'demo' / 'image.jpg').read_bytes())
    original = np.array(Image.open(REFERENCE_DATA / 'demo' / 'label.png'))
    assert 255 in original and len(np.unique(original)) > 2
    for id_ in ('demo', 'twin'):
        Image.fromarray(palette()[original]).save(tmp_path / 'src' / 'masks' / f'{id_}.png')
    result = import_('rgb', tmp_path / 'src', '--colors', 'voc', '--out', tmp_path / 'voc')
    assert result.returncode == 0, result.stderr
    assert (np.array(Image.open(tmp_path / 'voc' / 'labels' / 'demo.png')) == original).all()
    assert 'person' in result.stdout and 'void:' in result.stdout


def test_coco_smaller_instances_win_and_crowds_are_void_unless_asked(tmp_path):
    src = sources(tmp_path)['coco']
    assert import_('coco', *src, '--out', tmp_path / 'a').returncode == 0
    result = import_('coco', *src, '--out', tmp_path / 'b', '--crowd-as-class')
    assert result.returncode == 0, result.stderr
    a, b = (np.array(Image.open(tmp_path / x / 'labels' / 'im0.png')) for x in ('a', 'b'))
    assert (a[10:20, 10:20] == 2).all()            # the dog inside the cat: the smaller area wins
    assert a[6, 30] == 1 and a[0, 0] == 0 and (a[34:, 44:] == 255).all() and (b[34:, 44:] == 1).all()


def test_exif_orientation_follows_the_annotation(tmp_path):
    """A photo stored sideways with EXIF orientation 6: labelme annotated it upright, so it is written upright;
    an index mask decides by its size; a square one cannot tell and is refused."""
    stored = photo(np.zeros((SIZE[1], SIZE[0]), np.uint8), 3)  # 56 x 40 as stored, 40 x 56 upright
    lm = tmp_path / 'lm'
    save_photo(lm / 'side.jpg', stored, exif_orientation=6)
    (lm / 'side.json').write_text(json.dumps(labelme_doc('side.jpg', [labelme_shape('cat', [[2, 3], [20, 30]],
                                                                                      'rectangle')])))
    result = import_('labelme', lm, '--out', tmp_path / 'lm-out', '--val', '0.5')
    # one image cannot be split in two: the same error as fcn-data split, and nothing left behind
    assert result.returncode == 2 and 'training and a validation split' in result.stderr
    save_photo(lm / 'other.jpg', photo(np.zeros(SIZE, np.uint8), 4))
    (lm / 'other.json').write_text(json.dumps(labelme_doc('other.jpg', [])))
    result = import_('labelme', lm, '--out', tmp_path / 'lm-out', '--val', '0.5')
    assert result.returncode == 0, result.stderr
    upright = Image.open(tmp_path / 'lm-out' / 'images' / 'side.png')
    label = np.array(Image.open(tmp_path / 'lm-out' / 'labels' / 'side.png'))
    assert upright.size == SIZE[::-1] and label.shape == SIZE and (label[3:31, 2:21] == 1).all()
    expected = np.array(Image.open(lm / 'side.jpg').transpose(Image.Transpose.ROTATE_270))
    assert (np.array(upright) == expected).all() and 'written upright' in result.stdout

    ix = tmp_path / 'ix'
    (ix / 'masks').mkdir(parents=True)
    save_photo(ix / 'images' / 'raw.jpg', stored, exif_orientation=6)
    save_photo(ix / 'images' / 'up.jpg', stored, exif_orientation=6)
    Image.fromarray(np.zeros(stored.shape[:2], np.uint8)).save(ix / 'masks' / 'raw.png')  # drawn as stored
    Image.fromarray(np.ones(SIZE, np.uint8)).save(ix / 'masks' / 'up.png')                # drawn upright
    result = import_('index', ix, '--out', tmp_path / 'ix-out', '--val', '0.5')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'ix-out' / 'images' / 'raw.jpg').read_bytes() == (ix / 'images' / 'raw.jpg').read_bytes()
    assert Image.open(tmp_path / 'ix-out' / 'images' / 'up.png').size == SIZE[::-1]
    square = photo(np.zeros((40, 40), np.uint8), 5)
    save_photo(ix / 'images' / 'sq.jpg', square, exif_orientation=6)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(ix / 'masks' / 'sq.png')
    result = import_('index', ix, '--out', tmp_path / 'ix-sq')
    assert result.returncode == 2 and 'cannot be told' in result.stderr and not (tmp_path / 'ix-sq').exists()


def test_link_hard_links_the_images_and_overwrite_replaces_only_once_done(tmp_path):
    src = sources(tmp_path)['index']
    out = tmp_path / 'out'
    assert import_('index', *src, '--out', out, '--link').returncode == 0
    assert os.stat(out / 'images' / 'im0.jpg').st_ino == os.stat(tmp_path / 'ix' / 'images' / 'im0.jpg').st_ino
    result = import_('index', *src, '--out', out)
    assert result.returncode == 2 and '--overwrite' in result.stderr
    Image.fromarray(np.full(SIZE, 9, np.uint8)).save(tmp_path / 'ix' / 'masks' / 'im3.png')  # 9: beyond 3 classes
    result = import_('index', *src, '--out', out, '--overwrite')
    assert result.returncode == 2 and 'values [9]' in result.stderr and (out / 'labels' / 'im3.png').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['coco', 'ix', 'lm', 'out', 'rgb']  # nothing hidden left
    names = data_tool('import', 'index', tmp_path / 'ix', '--out', tmp_path / 'auto', '--val', '0.5')
    assert names.returncode == 0 and (tmp_path / 'auto' / 'classes.txt').read_text().split()[-1] == 'class9'


def break_source(tmp_path, how):
    """(format, arguments) of a source broken one way; the broken file sorts last, after pairs that were fine."""
    fmt = how.split(':')[0]
    src = sources(tmp_path)[fmt]
    root = tmp_path / {'index': 'ix', 'rgb': 'rgb', 'labelme': 'lm', 'coco': 'coco'}[fmt]
    if how == 'rgb:unknown colour':
        mask = np.array(Image.open(root / 'masks' / 'im3.png'))
        mask[:5, :7] = (1, 2, 3)
        Image.fromarray(mask).save(root / 'masks' / 'im3.png')
    elif how == 'rgb:jpeg mask':
        Image.open(root / 'masks' / 'im3.png').save(root / 'masks' / 'zz.jpg', quality=90)
        (root / 'images' / 'zz.jpg').write_bytes((root / 'images' / 'im3.jpg').read_bytes())
    elif how == 'rgb:near colours':
        mask = np.array(Image.open(root / 'masks' / 'im3.png')).astype(int)
        mask[mask[..., 0] == 200] += (-3, 2, 1)
        Image.fromarray(mask.astype(np.uint8)).save(root / 'masks' / 'im3.png')
    elif how == 'index:rgb mask':
        Image.new('RGB', SIZE[::-1]).save(root / 'masks' / 'im3.png')
    elif how == 'index:other size':
        Image.new('L', (10, 10)).save(root / 'masks' / 'im3.png')
    elif how == 'index:truncated image':
        data = (root / 'images' / 'im3.jpg').read_bytes()
        (root / 'images' / 'im3.jpg').write_bytes(data[:len(data) // 2])
    elif how == 'labelme:unknown label':
        doc = json.loads((root / 'im3.json').read_text())
        doc['shapes'][0]['label'] = 'zebra'
        (root / 'im3.json').write_text(json.dumps(doc))
    elif how == 'labelme:wrong size':
        doc = json.loads((root / 'im3.json').read_text())
        doc['imageWidth'] = 99
        (root / 'im3.json').write_text(json.dumps(doc))
    elif how == 'labelme:not json':
        (root / 'im3.json').write_text('{"shapes": [')
    elif how.startswith('coco:'):
        doc = json.loads((root / 'instances.json').read_text())
        ann = doc['annotations'][-2 if 'compressed' in how else -1]
        if how == 'coco:short rle':
            ann['segmentation']['counts'] = ann['segmentation']['counts'][:-1]
        elif how == 'coco:bad compressed rle':
            ann['segmentation']['counts'] = ann['segmentation']['counts'][:-1] + '~~'
        elif how == 'coco:unknown image':
            ann['image_id'] = 999
        (root / 'instances.json').write_text(json.dumps(doc))
    return fmt, src


BROKEN = [('rgb:unknown colour', ['colours that are not in the colour map', '(1, 2, 3) (35 pixels)']),
          ('rgb:jpeg mask', ['is a JPEG', 'not snapped']),
          ('rgb:near colours', ['near (200, 30, 30) (cat)', 'not snapped']),
          ('index:rgb mask', ['RGB colour image', 'import rgb']),
          ('index:other size', ['im3.jpg is 40x56', 'mask is 10x10']),
          ('index:truncated image', ['unreadable or truncated image']),
          ('labelme:unknown label', ["label 'zebra' is not in", '--add-classes']),
          ('labelme:wrong size', ['imageHeight x imageWidth is 40x99', 'is 40x56']),
          ('labelme:not json', ['im3.json is not JSON']),
          ('coco:short rle', ['do not cover the 40x56 image']),
          ('coco:bad compressed rle', ['do not cover the 40x56 image']),
          ('coco:unknown image', ['image_id is not among the images'])]


@pytest.mark.parametrize('how,words', BROKEN, ids=[b[0] for b in BROKEN])
def test_each_bad_input_is_one_line_and_leaves_no_out(tmp_path, how, words):
    fmt, src = break_source(tmp_path, how)
    out = tmp_path / 'deep' / 'out'
    result = import_(fmt, *src, '--out', out)
    assert result.returncode == 2, (result.stdout, result.stderr)
    error = [line for line in result.stderr.splitlines() if 'error:' in line]
    assert len(error) == 1 and all(w in error[0] for w in words), result.stderr
    assert not (tmp_path / 'deep').exists()


def test_out_apart_from_the_sources_and_options_that_do_not_apply(tmp_path):
    src = sources(tmp_path)
    for args, words in (([*src['index'], '--out', tmp_path / 'ix'], 'overlap'),
                        ([*src['index'], '--out', tmp_path / 'ix' / 'images'], 'overlap'),
                        ([*src['index'], '--out', tmp_path / 'out', '--colors', 'voc'], '--colors applies to rgb'),
                        ([tmp_path / 'ix', '--out', tmp_path / 'out', '--classes', tmp_path / 'missing.txt'],
                         'missing.txt not found')):
        result = import_('index', *args)
        assert result.returncode == 2 and words in result.stderr, result.stderr
    result = import_('rgb', tmp_path / 'rgb', '--out', tmp_path / 'out')
    assert result.returncode == 2 and '--colors voc' in result.stderr
    os.mkfifo(tmp_path / 'fifo')
    doc = json.loads((tmp_path / 'lm' / 'im0.json').read_text())
    (tmp_path / 'lm' / 'im0.json').write_text(json.dumps({**doc, 'imagePath': '../fifo'}))
    for fmt, args in (('labelme', [tmp_path / 'lm']), ('rgb', [tmp_path / 'rgb', '--colors', tmp_path / 'fifo'])):
        result = import_(fmt, *args, '--out', tmp_path / 'out', timeout=60)  # a FIFO would block a read forever
        assert result.returncode == 2 and 'fifo is not a regular file' in result.stderr, result.stderr
    (tmp_path / 'fifo').unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['coco', 'ix', 'lm', 'rgb']


def test_a_terminated_import_leaves_nothing(tmp_path):
    src = index_source(tmp_path / 'ix', n=400)
    proc = subprocess.Popen([str(BIN / 'fcn-data'), 'import', 'index', str(src), '--out', str(tmp_path / 'out')],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob('.out.import-*/labels/*.png')):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and 'interrupted' in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ix']


def test_the_readme_import_commands_run_as_written(tmp_path):
    commands = readme_commands('Your own data', block=1)
    assert [c.split()[2] for c in commands] == ['index', 'rgb', 'labelme', 'coco']
    index_source(tmp_path / 'index')
    rgb_source(tmp_path / 'rgb')
    labelme_source(tmp_path / 'labelme')
    coco_source(tmp_path / 'coco')
    for command in commands:
        result = subprocess.run(command.replace('/tmp/fcn-own', str(tmp_path)), shell=True, capture_output=True,
                                text=True, cwd=REPO, env=ENV, timeout=300)
        assert result.returncode == 0 and 'imported 4 images' in result.stdout, (command, result.stderr)


def test_labelme_rectangles_circles_new_labels_and_shapes_without_area(tmp_path):
    root = tmp_path / 'lm'
    root.mkdir()
    save_photo(root / 'a.jpg', photo(np.zeros(SIZE, np.uint8), 1))
    save_photo(root / 'b.jpg', photo(np.zeros(SIZE, np.uint8), 2))
    shapes = [labelme_shape('cat', [[30, 20], [5, 2]], 'rectangle'),        # corners in either order
              labelme_shape('bird', [[40, 25], [40, 35]], 'circle'),        # centre, then a point on the rim
              labelme_shape('dog', [[0, 0], [50, 30]], 'line')]             # no area: skipped, and said so
    (root / 'a.json').write_text(json.dumps(labelme_doc('a.jpg', shapes)))
    (root / 'b.json').write_text(json.dumps(labelme_doc('b.jpg', [])))
    classes = tmp_path / 'labels.txt'
    classes.write_text('__ignore__\n_background_\ncat\ndog\n')              # labelme's own labels.txt
    refused = import_('labelme', root, '--classes', classes, '--out', tmp_path / 'out')
    assert refused.returncode == 2 and "label 'bird' is not in" in refused.stderr
    result = import_('labelme', root, '--classes', classes, '--add-classes', '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'out' / 'classes.txt').read_text().split() == ['background', 'cat', 'dog', 'bird']
    label = np.array(Image.open(tmp_path / 'out' / 'labels' / 'a.png'))
    assert (label[2:21, 5:31] == 1).all() and label[21, 5] == 0 and label[2, 31] == 0
    disc = label == 3
    assert disc[25, 40] and not disc[25, 29] and abs(disc.sum() / (np.pi * 10 ** 2) - 1) < 0.15
    assert not (label == 2).any() and 'skipped: 1 labelme line shapes (no area)' in result.stdout


@pytest.mark.parametrize('mode', ['1', 'I;16'])
def test_binary_and_16_bit_index_masks(tmp_path, mode):
    (tmp_path / 'src' / 'masks').mkdir(parents=True)
    for i in range(2):
        label = segmentation(i) == 1
        save_photo(tmp_path / 'src' / 'images' / f'{i}.jpg', photo(label.astype(np.uint8), i))
        im = Image.fromarray(label) if mode == '1' else Image.fromarray(label.astype(np.uint16) * 7)
        im.save(tmp_path / 'src' / 'masks' / f'{i}.png')
    result = import_('index', tmp_path / 'src', '--out', tmp_path / 'out', '--val', '0.5')
    assert result.returncode == 0, result.stderr
    top = 1 if mode == '1' else 7
    assert (np.array(Image.open(tmp_path / 'out' / 'labels' / '1.png')) == (segmentation(1) == 1) * top).all()
    assert (tmp_path / 'out' / 'classes.txt').read_text().split()[-1] == f'class{top}'
