"""Synthetic datasets in exactly the real on-disk layouts, with content a small FCN can learn quickly.

A scene is a noisy background with a few large simple shapes; each class has its own color and texture,
so both cues identify it. Only a handful of classes appear (the label space stays the real one).
Everything is drawn from numpy generators seeded by (seed, image number), so a seed gives the same files.

VOC and SBD share one "universe" of images: id 2011_NNNNNN is the same picture in both, as the real SBD
re-annotates VOC images. With the same count and seed, the VOC val images that are in SBD train are left
out of seg11valid, exactly as the real seg11valid is derived (caffe_fcn.datalayers.tools.seg11valid).
"""
import io
from pathlib import Path

import numpy as np
import scipy.io
import scipy.ndimage as ndi
import scipy.sparse
from PIL import Image
from skimage.draw import ellipse, polygon
from tqdm import tqdm

from caffe_fcn import registry
from caffe_fcn.files import write_atomic

from .datasets import READERS, SIFTFLOW_SUBDIR, context_voc_dir, declared_sources, named
from .io import write_label_png
from .tools import seg11valid

DEFAULT_SIZES = {'voc': None, 'sbdd': None, 'pascalcontext': None, 'nyud': (96, 128), 'siftflow': (96, 96),
                 'folder': None}
MIN_COUNT = 4
MAX_COUNT = 1_000_000

# Well separated colors (RGB) and textures; class slot i of a dataset gets COLORS[i] and TEXTURES[i].
COLORS = np.array([(120, 118, 112), (220, 40, 40), (40, 170, 60), (50, 80, 220), (230, 200, 40),
                   (200, 60, 200), (40, 200, 210), (240, 140, 40)], dtype=np.float32)
TEXTURES = (
    lambda y, x, p: 0.3 * np.sin(y / p + x / (3 * p)),           # soft waves (backgrounds)
    lambda y, x, p: np.sin(2 * np.pi * y / p),                   # horizontal stripes
    lambda y, x, p: np.sin(2 * np.pi * x / p),                   # vertical stripes
    lambda y, x, p: np.sign(np.sin(np.pi * y / p) * np.sin(np.pi * x / p)),  # checkerboard
    lambda y, x, p: np.sin(2 * np.pi * (x + y) / p),             # diagonal stripes
    lambda y, x, p: np.cos(2 * np.pi * x / p) * np.cos(2 * np.pi * y / p),   # dots
    lambda y, x, p: np.zeros_like(y),                            # plain
    lambda y, x, p: np.sin(2 * np.pi * (x - y) / p),             # anti-diagonal stripes
)

# Classes that appear in each synthetic dataset, in slot order (slot 0 is the background / first stuff class).
VOC_PRESENT = (0, 1, 7, 12, 15)              # background, aeroplane, car, dog, person
NYUD_STUFF, NYUD_THINGS = (1, 2), (4, 5, 7, 9)  # wall, floor; bed, chair, table, window (raw 1-based)
SIFTFLOW_STUFF, SIFTFLOW_THINGS = (28, 22), (6, 32, 8)  # sky, road; building, tree, car (raw 1-based)
SIFTFLOW_GEO = {28: 1, 22: 2, 6: 3, 32: 3, 8: 3}     # sky, horizontal, vertical
# Full-list classes outside the 59 (they become background); the 59 and their full-list spellings are the registry's.
CONTEXT_EXTRA = ('accordion', 'air conditioner', 'bird cage', 'clothes tree', 'pool table', 'tableware')
CONTEXT_STUFF, CONTEXT_THINGS = ('sky', 'grass'), ('person', 'table', 'cat', 'air conditioner')  # raw names


def synthesize(dataset, out_dir, count=40, seed=0, size=None):
    """Write a synthetic `dataset` under out_dir; return the directory to give the data layer.

    Each goes where data/README.md puts the real one when out_dir is its folder there: voc -> out_dir/VOC2011
    (voc_dir), sbdd -> out_dir/dataset (sbdd_dir), nyud -> out_dir (nyud_dir), siftflow -> out_dir
    (siftflow_dir), pascalcontext -> out_dir (context_dir) with its VOC2010 images beside it, in
    out_dir/../pascal/VOC2010 (voc_dir out_dir/../pascal), as data/pascal-context and data/pascal/VOC2010.
    size: (height, width) of every image; None gives each dataset's default (VOC-like sets vary per image).
    """
    writers = {named(s.reader).key: named(s.writer) for s in declared_sources() if s.writer}
    if dataset not in writers:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(writers)}")
    if not isinstance(count, int) or not MIN_COUNT <= count <= MAX_COUNT:
        raise ValueError(f"count must be an integer from {MIN_COUNT} (every split needs an image) to {MAX_COUNT} "
                         f"(a synthetic set is for tests and demos), got {count!r}")
    if size is not None and (len(size) != 2 or min(size) < 16):
        raise ValueError(f"size must be (height, width) of at least 16 pixels each, got {size!r}")
    size = size if size is not None else DEFAULT_SIZES[dataset]
    return writers[dataset](Path(out_dir), count, seed, size)


def dir_overrides(dataset, root):
    """The param_str overrides that point a net's data layer at a synthesized (or real) dataset: every '*_dir'
    key of the registry's source whose layer reads `dataset`, set to `root` (PASCAL-Context's voc_dir: the
    pascal folder beside it, where synthesize writes VOC2010)."""
    layer = READERS[dataset].layer
    dirs = {key: str(root) for key in registry.source(layer).params if key.endswith('_dir')}
    if dataset == 'pascalcontext':
        dirs['voc_dir'] = str(context_voc_dir(root))
    return dirs


# --- scenes ------------------------------------------------------------------------------------------------

def image_size(rng, size):
    if size is not None:
        return tuple(size)
    return int(rng.integers(80, 113)), int(rng.integers(96, 129))


def random_shape(rng, h, w):
    """A large ellipse, rectangle or triangle, as a boolean mask."""
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = rng.uniform(0.15, 0.32) * h, rng.uniform(0.15, 0.32) * w
    kind = rng.integers(3)
    if kind == 0:
        rr, cc = ellipse(cy, cx, ry, rx, shape=(h, w))
    elif kind == 1:
        rr, cc = polygon([cy - ry, cy - ry, cy + ry, cy + ry], [cx - rx, cx + rx, cx + rx, cx - rx], shape=(h, w))
    else:
        rr, cc = polygon([cy - ry, cy + ry, cy + ry], [cx, cx - rx, cx + rx], shape=(h, w))
    mask = np.zeros((h, w), dtype=bool)
    mask[rr, cc] = True
    return mask


def scene(rng, h, w, stuff, things, max_things=3):
    """A class map: `stuff` classes split the image at a random horizon (one stuff class fills it when
    there is only one), then 1..max_things shapes of random `things` classes on top."""
    label = np.full((h, w), stuff[0], dtype=np.int32)
    if len(stuff) > 1:
        horizon = int(rng.uniform(0.35, 0.65) * h)
        label[horizon:] = stuff[1]
    for _ in range(rng.integers(1, max_things + 1)):
        label[random_shape(rng, h, w)] = things[rng.integers(len(things))]
    return label


def render(rng, label, slots, noise=10.0):
    """An RGB image for a class map: class c gets color and texture of its slot, plus shading and noise."""
    h, w = label.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy += rng.uniform(0, 50)
    xx += rng.uniform(0, 50)
    image = np.zeros((h, w, 3), dtype=np.float32)
    for cls in np.unique(label):
        slot = slots[int(cls)]
        mask = label == cls
        pattern = TEXTURES[slot % len(TEXTURES)](yy[mask], xx[mask], rng.uniform(5, 8))
        color = COLORS[slot % len(COLORS)] * rng.uniform(0.85, 1.15)
        image[mask] = color * (0.75 + 0.25 * pattern)[:, None]
    image += rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def boundaries(label, width=1):
    """Pixels within `width` of a class change: where VOC-style annotations put their void band."""
    edge = np.zeros(label.shape, dtype=bool)
    edge[:-1] |= label[:-1] != label[1:]
    edge[1:] |= label[:-1] != label[1:]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    edge[:, 1:] |= label[:, :-1] != label[:, 1:]
    return ndi.binary_dilation(edge, iterations=width - 1) if width > 1 else edge


def save_jpeg(path, rgb):
    save_image(path, Image.fromarray(rgb), 'JPEG', quality=92)


def save_png(path, array):
    save_image(path, Image.fromarray(array), 'PNG')


def save_image(path, image, fmt, **options):
    """An image encoded in memory and written through the atomic path."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    write_atomic(path, buffer.getvalue())


# scipy stamps the creation time into the 116-byte text header; a fixed header keeps a seed's output identical.
MAT_HEADER = b'MATLAB 5.0 MAT-file, Platform: posix, Created by: fcn-data synth'.ljust(116)


def save_mat(path, variables):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True)
    write_atomic(path, MAT_HEADER + buffer.getvalue()[len(MAT_HEADER):])


def write_split(path, ids):
    write_atomic(path, ''.join(f'{i}\n' for i in ids))


def progress(what, count):
    return tqdm(range(count), desc=f'synth {what}', unit='img', leave=False, disable=None)


# --- VOC and SBD: one universe of images ----------------------------------------------------------------------

def voc_id(index):
    return f'2011_{index:06d}'


def voc_scene(seed, index, size):
    """Image and class map of universe image `index` (the same picture for VOC and SBD)."""
    rng = np.random.default_rng([seed, index, 2011])
    h, w = image_size(rng, size)
    label = scene(rng, h, w, VOC_PRESENT[:1], VOC_PRESENT[1:])
    slots = {c: i for i, c in enumerate(VOC_PRESENT)}
    return render(rng, label, slots), label


def sbdd_train(count):
    """The ids of synthetic SBD train: three of every four images (the fourth is SBD val)."""
    return [voc_id(i) for i in range(count) if i % 4 != 3]


def write_voc(out, count, seed, size):
    root = out / 'VOC2011'
    for index in progress('voc', count):
        rgb, label = voc_scene(seed, index, size)
        objects = np.zeros(label.shape, dtype=np.uint8)
        for n, component in enumerate(ndi.find_objects(ndi.label(label > 0)[0]), 1):
            objects[component][(label[component] > 0) & (objects[component] == 0)] = n
        void = boundaries(label)
        save_jpeg(root / 'JPEGImages' / f'{voc_id(index)}.jpg', rgb)
        write_label_png(root / 'SegmentationClass' / f'{voc_id(index)}.png', np.where(void, 255, label))
        write_label_png(root / 'SegmentationObject' / f'{voc_id(index)}.png', np.where(void, 255, objects))
    ids = [voc_id(i) for i in range(count)]
    splits = root / 'ImageSets' / 'Segmentation'
    write_split(splits / 'train.txt', ids[0::2])
    write_split(splits / 'val.txt', ids[1::2])
    write_split(splits / 'trainval.txt', ids)
    write_split(splits / 'seg11valid.txt', seg11valid(ids[1::2], sbdd_train(count)))
    return root


def gt_cls(label):
    """SBD's GTcls struct: per-class boundary maps (sparse), the class map, the classes present."""
    edges = boundaries(label)
    bounds = np.empty((20, 1), dtype=object)
    for k in range(20):
        bounds[k, 0] = scipy.sparse.csc_matrix(edges & (label == k + 1))
    present = np.unique(label[label > 0]).astype(np.uint8)[:, None]
    return {'Boundaries': bounds, 'Segmentation': label.astype(np.uint8), 'CategoriesPresent': present}


def write_sbdd(out, count, seed, size):
    root = out / 'dataset'
    for index in progress('sbdd', count):
        rgb, label = voc_scene(seed, index, size)
        save_jpeg(root / 'img' / f'{voc_id(index)}.jpg', rgb)
        save_mat(root / 'cls' / f'{voc_id(index)}.mat', {'GTcls': gt_cls(label)})
    write_split(root / 'train.txt', sbdd_train(count))
    write_split(root / 'val.txt', [voc_id(i) for i in range(count) if i % 4 == 3])
    return root


# --- NYUDv2 ---------------------------------------------------------------------------------------------------

def nyud_modalities(rng, label, rgb_slots):
    """Color, depth (mm) and HHA that agree with the class map: stuff is far, things are near."""
    h, _ = label.shape
    rows = np.arange(h, dtype=np.float32)[:, None]
    depth = np.full(label.shape, 3500.0, dtype=np.float32)
    depth = np.where(label == 2, 1200 + 2800 * (h - rows) / h, depth)          # floor recedes to the horizon
    for k, cls in enumerate(NYUD_THINGS):
        depth = np.where(label == cls, 1500 + 400 * k, depth)
    depth *= rng.uniform(0.9, 1.1)
    depth += rng.normal(0, 30, depth.shape)
    height = np.where(label == 2, 0, 40 + 150 * (h - rows) / h)                # above the floor
    angle = np.select([label == 2, label == 7], [200, 170], 60)               # horizontal vs vertical surfaces
    hha = np.stack([6e5 / depth, height + np.zeros_like(depth), angle + np.zeros_like(depth)], axis=-1)
    hha += rng.normal(0, 6, hha.shape)
    return (render(rng, label, rgb_slots), np.clip(depth, 300, 10000).astype(np.uint16),
            np.clip(hha, 0, 255).astype(np.uint8))


def write_nyud(out, count, seed, size):
    slots = {c: i for i, c in enumerate(NYUD_STUFF + NYUD_THINGS)}
    ids = [str(5001 + i) for i in range(count)]
    for index in progress('nyud', count):
        rng = np.random.default_rng([seed, index, 40])
        h, w = image_size(rng, size)
        label = scene(rng, h, w, NYUD_STUFF, NYUD_THINGS)
        color, depth, hha = nyud_modalities(rng, label, slots)
        name = f'img_{ids[index]}'
        save_png(out / 'data' / 'images' / f'{name}.png', color)
        save_png(out / 'data' / 'depth' / f'{name}.png', depth)
        save_png(out / 'data' / 'hha' / f'{name}.png', hha)
        save_mat(out / 'segmentation' / f'{name}.mat',
                 {'segmentation': np.where(boundaries(label), 0, label).astype(np.uint8)})
    test = ids[3::4]
    train, val = [i for i in ids if i not in test][0::2], [i for i in ids if i not in test][1::2]
    for split, split_ids in (('train', train), ('val', val), ('trainval', train + val), ('test', test)):
        write_split(out / f'{split}.txt', sorted(split_ids))
    return out


# --- SIFT Flow ------------------------------------------------------------------------------------------------

def siftflow_id(index):
    category = ('coast', 'highway', 'insidecity', 'street')[index % 4]
    return f'{category}_synth{index:04d}'


def write_siftflow(out, count, seed, size):
    slots = {c: i for i, c in enumerate(SIFTFLOW_STUFF + SIFTFLOW_THINGS)}
    geo_of = np.zeros(len(registry.SIFTFLOW_CLASSES) + 1, dtype=np.int16)
    for sem, geo in SIFTFLOW_GEO.items():
        geo_of[sem] = geo
    names = np.array(registry.SIFTFLOW_CLASSES, dtype=object)[None]
    geo_names = np.array(registry.SIFTFLOW_GEO_CLASSES, dtype=object)[None]
    for index in progress('siftflow', count):
        rng = np.random.default_rng([seed, index, 33])
        h, w = image_size(rng, size)
        label = scene(rng, h, w, SIFTFLOW_STUFF, SIFTFLOW_THINGS)
        sem = np.where(boundaries(label), 0, label)  # a thin unlabeled seam, as in LabelMe annotations
        geo = np.where(sem == 0, -1, geo_of[sem])
        name = siftflow_id(index)
        save_jpeg(out / 'Images' / SIFTFLOW_SUBDIR / f'{name}.jpg', render(rng, label, slots))
        save_mat(out / 'SemanticLabels' / SIFTFLOW_SUBDIR / f'{name}.mat', {'S': sem.astype(np.int16), 'names': names})
        save_mat(out / 'GeoLabels' / SIFTFLOW_SUBDIR / f'{name}.mat', {'S': geo.astype(np.int16), 'names': geo_names})
    ids = [siftflow_id(i) for i in range(count)]
    write_split(out / 'trainval.txt', [i for n, i in enumerate(ids) if n % 4 != 3])
    write_split(out / 'test.txt', ids[3::4])
    return out


# --- PASCAL-Context -------------------------------------------------------------------------------------------

def context_lists():
    """labels.txt (full list, alphabetical, spelled as the full list spells them) and 59_labels.txt."""
    raw = sorted({registry.CONTEXT_RENAMES.get(n, n) for n in registry.CONTEXT_59} | set(CONTEXT_EXTRA))
    return ({i: n for i, n in enumerate(raw, 1)}, {i: n for i, n in enumerate(registry.CONTEXT_59, 1)})


def write_pascalcontext(out, count, seed, size):
    raw_names, task_names = context_lists()
    (out / 'labels.txt').parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out / 'labels.txt', ''.join(f'{i}: {n}\n' for i, n in raw_names.items()))
    write_atomic(out / '59_labels.txt', ''.join(f'{i}: {n}\n' for i, n in task_names.items()))
    raw_id = {n: i for i, n in raw_names.items()}
    stuff, things = [raw_id[n] for n in CONTEXT_STUFF], [raw_id[n] for n in CONTEXT_THINGS]
    slots = {c: i for i, c in enumerate(stuff + things)}
    ids = [f'2010_{i:06d}' for i in range(count)]
    voc = context_voc_dir(out) / 'VOC2010'
    for index in progress('pascalcontext', count):
        rng = np.random.default_rng([seed, index, 59])
        h, w = image_size(rng, size)
        label = scene(rng, h, w, stuff, things)
        save_jpeg(voc / 'JPEGImages' / f'{ids[index]}.jpg', render(rng, label, slots))
        save_mat(out / 'trainval' / f'{ids[index]}.mat', {'LabelMap': label.astype(np.uint16)})
    write_split(voc / 'ImageSets' / 'Main' / 'train.txt', ids[0::2])
    write_split(voc / 'ImageSets' / 'Main' / 'val.txt', ids[1::2])
    return out


# --- a folder dataset: your own photos and masks ----------------------------------------------------------

def write_folder(out, count, seed, size):
    """A folder dataset as a user brings one (registry.folder_dataset): classes.txt naming the classes present
    in the VOC scenes, images/*.jpg and labels/*.png (palette, 255 on the boundaries); no split files and no
    dataset.json, which `fcn-data split` and `fcn-data stats` write."""
    names = [registry.VOC_CLASSES[c] for c in VOC_PRESENT]
    renumber = np.full(256, 255, np.uint8)
    renumber[list(VOC_PRESENT)] = np.arange(len(VOC_PRESENT))
    for index in progress('folder', count):
        rgb, label = voc_scene(seed, index, size)
        save_jpeg(out / 'images' / f'photo{index:04d}.jpg', rgb)
        write_label_png(out / 'labels' / f'photo{index:04d}.png', np.where(boundaries(label), 255, renumber[label]))
    write_atomic(out / 'classes.txt', ''.join(f'{name}\n' for name in names))
    return out

