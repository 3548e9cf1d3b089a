"""fcn-data import: masks as people have them (8-bit index PNGs, RGB colour masks, labelme JSON, COCO JSON)
written as a folder dataset (datasets.Folder's layout).

Each format yields Samples: an image and how to draw its label. One writer places every image as its
annotation was made (EXIF orientation), checks the pair, copies the image (never re-encoded unless it must be
turned or is not RGB), writes the label as a VOC palette PNG and counts its pixels, one image at a time. All of
it goes into a hidden folder beside --out that is renamed into place at the end: an import that fails or is
interrupted leaves nothing."""
import base64
import binascii
import io
import json
import math
import os
import shutil
import signal
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from tqdm import tqdm

from caffe_fcn import cli, registry

from . import folder
from .io import (JPEG_MASK, MAX_PIXELS, SIXTEEN_BIT, DatasetError, exif_turn, is_plain_name, palette, photo_rgb,
                 write_label_png)

FORMATS = ('index', 'rgb', 'labelme', 'coco')
VOID = 255
SWAPS_SIDES = {5, 6, 7, 8}     # EXIF orientations that turn the image by 90 degrees
PHOTO_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
COPIED_FORMATS = {'JPEG': '.jpg', 'PNG': '.png'}  # what a folder dataset holds as it is; the rest becomes PNG
VOID_NAMES = {'void', '__ignore__'}  # a colour map's or labelme's name for 255 (labelme's labels.txt: __ignore__)
LABELME_BACKGROUND = '_background_'  # labelme's name for label 0
LABELME_AREAS = ('polygon', 'rectangle', 'circle')
LABELME_NOT_AREAS = ('line', 'linestrip', 'point', 'points')
NEAR = 24  # an unknown colour this close (per channel) to a mapped one is what lossy compression leaves
PIL_SAFE = 1 << 22  # PIL draws an ellipse exactly within this range of coordinates (it overflows near 1e8)


# --- the classes --------------------------------------------------------------------------------------------

@dataclass
class Classes:
    """Class names in label order; `growing`: a name not yet known is appended (labelme without --classes, or
    with --add-classes), else it is an error naming `source`."""
    names: list
    growing: bool = False
    source: str = '--classes'

    def value(self, name, where):
        if name in self.names:
            return self.names.index(name)
        if name in VOID_NAMES:
            return VOID
        if name == LABELME_BACKGROUND:
            return 0
        if not self.growing:
            raise DatasetError(f"{where}: label {name!r} is not in {self.source} ({', '.join(self.names)}); "
                               'pass --add-classes to append the labels it lacks')
        if len(self.names) == registry.MAX_CLASSES:
            raise DatasetError(f'{where}: label {name!r} would be class {len(self.names) + 1}; at most '
                               f'{registry.MAX_CLASSES} fit labels of one byte with 255 for void')
        self.names.append(name)
        return len(self.names) - 1


def read_classes_file(path):
    """--classes FILE: classes.txt's format; labelme's labels.txt (first line __ignore__, for void) too."""
    lines = [line.strip() for line in read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if lines and lines[0] in VOID_NAMES:
        lines = lines[1:]
    if lines and lines[0] == LABELME_BACKGROUND:
        lines[0] = 'background'
    return list(registry.check_classes(tuple(lines), path))


@dataclass
class ColourMap:
    """RGB colour -> label: `names[i]` is label i; void colours give 255."""
    names: list
    colours: dict  # (r, g, b) -> label

    def __post_init__(self):
        keys = {(r << 16) | (g << 8) | b: v for (r, g, b), v in self.colours.items()}
        self.keys = np.array(sorted(keys), np.uint32)
        self.values = np.array([keys[k] for k in self.keys.tolist()], np.uint8)

    def label(self, rgb, path):
        """An H x W x 3 colour mask as H x W labels; a colour not in the map is an error, never snapped."""
        key = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        known = self.keys[at] == key
        if not known.all():
            raise DatasetError(self.unknown(key[~known], path))
        return self.values[at]

    def unknown(self, keys, path):
        colours, counts = np.unique(keys, return_counts=True)
        worst = int(colours[counts.argmax()])
        rgb = (worst >> 16, (worst >> 8) & 255, worst & 255)
        text = (f'{path}: {keys.size} pixels have colours that are not in the colour map ({colours.size} colours), '
                f'most often {rgb} ({counts.max()} pixels)')
        near = min(self.colours, key=lambda c: max(abs(a - b) for a, b in zip(c, rgb, strict=True)))
        if max(abs(a - b) for a, b in zip(near, rgb, strict=True)) <= NEAR:
            value = self.colours[near]
            text += (f", near {near} ({self.names[value] if value != VOID else 'void'}): colours near, not equal "
                     'to, the map\'s are what JPEG compression or smooth resizing leaves, and they are not snapped '
                     'to the nearest class; export the masks losslessly (PNG, nearest-neighbour resizing)')
        return text


def voc_colours():
    """--colors voc: the PASCAL VOC palette, its 21 classes and the void colour (palette entry 255)."""
    cmap = palette()
    colours = {tuple(int(v) for v in cmap[i]): i for i in range(len(registry.VOC_CLASSES))}
    colours[tuple(int(v) for v in cmap[VOID])] = VOID
    return ColourMap(list(registry.VOC_CLASSES), colours)


def read_colours(path):
    """--colors FILE: `name,r,g,b` a line (blank lines and # comments aside); line i of the classes is label i,
    and a line named void gives a colour for 255 (as many as there are)."""
    names, colours = [], {}
    for n, line in enumerate(read_text(path).splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(',')]
        try:
            rgb = tuple(int(v) for v in fields[1:])
        except ValueError:
            rgb = ()
        if len(fields) != 4 or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DatasetError(f'{path} line {n}: expected name,r,g,b with r, g, b from 0 to 255, got {line!r}')
        if rgb in colours:
            raise DatasetError(f'{path} line {n}: colour {rgb} is given twice: one colour, one class')
        if fields[0].lower() in VOID_NAMES:
            colours[rgb] = VOID
        else:
            colours[rgb] = len(names)
            names.append(fields[0])
    return ColourMap(list(registry.check_classes(tuple(names), path)), colours)


def colour_map(text):
    return voc_colours() if text == 'voc' else read_colours(Path(text))


# --- reading what the formats hold --------------------------------------------------------------------------

def regular(path, what):
    """A path that is a regular file if it exists: a FIFO or a device would block or never end."""
    if Path(path).exists() and not Path(path).is_file():
        raise DatasetError(f'{what} {path} is not a regular file')
    return path


def read_text(path):
    regular(path, 'file')
    try:
        return Path(path).read_text(encoding='utf-8')
    except FileNotFoundError:
        raise DatasetError(f'{path} not found') from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f'{path}: unreadable ({err})') from None


def read_json(path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DatasetError(f'{path} is not JSON: {err}') from None
    except RecursionError:
        raise DatasetError(f'{path}: its JSON is nested too deeply to read (an annotation file nests a few '
                           'levels)') from None


def open_image(source, what):
    """An image fully decoded (a truncated file fails here): `source` a path or (name, bytes)."""
    name, data = source if isinstance(source, tuple) else (regular(source, what), None)
    try:
        im = Image.open(io.BytesIO(data) if data is not None else name)
        if im.width * im.height > MAX_PIXELS:
            raise DatasetError(f'{what} {name} is {im.width}x{im.height}: larger than {MAX_PIXELS >> 20} megapixels; '
                               'scale it down first')
        im.load()
    except Image.DecompressionBombError as err:
        raise DatasetError(f'{what} {name} is too large to read safely: {err}') from None
    except FileNotFoundError:
        raise DatasetError(f'{what} {name} not found') from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f'unreadable or truncated {what} {name}: {err}') from None
    return im


def index_mask(path):
    """An 8-bit index or palette PNG as H x W labels; a colour rendering is sent to the rgb format."""
    im = open_image(path, 'mask')
    if im.format == 'JPEG':
        raise DatasetError(f'mask {path} is JPEG data: {JPEG_MASK}')
    if im.mode in ('RGB', 'RGBA'):
        raise DatasetError(f'mask {path} is an RGB colour image, not class indices: import it with `fcn-data '
                           'import rgb --colors FILE` (or --colors voc)')
    if im.mode not in ('P', 'L', '1', 'I', 'I;16', 'I;16B'):
        raise DatasetError(f'mask {path} has image mode {im.mode!r}: an index mask is a grayscale or palette PNG, '
                           'one class index a pixel')
    label = np.array(im)
    if label.max(initial=0) > VOID or label.min(initial=0) < 0:
        raise DatasetError(f'mask {path} holds values up to {label.max()}: labels are 0 to 254, and 255 for void')
    return label.astype(np.uint8)


def rgb_mask(path, colours):
    """An RGB colour mask as H x W labels through the colour map; JPEG masks are refused, not guessed at."""
    im = open_image(path, 'mask')
    if im.format == 'JPEG':
        raise DatasetError(f'mask {path} is a JPEG: its compression leaves colours near, not equal to, the colour '
                           "map's, and they are not snapped to the nearest class; export the masks as PNG")
    if im.mode == 'RGBA' and np.array(im.getchannel('A')).min() < 255:
        raise DatasetError(f'mask {path} is partly transparent: a colour mask gives every pixel one opaque colour')
    if im.mode != 'P' and len(set(im.getbands()) - {'A'}) == 1:
        raise DatasetError(f'mask {path} has one channel: class indices are imported with `fcn-data import index`')
    return colours.label(np.array(im.convert('RGB')), path)


# --- the formats: each yields Samples -----------------------------------------------------------------------

@dataclass
class Sample:
    """One image and its label: `image` a path or (name, bytes); `draw(size)` the H x W uint8 label for the
    annotation's (H, W) `size` (None where the label file fixes it), which the file `size_from` declares; `upright`:
    annotated on the image turned by its EXIF orientation (labelme's way), else on the image as stored or turned,
    whichever its size fits."""
    id: str
    image: object
    draw: Callable
    size: tuple = None
    upright: bool = False
    size_from: object = None


@dataclass
class Report:
    """What an import saw: pixels per label value, what it skipped and what it converted (reason -> ids)."""
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    images: int = 0
    skipped: dict = field(default_factory=lambda: defaultdict(list))
    notes: dict = field(default_factory=lambda: defaultdict(list))


def paired(images_dir, masks_dir, mask_suffixes, report):
    """(id, image path, mask path) for every file stem in both folders, sorted; the others are skipped."""
    def files(root, suffixes, what):
        if not Path(root).is_dir():
            raise DatasetError(f'{root} is not a folder: {what} are read from there')
        found = defaultdict(list)
        for path in sorted(Path(root).iterdir()):
            if path.name.startswith('.') or not path.is_file():
                continue
            if path.suffix.lower() in suffixes:
                found[path.stem].append(path)
            else:
                report.skipped[f'not {what} ({"/".join(suffixes)})'].append(path.name)
        twice = next((stem for stem, paths in found.items() if len(paths) > 1), None)
        if twice is not None:
            raise DatasetError(f'{root} holds {" and ".join(p.name for p in found[twice])}: two files for id '
                               f'{twice!r}; keep one')
        return {stem: paths[0] for stem, paths in found.items()}

    images = files(images_dir, PHOTO_SUFFIXES, 'images')
    masks = files(masks_dir, mask_suffixes, 'masks')
    report.skipped['images without a mask'] += sorted(set(images) - set(masks))
    report.skipped['masks without an image'] += sorted(set(masks) - set(images))
    return [(stem, images[stem], masks[stem]) for stem in sorted(set(images) & set(masks))]


def index_samples(images_dir, masks_dir, report):
    pairs = paired(images_dir, masks_dir, ('.png',), report)
    return len(pairs), (Sample(id_, image, lambda size, mask=mask: index_mask(mask)) for id_, image, mask in pairs)


def rgb_samples(images_dir, masks_dir, colours, report):
    pairs = paired(images_dir, masks_dir, ('.png', '.jpg', '.jpeg'), report)
    return len(pairs), (Sample(id_, image, lambda size, mask=mask: rgb_mask(mask, colours))
                        for id_, image, mask in pairs)


def labelme_samples(src, classes, report):
    """Every labelme JSON in SRC, its image embedded (imageData, as labelme reads it first) or at imagePath."""
    paths = sorted(p for p in Path(src).glob('*.json') if not p.name.startswith('.'))
    if not paths:
        raise DatasetError(f'{src} holds no labelme .json files')

    def samples():
        for path in paths:
            doc = read_json(path)
            shapes = doc.get('shapes') if isinstance(doc, dict) else None
            if not isinstance(shapes, list):
                raise DatasetError(f'{path} is not a labelme file: it has no list of "shapes"')
            yield Sample(path.stem, labelme_image(doc, path),
                         lambda size, doc=doc, path=path: labelme_label(doc, path, size, classes, report),
                         upright=True)
    return len(paths), samples()


def labelme_image(doc, path):
    if doc.get('imageData'):
        try:
            return (f'{path} (imageData)', base64.b64decode(doc['imageData'], validate=True))
        except (binascii.Error, TypeError, ValueError):
            raise DatasetError(f'{path}: its imageData is not base64') from None
    if not isinstance(doc.get('imagePath'), str) or not doc['imagePath'] or '\0' in doc['imagePath']:
        raise DatasetError(f'{path} has neither imageData nor an imagePath (a file name)')
    return path.parent / doc['imagePath'].replace('\\', '/')  # labelme on Windows writes backslashes


def labelme_label(doc, path, size, classes, report):
    """The shapes drawn in file order, later over earlier, as labelme's own export draws them (PIL's polygon,
    rectangle and ellipse, outline included, on the image's canvas, which clips them); lines and points cover
    no area and are skipped. Coordinates beyond the image are clipped in Python first, since PIL's integers
    overflow on them (a polygon at +-1e12 that covers the image came out empty)."""
    h, w = size
    stated = doc.get('imageHeight'), doc.get('imageWidth')
    if None not in stated and tuple(stated) != (h, w):
        raise DatasetError(f'{path}: imageHeight x imageWidth is {stated[0]}x{stated[1]} but its image, turned '
                           f'upright as labelme shows it, is {h}x{w}')
    canvas = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for n, shape in enumerate(doc['shapes']):
        where = f'{path} shape {n}'
        if not isinstance(shape, dict):
            raise DatasetError(f'{where} is {json.dumps(shape)[:40]}, not a shape (an object with "label", "points" '
                               'and "shape_type")')
        kind = shape.get('shape_type') or 'polygon'
        if kind in LABELME_NOT_AREAS:
            report.skipped[f'labelme {kind} shapes (no area)'].append(f'{path.stem}#{n}')
            continue
        if kind not in LABELME_AREAS:
            raise DatasetError(f'{where}: shape_type {kind!r} is not drawn here ({", ".join(LABELME_AREAS)} are)')
        if not isinstance(shape.get('label'), str):
            raise DatasetError(f'{where} has no label')
        value = classes.value(shape['label'], where)
        xy = points(shape.get('points'), 3 if kind == 'polygon' else 2, kind == 'polygon', where)
        if kind == 'polygon':
            xy = clip_polygon(xy, w, h)
            if xy:
                draw.polygon(xy, outline=value, fill=value)
        elif kind == 'rectangle':
            (x0, x1), (y0, y1) = sorted(clamp(p[0], w) for p in xy), sorted(clamp(p[1], h) for p in xy)
            draw.rectangle((x0, y0, x1, y1), outline=value, fill=value)
        else:
            draw_circle(canvas, *xy, value)
    return np.array(canvas)


def clamp(v, side):
    """A coordinate bounded to [-1, side + 1]: just outside the image, so what lies beyond draws as before."""
    return min(max(v, -1.0), side + 1.0)


def clip_polygon(xy, w, h):
    """The part of a polygon [(x, y), ...] inside [-1, w + 1] x [-1, h + 1] (Sutherland-Hodgman: one side of
    the box at a time), its vertices inside unchanged and in order; [] where nothing is left. It draws as the
    whole polygon inside the image, and PIL and pycocotools get coordinates they can take."""
    for axis, bound in ((0, -1.0), (0, w + 1.0), (1, -1.0), (1, h + 1.0)):
        def inside(p, axis=axis, bound=bound):
            return p[axis] >= bound if bound < 0 else p[axis] <= bound
        out = []
        for prev, cur in zip(xy[-1:] + xy[:-1], xy, strict=True):
            if inside(cur) != inside(prev):
                out.append(crossing(prev, cur, axis, bound))
            if inside(cur):
                out.append(cur)
        xy = out
    return xy if len(xy) >= 3 else []


def crossing(p, q, axis, bound):
    """Where the segment p-q crosses axis = bound, computed without overflow for coordinates up to float's
    largest (halves subtracted, the other coordinate interpolated as a weighted sum)."""
    t = (bound / 2 - p[axis] / 2) / (q[axis] / 2 - p[axis] / 2)
    other = p[1 - axis] * (1 - t) + q[1 - axis] * t
    return (bound, other) if axis == 0 else (other, bound)


def draw_circle(canvas, centre, edge, value):
    """A labelme circle (its centre and a point on its edge) onto `canvas`: PIL's ellipse, as labelme draws it,
    where its box is in PIL_SAFE; a larger one, whose edge inside the image is all but straight, by pixel centres
    within its radius (np.hypot does not overflow where PIL does)."""
    (cx, cy), (ex, ey) = centre, edge
    r = math.hypot(ex - cx, ey - cy)
    box = (cx - r, cy - r, cx + r, cy + r)
    if all(abs(v) <= PIL_SAFE for v in box):
        ImageDraw.Draw(canvas).ellipse(box, outline=value, fill=value)
        return
    ys, xs = np.mgrid[0:canvas.height, 0:canvas.width]
    inside = np.hypot(xs - cx, ys - cy) <= r
    canvas.paste(value, (0, 0, canvas.width, canvas.height), Image.fromarray(inside.astype(np.uint8) * 255))


def points(value, n, at_least, where):
    """A shape's points: a list of finite [x, y], exactly n of them (at least n for a polygon)."""
    try:
        xy = [(float(x), float(y)) for x, y in value]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float's range
        xy = None
    if xy is None or not all(math.isfinite(v) for p in xy for v in p) or \
            (len(xy) < n if at_least else len(xy) != n):
        raise DatasetError(f'{where}: its points must be {"at least " if at_least else ""}{n} finite [x, y] pairs')
    return xy


def coco_samples(annotations, images_dir, crowd_as_class, report):
    """A COCO instances or stuff JSON: categories in their order are labels 1.., background 0 (and a category
    named background is that label 0)."""
    doc = read_json(annotations)
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ('images', 'categories')):
        raise DatasetError(f'{annotations} is not a COCO annotations file: it needs lists "images" and "categories"')
    categories = {}
    for cat in doc['categories']:
        if not isinstance(cat, dict) or not isinstance(cat.get('name'), str) or not is_id(cat.get('id')):
            raise DatasetError(f'{annotations}: a category without an id and a name: {str(cat)[:80]}')
        if cat['id'] in categories:
            raise DatasetError(f'{annotations}: category id {cat["id"]} is given twice')
        categories[cat['id']] = 0 if cat['name'] == 'background' else len(set(categories.values()) - {0}) + 1
    names = ['background', *(c['name'] for c in doc['categories'] if c['name'] != 'background')]
    if sum(c['name'] == 'background' for c in doc['categories']) > 1:
        raise DatasetError(f'{annotations}: two categories are named background (label 0): rename one')
    registry.check_classes(tuple(names), f'{annotations} (background and its categories)')
    images = {}
    for im in doc['images']:
        file_name, size = coco_image(im, annotations)
        if im['id'] in images:
            raise DatasetError(f'{annotations}: image id {im["id"]} is given twice')
        images[im['id']] = file_name, size
    if not isinstance(doc.get('annotations', []), list):
        raise DatasetError(f'{annotations}: its "annotations" is not a list')
    by_image = defaultdict(list)
    for n, ann in enumerate(doc.get('annotations') or []):
        where = f'{annotations} annotation {ann.get("id", n) if isinstance(ann, dict) else n}'
        if not isinstance(ann, dict) or not is_id(ann.get('image_id')) or ann['image_id'] not in images:
            raise DatasetError(f'{where}: its image_id is not among the images')
        if not is_id(ann.get('category_id')) or ann['category_id'] not in categories:
            raise DatasetError(f'{where}: its category_id {ann.get("category_id")!r} is not among the categories')
        crowd = bool(ann.get('iscrowd'))
        by_image[ann['image_id']].append((ann['segmentation'] if 'segmentation' in ann else None,
                                          VOID if crowd and not crowd_as_class else categories[ann['category_id']],
                                          where))
    stems = defaultdict(list)
    for file_name, _ in images.values():
        stems[Path(file_name).stem].append(file_name)
    twice = next((files for files in stems.values() if len(files) > 1), None)
    if twice:
        raise DatasetError(f'{annotations}: {" and ".join(twice)} would both be id {Path(twice[0]).stem!r}')
    order = sorted(images, key=lambda i: images[i][0])
    return names, len(order), (Sample(Path(images[i][0]).stem, Path(images_dir) / images[i][0],
                                      lambda size, anns=by_image[i]: coco_label(anns, size), images[i][1],
                                      size_from=annotations)
                               for i in order)


def is_id(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def coco_image(im, annotations):
    """(file_name, (height, width)) of one COCO image entry, checked."""
    ok = isinstance(im, dict) and is_id(im.get('id')) and isinstance(im.get('file_name'), str) and \
        all(isinstance(im.get(k), int) and im[k] > 0 for k in ('height', 'width'))
    if not ok or '..' in Path(im['file_name']).parts or Path(im['file_name']).is_absolute() or \
            '\0' in im['file_name']:
        raise DatasetError(f'{annotations}: an image entry needs an id, a relative file_name and positive height '
                           f'and width: {str(im)[:100]}')
    if not is_plain_name(Path(im['file_name']).stem):
        raise DatasetError(f'{annotations}: file_name {im["file_name"]!r} makes no plain id')
    return im['file_name'], (im['height'], im['width'])


def coco_label(anns, size):
    """Every annotation's mask painted largest first, so where instances overlap the smaller one wins."""
    masks = [(coco_mask(segm, size, where), value) for segm, value, where in anns]
    label = np.zeros(size, np.uint8)
    for mask, value in sorted(masks, key=lambda m: -int(m[0].sum())):  # sorted() is stable: ties keep file order
        label[mask.astype(bool)] = value
    return label


def coco_mask(segm, size, where):
    """One COCO segmentation (polygons, uncompressed or compressed RLE) decoded by pycocotools, after checking
    what its C code trusts: a bad count there writes out of bounds, and polygon coordinates size its buffers
    (+-1e300 crashed it), so polygons are clipped to the image first, as annToRLE draws them on its canvas.
    `size` is the image file's own (Sample.size checked in place)."""
    from pycocotools import mask as cocomask

    h, w = size
    if isinstance(segm, list):
        polygons = [p for p in segm if isinstance(p, list)]
        ok = len(polygons) == len(segm) and all(
            len(p) >= 6 and len(p) % 2 == 0 and all(finite(v) for v in p) for p in polygons)
        if not ok:
            raise DatasetError(f'{where}: a polygon is a list of 3 or more x, y pairs of finite numbers')
        clipped = [clip_polygon(list(zip(p[::2], p[1::2], strict=True)), w, h) for p in polygons]
        flat = [[float(v) for xy in p for v in xy] for p in clipped if p]
        if not flat:
            return np.zeros(size, np.uint8)
        return cocomask.decode(cocomask.merge(cocomask.frPyObjects(flat, h, w)))
    if not isinstance(segm, dict) or list(segm.get('size') or ()) != [h, w]:
        raise DatasetError(f'{where}: an RLE segmentation needs "size" [{h}, {w}] (its image\'s) and "counts"')
    counts = segm.get('counts')
    if isinstance(counts, list):
        ok = all(isinstance(c, int) and c >= 0 for c in counts) and sum(counts) == h * w
        rle = cocomask.frPyObjects(segm, h, w) if ok else None
    else:
        ok = isinstance(counts, str) and compressed_total(counts) == h * w
        rle = {'size': [h, w], 'counts': counts.encode()} if ok else None
    if not ok:
        raise DatasetError(f'{where}: its RLE counts do not cover the {h}x{w} image exactly')
    return cocomask.decode(rle)


def finite(value):
    """A finite int or float; an integer past float's range is not (it overflows on its way to C)."""
    try:
        return isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        return False


def compressed_total(text):
    """The pixels a compressed COCO RLE string covers (its runs summed), or -1 if it is malformed: six bits a
    character from '0', bit 0x20 continues a run, bit 0x10 of the last character is the sign, and from the
    third run on each is stored as its difference to the run two before."""
    runs, x, k = [], 0, 0
    for char in text:
        c = ord(char) - 48
        if not 0 <= c < 64:
            return -1
        x |= (c & 0x1f) << (5 * k)
        k += 1
        if c & 0x20:
            continue
        if c & 0x10:
            x |= -1 << (5 * k)
        runs.append(x + (runs[-2] if len(runs) > 2 else 0))
        x, k = 0, 0
    return sum(runs) if k == 0 and all(r >= 0 for r in runs) else -1


# --- writing ------------------------------------------------------------------------------------------------

def place(sample, im):
    """(label, turn): the label, and whether the image must be turned upright to fit it. No image is turned
    against its mask: where both ways fit (a square image, a flip), that is an error."""
    turn = exif_turn(im)
    stored = (im.height, im.width)
    upright = stored[::-1] if turn in SWAPS_SIDES else stored
    if sample.upright:
        return sample.draw(upright), turn != 1
    if sample.size is not None and tuple(sample.size) not in (stored, upright):
        # refused before drawing: the annotations were made on another rendition of the image, and a declared
        # size is never handed to pycocotools unchecked (the file's own decides)
        raise DatasetError(f'{sample.size_from} declares {sample.image} {sample.size[0]}x{sample.size[1]}, but the '
                           f'file is {stored[0]}x{stored[1]}' + (f' (upright {upright[0]}x{upright[1]})'
                                                                 if upright != stored else '') +
                           ': its annotations were drawn on another size of the image; export them for this file')
    label = sample.draw(sample.size)
    if label.shape == stored and (turn == 1 or label.shape != upright):
        return label, False
    if label.shape == upright and turn != 1 and label.shape != stored:
        return label, True
    if turn != 1 and label.shape == stored == upright:
        raise DatasetError(f'{sample.image}: its EXIF orientation {turn} turns or flips it, and its {label.shape[0]}'
                           f'x{label.shape[1]} mask fits it stored and turned alike: which one was annotated cannot '
                           'be told; save the image upright (or without the orientation tag) and import again')
    raise DatasetError(f'{sample.image} is {stored[0]}x{stored[1]}{" (upright %dx%d)" % upright if turn != 1 else ""}'
                       f' but its mask is {label.shape[0]}x{label.shape[1]}')


def write_image(sample, im, turn, root, link, report):
    """The image into images/: the file itself (copied, hard-linked or, embedded, written) where a folder
    dataset reads it as it is; else the pixels turned upright and/or as RGB, losslessly, as PNG."""
    suffix = COPIED_FORMATS.get(im.format) if im.mode == 'RGB' and not turn else None
    if suffix is None:
        if turn:
            im = ImageOps.exif_transpose(im)
            report.notes['written upright as PNG (EXIF orientation)'].append(sample.id)
        if im.mode in (*SIXTEEN_BIT, 'I'):
            report.notes[f'converted from 16-bit mode {im.mode} to RGB PNG (values >> 8)'].append(sample.id)
        elif im.mode != 'RGB':
            report.notes[f'converted from mode {im.mode} to RGB PNG'].append(sample.id)
        elif not turn:
            report.notes[f'converted from {im.format} to PNG'].append(sample.id)
        name = sample.image[0] if isinstance(sample.image, tuple) else sample.image
        Image.fromarray(photo_rgb(im, name)).save(root / 'images' / f'{sample.id}.png')
        return
    target = root / 'images' / f'{sample.id}{suffix}'
    if isinstance(sample.image, tuple):
        target.write_bytes(sample.image[1])
    elif link:
        try:
            os.link(sample.image, target)
        except OSError as err:
            raise cli.Failure(f'--link {sample.image}: {err.strerror}; hard links need --out on the same file '
                              'system as the images (or leave --link out to copy them)') from None
    else:
        shutil.copyfile(sample.image, target)


def write_pairs(samples, total, root, out, classes, link, report):
    """Every sample checked and written into `root`, one at a time, with a progress bar; an image inside `out`
    (which --overwrite replaces) is refused."""
    for folder_name in ('images', 'labels'):
        (root / folder_name).mkdir()
    for sample in tqdm(samples, total=total, desc='import', unit='img', disable=None):
        if not is_plain_name(sample.id) or sample.id != sample.id.strip() or '\n' in sample.id:
            raise DatasetError(f'{sample.image}: its name makes id {sample.id!r}, which a split file cannot list '
                               '(no leading or trailing spaces, not hidden); rename it')
        if not isinstance(sample.image, tuple) and out in Path(sample.image).resolve().parents:
            raise cli.BadInput(f'image {sample.image} lies inside --out {out}: replacing --out would delete it; '
                               'choose an --out apart from the sources')
        im = open_image(sample.image, 'image')
        label, turn = place(sample, im)
        if classes is not None:
            bad = np.unique(label[(label >= len(classes.names)) & (label != VOID)])
            if bad.size:
                raise DatasetError(f'mask of {sample.image}: values {bad[:10].tolist()} are not among the '
                                   f'{len(classes.names)} classes of {classes.source} nor void (255)')
        write_image(sample, im, turn, root, link, report)
        write_label_png(root / 'labels' / f'{sample.id}.png', label)
        report.pixels += np.bincount(label.ravel(), minlength=256)
        report.images += 1


def index_names(report):
    """An index import without --classes: background and class1.. up to the largest value seen."""
    top = max((v for v in range(VOID) if report.pixels[v]), default=0)
    report.notes['classes named background, class1, ...: edit classes.txt, or import with --classes FILE'] = []
    return ['background', *(f'class{v}' for v in range(1, max(top, 1) + 1))]


def check_out(out, inputs, overwrite):
    """Refuse, before anything is written, an --out that exists (without --overwrite) or that holds or lies
    inside an input: replacing it would delete that input."""
    out = Path(out).resolve()
    for given in inputs:
        given = Path(given).resolve()
        if out == given or given in out.parents or out in given.parents:
            raise cli.BadInput(f'--out {out} and the input {given} overlap: the import would write into its own '
                               'input (or --overwrite delete it); choose an --out apart from the sources')
    if out.exists() and not overwrite:
        raise cli.BadInput(f'--out {out} exists: choose a new folder, or pass --overwrite to replace it once the '
                           'import has succeeded')


def import_dataset(samples, total, out, classes, inputs, report, *, names=None, link=False, val=0.1, seed=0,
                   overwrite=False):
    """Write the samples as a folder dataset at `out` (classes.txt, images/, labels/, train.txt, val.txt,
    dataset.json) through a hidden folder beside it, renamed into place only when all of it is written.
    `names`: the class names where the format fixes them; else those of `classes` (or an index import's)."""
    out = Path(out).resolve()
    check_out(out, inputs, overwrite)
    missing = next((p for p in reversed([out.parent, *out.parent.parents]) if not p.exists()), None)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f'.{out.name}.import-'))
    try:
        with cli.handling(cli.stop, signal.SIGTERM):
            write_pairs(samples, total, work, out, classes, link, report)
            if not report.images:
                raise DatasetError('no image was imported: ' + (skipped_text(report) or 'the source is empty'))
            names = names or (classes.names if classes is not None else index_names(report))
            (work / 'classes.txt').write_text(''.join(f'{n}\n' for n in registry.check_classes(tuple(names), out)))
            splits = folder.write_splits(work, val, seed)
            folder.write_stats(work)
            replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if missing is not None:
            shutil.rmtree(missing, ignore_errors=True)
        raise
    return names, splits


def replace(work, out):
    """Rename the finished folder to `out`; what was at `out` (--overwrite) goes only once the new one is there."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f'.{out.name}.replaced-{os.getpid()}'
        os.rename(out, old)
    os.rename(work, out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


def skipped_text(report):
    return '; '.join(f'{len(ids)} {reason} (e.g. {", ".join(ids[:3])})' for reason, ids in report.skipped.items()
                     if ids)


def summary(out, names, splits, report):
    """The lines printed at the end: counts, pixels per class by name, void, what was skipped or converted."""
    total = int(report.pixels.sum()) or 1
    shares = ', '.join(f'{name} {int(report.pixels[v]):,} ({100 * report.pixels[v] / total:.1f}%)'
                       for v, name in enumerate(names))
    lines = [f'imported {report.images} images into {out} (' + ', '.join(f'{s} {n}' for s, n in splits.items()) +
             ')', f'  classes: {shares}', f'  void: {100 * report.pixels[VOID] / total:.1f}% of the pixels']
    lines += [f'  {reason}' + (f': {len(ids)} (e.g. {", ".join(ids[:3])})' if ids else '')
              for reason, ids in report.notes.items()]
    lines += [f'  skipped: {len(ids)} {reason} (e.g. {", ".join(ids[:3])})' for reason, ids in report.skipped.items()
              if ids]
    return lines
