"""The five datasets' on-disk layouts and how one sample is read from them (no Caffe here).

Each reader turns an id from a split file into channel-first arrays exactly as the reference FCN data
layers feed them, bit for bit: images as float32 BGR minus the dataset mean (subtracted in the mean's dtype,
as each reference layer holds it), labels as uint8 class maps (1 x H x W) with 255 for void. Every file is
checked on the way in (see io.py), so bad data fails naming the file.
"""
import importlib
from pathlib import Path

import numpy as np

from caffe_fcn import registry

from .io import (DatasetError, check_label, check_raw_values, check_same_size, is_plain_name, read_class_list,
                 read_gray16, read_label_png, read_mat, read_photo, read_rgb, read_sbdd_cls, read_split)

SIFTFLOW_SUBDIR = 'spatial_envelope_256x256_static_8outdoorcategories'
NOT_SPLITS = {'classes', 'README', 'readme'}


def named(obj):
    """A declared reader or writer: the object itself, or the one a 'module:name' string names."""
    if not isinstance(obj, str):
        return obj
    module, _, name = obj.partition(':')
    return getattr(importlib.import_module(module), name)


def declared_sources():
    """Every declared Source, the folder dataset's template last."""
    return [s for data in registry.DATASETS.values() for s in data.sources.values()] + [registry.FOLDER_SOURCE]


def plain_split(split):
    """A split name that names a file in the split folder, not a path out of the dataset ('../x')."""
    if not is_plain_name(split):
        raise DatasetError(f"split {split!r} is not a plain name such as 'train' or 'seg11valid'")
    return split


def mean_array(data, value):
    """A mean as the reference's layer for the registry Dataset `data` holds it: its VOC and SBD layers take
    np.array(params['mean']), float64; the others a float32 array. The dtype decides the subtraction's bits."""
    return np.asarray(value, dtype=data.mean_dtype)


def modality_array(modality, path, data):
    """One input image as the data layers of the registry Dataset `data` feed it (C x H x W float32): color as
    BGR minus its mean, NYUDv2's HHA minus its mean (not flipped, as in the reference), depth as log millimetres
    minus its mean."""
    means = data.means
    if modality == 'color':
        return preprocess(read_rgb(path), mean_array(data, means['color']))
    if modality == 'hha':
        hha = read_rgb(path).astype(np.float32)
        hha -= mean_array(data, means['hha'])
        return hha.transpose(2, 0, 1).copy()
    depth = read_gray16(path)
    if depth.ndim != 2 or (depth <= 0).any():
        raise DatasetError(f"{path}: depth must be a single-channel map of positive millimetres "
                           f"(log depth is fed); found zeros or negative values, fill holes first")
    return (np.log(depth) - mean_array(data, (means['depth'],)))[np.newaxis]


def preprocess(rgb, mean):
    """H x W x 3 RGB uint8 -> 3 x H x W float32 BGR minus the mean (Caffe's ILSVRC convention), in the
    reference's arithmetic: float32 pixels, minus `mean` in its own dtype (a tuple is float64, as np.array makes
    it), the result cast back to float32."""
    bgr = rgb[:, :, ::-1].astype(np.float32)
    bgr -= np.asarray(mean)
    return bgr.transpose(2, 0, 1).copy()


class Reader:
    """How one dataset's files are read, rooted at `root` (the data layer's first '*_dir' parameter, or a folder
    dataset's folder); subclasses give the layout and the per-sample reading. `declared` is its registry
    Dataset: class names per task, image mean per modality, the download."""
    name = ''
    key = ''          # the name fcn-data and synthesize use
    data_folder = ''  # its folder under data/
    layout = ''       # the expected files, shown when something is missing
    split_dir = ''    # where the split files live, relative to root
    tops = ()         # the arrays one sample provides, in the reference's top order
    declared = None   # its registry.Dataset
    layer = ''        # the reference's name of the data layer that reads it

    def __init__(self, root, mean=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.name} dataset directory {self.root.resolve()} does not exist.\n{self.help()}")
        self.mean = mean_array(self.declared, self.declared.means['color'] if mean is None else mean)

    def help(self):
        sources = list(self.declared.sources.values())
        download = next((s.download for s in sources if s.layer == self.layer), sources[0].download)
        return f"Expected layout under {self.root}:\n{self.layout}\nGet the real dataset from {download} " \
               f"(see data/{self.data_folder}/README.md), or make a synthetic one with `fcn-data synth {self.key}`."

    @property
    def n_classes(self):
        """The classes of its (first) task, as declared."""
        return self.declared.tasks[0].classes

    def split_file(self, split):
        return self.root / self.split_dir / f'{plain_split(split)}.txt'

    def ids(self, split):
        return read_split(self.split_file(split), self.help())

    def splits(self):
        """The split names present on disk (the reference keeps a classes.txt beside the splits)."""
        return sorted(p.stem for p in self.split_file('*').parent.glob('*.txt') if p.stem not in NOT_SPLITS)

    def load(self, id_, tops=None):
        """A dict top name -> array for one sample; only `tops` (default: all) are read."""
        raise NotImplementedError


class VOC(Reader):
    name, key, data_folder = 'PASCAL VOC', 'voc', 'pascal'
    split_dir = 'ImageSets/Segmentation'
    layout = ("  ImageSets/Segmentation/{split}.txt   one image id per line (e.g. seg11valid.txt)\n"
              "  JPEGImages/{id}.jpg\n"
              "  SegmentationClass/{id}.png           palette PNG, class index per pixel, 255 = void")
    tops = ('data', 'label')
    layer = 'VOCSegDataLayer'
    declared = registry.DATASETS['voc']

    def load(self, id_, tops=None):
        image_path = self.root / 'JPEGImages' / f'{id_}.jpg'
        label_path = self.root / 'SegmentationClass' / f'{id_}.png'
        return self._sample(image_path, read_rgb(image_path), label_path, read_label_png(label_path))

    def _sample(self, image_path, rgb, label_path, label):
        check_same_size(rgb, label, image_path, label_path)
        check_label(label, self.n_classes, label_path)
        return {'data': preprocess(rgb, self.mean), 'label': label[np.newaxis]}


class SBDD(VOC):
    name, key, data_folder = 'SBD', 'sbdd', 'sbdd'
    layer = 'SBDDSegDataLayer'
    split_dir = ''
    layout = ("  {split}.txt          one image id per line (train.txt, val.txt)\n"
              "  img/{id}.jpg\n"
              "  cls/{id}.mat         MATLAB struct GTcls with field Segmentation (uint8 class map, 0..20)")

    def load(self, id_, tops=None):
        image_path = self.root / 'img' / f'{id_}.jpg'
        label_path = self.root / 'cls' / f'{id_}.mat'
        label = read_sbdd_cls(label_path)
        check_raw_values(label, range(self.n_classes), label_path)
        return self._sample(image_path, read_rgb(image_path), label_path, label.astype(np.uint8))


class NYUD(Reader):
    name, key, data_folder = 'NYUDv2', 'nyud', 'nyud'
    layout = ("  {split}.txt                      one image number per line (trainval.txt, test.txt)\n"
              "  data/images/img_{id}.png         color\n"
              "  data/depth/img_{id}.png          16-bit depth in millimetres\n"
              "  data/hha/img_{id}.png            HHA encoding, 3 channels\n"
              "  segmentation/img_{id}.mat        variable 'segmentation', classes 1..40, 0 = void")
    tops = ('color', 'depth', 'hha', 'label')
    layer = 'NYUDSegDataLayer'
    declared = registry.DATASETS['nyud']

    def paths(self, id_):
        return {'color': self.root / 'data' / 'images' / f'img_{id_}.png',
                'depth': self.root / 'data' / 'depth' / f'img_{id_}.png',
                'hha': self.root / 'data' / 'hha' / f'img_{id_}.png',
                'label': self.root / 'segmentation' / f'img_{id_}.mat'}

    def load(self, id_, tops=None):
        paths = self.paths(id_)
        out = {t: self._load_label(paths[t]) if t == 'label' else modality_array(t, paths[t], self.declared)
               for t in (tops or self.tops)}
        first = next(iter(out))
        for t, array in out.items():
            if array.shape[1:] != out[first].shape[1:]:
                raise DatasetError(f"{paths[t]} is {array.shape[1]}x{array.shape[2]} but {paths[first]} is "
                                   f"{out[first].shape[1]}x{out[first].shape[2]}")
        return out

    def _load_label(self, path):
        raw = read_mat(path, 'segmentation')
        check_raw_values(raw, range(self.n_classes + 1), path)
        return (raw.astype(np.uint8) - np.uint8(1))[np.newaxis]  # 0 (void) wraps to 255


class SIFTFlow(Reader):
    name, key, data_folder = 'SIFT Flow', 'siftflow', 'sift-flow'
    layout = (f"  {{split}}.txt                                 one image id per line (trainval.txt, test.txt)\n"
              f"  Images/{SIFTFLOW_SUBDIR}/{{id}}.jpg\n"
              f"  SemanticLabels/{SIFTFLOW_SUBDIR}/{{id}}.mat   variable S, 1..33, 0 = void\n"
              f"  GeoLabels/{SIFTFLOW_SUBDIR}/{{id}}.mat        variable S, 1..3, -1 = void")
    tops = ('data', 'sem', 'geo')
    layer = 'SIFTFlowSegDataLayer'
    declared = registry.DATASETS['siftflow']
    n_sem, n_geo = (task.classes for task in declared.tasks)

    def load(self, id_, tops=None):
        image_path = self.root / 'Images' / SIFTFLOW_SUBDIR / f'{id_}.jpg'
        sem_path = self.root / 'SemanticLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat'
        geo_path = self.root / 'GeoLabels' / SIFTFLOW_SUBDIR / f'{id_}.mat'
        rgb = read_rgb(image_path)
        sem = self._label(sem_path, range(self.n_sem + 1))
        geo = self._label(geo_path, range(-1, self.n_geo + 1))
        for path, label in ((sem_path, sem), (geo_path, geo)):
            check_same_size(rgb, label, image_path, path)
        return {'data': preprocess(rgb, self.mean), 'sem': sem[np.newaxis], 'geo': geo[np.newaxis]}

    @staticmethod
    def _label(path, allowed):
        raw = read_mat(path, 'S')
        check_raw_values(raw, allowed, path)
        raw = np.where(raw == -1, 0, raw)          # geometric void -1 joins void 0
        return raw.astype(np.uint8) - np.uint8(1)  # so that void wraps to 255


def context_voc_dir(context_dir):
    """The folder of PASCAL-Context's VOC2010 images: data/pascal beside data/pascal-context, as the nets read."""
    return Path(context_dir).parent / 'pascal'


class PASCALContext(Reader):
    name, key, data_folder = 'PASCAL-Context', 'pascalcontext', 'pascal-context'
    layout = ("  context_dir/labels.txt           'N: name' for every raw label\n"
              "  context_dir/59_labels.txt        'N: name' for the 59 task classes\n"
              "  context_dir/trainval/{id}.mat    variable LabelMap, raw labels per pixel\n"
              "  voc_dir/VOC2010/ImageSets/Main/{split}.txt, voc_dir/VOC2010/JPEGImages/{id}.jpg")
    tops = ('data', 'label')
    layer = 'PASCALContextSegDataLayer'
    declared = registry.DATASETS['pascalcontext']

    def __init__(self, context_dir, voc_dir, mean=None):
        super().__init__(context_dir, mean)
        self.voc_root = Path(voc_dir) / 'VOC2010'
        if not self.voc_root.is_dir():
            raise DatasetError(f"VOC2010 directory {self.voc_root.resolve()} does not exist.\n{self.help()}")
        self.lookup = self._raw_to_task(read_class_list(self.root / 'labels.txt'),
                                        read_class_list(self.root / '59_labels.txt'))

    def _raw_to_task(self, raw_names, task_names):
        """A lookup table raw label -> task class (1..59), matched by name; everything else is 0."""
        by_name = {name: number for number, name in raw_names.items()}
        lookup = np.zeros(max(raw_names) + 1, dtype=np.uint8)
        for number, name in task_names.items():
            if number == 0:  # some copies of the list name the background too
                continue
            raw_name = registry.CONTEXT_RENAMES.get(name, name)
            if raw_name not in by_name:
                raise DatasetError(f"class {name!r} of {self.root / '59_labels.txt'} is not in "
                                   f"{self.root / 'labels.txt'}")
            lookup[by_name[raw_name]] = number
        return lookup

    def split_file(self, split):
        return self.voc_root / 'ImageSets' / 'Main' / f'{plain_split(split)}.txt'

    def load(self, id_, tops=None):
        image_path = self.voc_root / 'JPEGImages' / f'{id_}.jpg'
        label_path = self.root / 'trainval' / f'{id_}.mat'
        rgb = read_rgb(image_path)
        raw = read_mat(label_path, 'LabelMap')
        check_raw_values(raw, range(len(self.lookup)), label_path)
        check_same_size(rgb, raw, image_path, label_path)
        return {'data': preprocess(rgb, self.mean), 'label': self.lookup[raw][np.newaxis]}


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')


class Folder(Reader):
    """A folder dataset (registry.folder_dataset): classes.txt, images/ID.jpg|png (any mode, read as
    fcn-data import converts it: io.photo_rgb), labels/ID.png (8-bit index or palette PNG, the size of its image),
    train.txt and val.txt; `fcn-data stats` writes its mean to dataset.json."""
    name, key = 'folder', 'folder'
    layout = ("  classes.txt          one class name a line: line i names label value i (255 is void)\n"
              "  images/{id}.jpg      (or .png) the photos\n"
              "  labels/{id}.png      8-bit index or palette PNG, one class index per pixel, 255 = void\n"
              "  train.txt, val.txt   one id a line (`fcn-data split DIR --val 0.1` writes them)")
    tops = ('data', 'label')

    def __init__(self, root, mean=None, stats=True):
        """`stats` False: dataset.json is not read (fcn-data stats, which rewrites it, reads the pairs only)."""
        self.declared = registry.folder_dataset(root, stats)
        super().__init__(root, mean)

    def help(self):
        return f"Expected layout under {self.root}:\n{self.layout}"

    def image_path(self, id_):
        """images/ID with the first suffix present (.jpg, .jpeg, .png), or the .jpg it lacks."""
        if not is_plain_name(id_):
            raise DatasetError(f"id {id_!r} is not a plain file name (no '/', not starting with '.')")
        found = [self.root / 'images' / f'{id_}{suffix}' for suffix in IMAGE_SUFFIXES]
        return next((path for path in found if path.is_file()), found[0])

    def label_path(self, id_):
        return self.root / 'labels' / f'{id_}.png'

    def pair(self, id_):
        """One image (H x W x 3 RGB) and its label (H x W), both checked."""
        image_path, label_path = self.image_path(id_), self.label_path(id_)
        if not image_path.is_file():
            raise DatasetError(f"label {label_path} has no image: images/{id_}.jpg or .png is missing")
        label = read_folder_label(label_path)
        rgb = read_photo(image_path)
        check_same_size(rgb, label, image_path, label_path)
        check_label(label, self.n_classes, label_path)
        return rgb, label

    def load(self, id_, tops=None):
        rgb, label = self.pair(id_)
        return {'data': preprocess(rgb, self.mean), 'label': label[np.newaxis]}


def read_folder_label(path):
    """A folder dataset's label: an 8-bit index or palette PNG; a colour rendering is named as such."""
    if not Path(path).is_file():
        raise DatasetError(f"missing label {path}: every image needs labels/ID.png")
    try:
        return read_label_png(path)
    except DatasetError as err:
        if 'RGB' in str(err):
            raise DatasetError(f"label {path} is an RGB colour image, not class indices: convert it to an 8-bit "
                               "index PNG (`fcn-data import rgb --colors FILE` maps colours to classes)") from None
        raise


READERS = {cls.key: cls for cls in (VOC, SBDD, NYUD, SIFTFlow, PASCALContext)}  # fcn-data's dataset names
