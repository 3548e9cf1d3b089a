"""Every dataset and every model, each declared once, as data.

Nothing here imports Caffe, numpy or a reader: the command-line tools list models and answer --help from it
before pycaffe is built, and every package reads from here what a dataset or a model is. netgen turns a model
into nets and solvers; datalayers reads a dataset's files; solvers trains, scores and segments.

Adding a dataset is one `declare(Dataset(...))` naming its reader (a `caffe_fcn.datalayers.datasets.Reader`, which the
generic data layer `caffe_fcn.datalayers.layers.SegDataLayer` drives) and, for tests and demos, a synthetic writer; a
folder of images and masks is a dataset with no code (`folder_dataset`); adding a model is one
`declare(fcn(...))`, and every single-output colour model trains on any dataset (`for_dataset`).
"""
import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the repository root
DATA = REPO / 'data'  # where datasets go by default (FCN_DATA or --data-root point elsewhere)
DEPLOY_SIZE = 500
SEED = 1337  # the reference data layers' seed
CHANNELS = {'color': 3, 'depth': 1, 'hha': 3}


def data_root(override=None):
    """The folder that holds the datasets: --data-root, else $FCN_DATA, else the repository's data/."""
    return Path(override or os.environ.get('FCN_DATA') or DATA).expanduser().resolve()


@dataclass(frozen=True)
class Task:
    """One output of a net: the head's name suffix, its class names (index = class), label top and loss layer."""
    suffix: str
    names: tuple
    label: str = 'label'
    loss: str = 'loss'

    @property
    def classes(self):
        return len(self.names)

    @property
    def score(self):
        return 'score' + self.suffix


@dataclass(frozen=True)
class Source:
    """Where one split's images come from: a Caffe Python data layer (`module`.`layer`) and its param_str, keys in
    the reference's order. In string values '{root}' is the data folder as the reference names it ('../data') and
    '{split}' the split; `TOPS` stands for the model's modalities and 'label'."""
    module: str
    layer: str
    params: dict
    download: str = ''  # where to get the real files
    reader: object = None  # its caffe_fcn.datalayers.datasets.Reader: the class, or 'module:Class' (imported when read)
    writer: object = None  # its synthetic writer (fcn-data synth): a function, or 'module:function'


GENERIC_LAYER = ('caffe_fcn.datalayers.layers', 'SegDataLayer')  # every dataset's that has no reference name


def source(layer):
    """The declared Source whose data layer is called `layer` (a reference name: one dataset's)."""
    return next(s for data in DATASETS.values() for s in data.sources.values() if s.layer == layer)


TOPS = '<the model modalities and label>'
# Options every data layer takes for its training split (CVPR 2015 sec. 4.3; off unless asked for): a random
# mirror image and translation by up to `jitter` pixels, image and labels alike (AUGMENT: the paper's values);
# loss sampling, which keeps each `cell` x `cell` block of the labels with probability `sample`; and `randomize`
# (default True: the reference's random draws), False reading the split once in file order.
AUGMENT = {'mirror': True, 'jitter': 32}
TRAINING_OPTIONS = ('mirror', 'jitter', 'sample', 'cell', 'randomize')


@dataclass(frozen=True)
class Dataset:
    """A dataset: its outputs, its (train, evaluation) splits and their sources, the image mean of each input
    modality (BGR; NYUDv2's depth is log depth), the solver values and the reference solve.py's rounds x steps.
    `mean_dtype` is the dtype its reference layer subtracts the mean in (the bits of every image depend on it);
    `inference_mean` what the reference's infer.py subtracts, where it differs from the nets' rounded mean."""
    name: str
    title: str
    tasks: tuple
    sources: dict
    means: dict
    solver: dict
    schedule: tuple
    reference_root: str = '../data'  # the reference's data path in its nets (PASCAL-Context's is '../../data')
    mean_dtype: str = 'float32'
    inference_mean: tuple | None = None
    home: str | None = None  # where its runs go by default (a folder dataset's own folder); None: the model folder

    @property
    def splits(self):
        return tuple(self.sources)

    @property
    def builtin(self):
        """Whether it is one of the paper's datasets, whose models are the reference's (their weights published)."""
        return self.name in BUILTIN

    def dirs(self, root):
        """{param_str key: folder} of every '*_dir' parameter under the data folder `root`, e.g.
        {'sbdd_dir': ROOT/sbdd/dataset, 'voc_dir': ROOT/pascal/VOC2011}."""
        return {key: Path(root) / value.removeprefix('{root}/') for source in self.sources.values()
                for key, value in source.params.items() if key.endswith('_dir')}


@dataclass(frozen=True)
class Published:
    """A published weights file: the model whose net it fits (checked on download), where the reference names
    it, and its checksum where one is published ('sha1:...', 'md5:...'; None: the first download that fits the
    net is pinned by its sha256)."""
    model: str
    url: str
    checksum: str | None = None
    width: float = 1.0
    reported: str | None = None  # the mean IU its authors report, and where

    @property
    def file(self):
        return self.url.rsplit('/', 1)[-1]


@dataclass(frozen=True)
class Paper:
    """A model's column of CVPR 2015 Table 1 (PASCAL VOC 2011 val subset, Tesla K40c, 500 x 500 input)."""
    title: str
    mean_iu: float
    forward_ms: int
    depth: int
    millions: int
    receptive_field: int
    stride: int


@dataclass(frozen=True)
class Model:
    """A model declaration. `stride` is the head's output stride (32, 16, 8; 0 for a classifier); `init_from` the
    model whose trained weights start it (None: the converted ILSVRC trunk); `modalities` the input images
    (NYUDv2: color, depth, hha); `fusion` 'early' (channel concat before the trunk) or 'late' (one trunk per
    modality, averaged scores); `skip_scales` fixed Scale factors on the pool skips (at-once training);
    `data_root` the data folder in param_str paths when it is not the dataset's usual one (the reference's own
    quirk); `solver_values` what differs from the dataset's solver; `schedule` rounds x steps when not the
    dataset's. The paper's ablations: `fixed` trains only the score layers (Table 2's FCN-32s-fixed);
    `learned_upsampling` lets the 2x upsamplings learn from their bilinear start (sec. 4.3). What was published
    of it: `weights` (a Published: where, checksum, the reported score) and `paper` (its Table 1 column)."""
    name: str
    dataset: str
    trunk: str = 'vgg16'
    stride: int = 32
    init_from: str | None = None
    modalities: tuple = ('color',)
    fusion: str | None = None
    skip_scales: dict = field(default_factory=dict)
    normalize: bool = False
    data_root: str | None = None
    solver_values: dict = field(default_factory=dict)
    schedule: tuple | None = None
    fixed: bool = False
    learned_upsampling: bool = False
    weights: Published | None = None
    paper: Paper | None = None

    @property
    def data(self):
        return DATASETS[self.dataset]

    @property
    def splits(self):
        return self.data.splits

    @property
    def tasks(self):
        return self.data.tasks

    @property
    def rounds_steps(self):
        return self.schedule or self.data.schedule

    @property
    def classifier(self):
        """The ILSVRC classifier whose converted weights start this model's trunk."""
        return f'ilsvrc-{self.trunk}'

    @property
    def surgery(self):
        """How the converted trunk becomes this model's first weights: 'load' by layer name, or the NYUDv2
        fusion initializations (surgery.init_color_d, surgery.init_two_stream); None when a trained stage does."""
        if self.init_from is not None:
            return None
        return {'early': 'init_color_d', 'late': 'init_two_stream'}.get(self.fusion, 'load')

    @property
    def files(self):
        """The file names this model writes, in its folder."""
        names = [f'{split}.prototxt' for split in self.splits] + ['deploy.prototxt']
        return names + (['solver.prototxt'] if self.splits else [])

    @property
    def inputs(self):
        """Deploy input tops -> channels. One `data` top, except for the fused NYUDv2 models, whose Input layer
        has one top per modality, each exactly as its data layer feeds it: nyud-fcn32s-color-d takes `color`
        (BGR minus mean, 3 channels) and `depth` (log depth minus mean, 1 channel) and keeps its Concat inside
        the net, so deploy and train nets share every layer after the input; the two-stream color-hha nets
        take `color` and `hha` (3 channels each)."""
        if self.fusion is None:
            return {'data': CHANNELS[self.modalities[0]]}
        return {m: CHANNELS[m] for m in self.modalities}

    @property
    def mean(self):
        """The mean its (single) input image has subtracted at inference: the reference infer.py's where it has
        one (VOC), else its data layer's (nyud-fcn32s-hha is fed HHA images)."""
        return self.data.inference_mean or self.data.means[self.modalities[0]]

    @property
    def published(self):
        """Its published weights (a Published), or None: only the declared model has them, not its architecture
        trained on another dataset (`for_dataset`)."""
        return self.weights if MODELS.get(self.name) is self else None

    @property
    def summed_loss(self):
        return not self.normalize


DATASETS = {}
MODELS = {}
ORIGINS = {}  # dataset name -> the Python file that declared it (registry.declared_in)
BUILTIN = ('voc', 'nyud', 'siftflow', 'pascalcontext', 'ilsvrc')  # the paper's datasets


def declare(entry):
    """Add a Dataset or a Model to the registry (a name is declared once)."""
    table = DATASETS if isinstance(entry, Dataset) else MODELS
    if entry.name in table:
        raise ValueError(f'{entry.name!r} is declared twice')
    if isinstance(entry, Model) and entry.dataset not in DATASETS:
        raise ValueError(f'model {entry.name!r}: unknown dataset {entry.dataset!r}')
    table[entry.name] = entry
    return entry


def get(name):
    """The Model called `name` (or `name` itself when it is a Model), or a ValueError listing the models."""
    if isinstance(name, Model):
        return name
    if name not in MODELS:
        raise ValueError(f'unknown model {name!r}; fcn-netgen --list shows the models: {", ".join(MODELS)}')
    return MODELS[name]


def trainable(name):
    """The Model of a trainable FCN, or a ValueError listing them."""
    model = MODELS.get(name)
    if model is None or not model.splits:
        what = 'a classifier net, not an FCN to train' if model else 'not a model'
        raise ValueError(f'{name} is {what}: choose one of {", ".join(n for n, m in MODELS.items() if m.splits)}')
    return model


def conversion_target(trunk):
    """The FCN whose trunk `fcn-surgery convert TRUNK` writes: the first model that starts from that trunk."""
    return next(m for m in MODELS.values() if m.trunk == trunk and m.stride and m.init_from is None)


# --- the datasets ------------------------------------------------------------------------------------------

SOLVER_COMMON = dict(lr_policy='fixed', weight_decay=0.0005, display=20, average_loss=20,
                     test_interval=999999999, test_initialization=False, momentum=0.99, iter_size=1)
SNAPSHOT_PREFIX = dict(snapshot_prefix='snapshot/train')
VOC_MEAN = (104.00699, 116.66877, 122.67892)  # as the reference nets' param_str round it
VOC_INFER_MEAN = (104.00698793, 116.66876762, 122.67891434)  # the reference's infer.py

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')
NYUD_CLASSES = ('wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf', 'picture',
                'counter', 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow', 'mirror', 'floor mat',
                'clothes', 'ceiling', 'books', 'refridgerator', 'television', 'paper', 'towel', 'shower curtain',
                'box', 'whiteboard', 'person', 'night stand', 'toilet', 'sink', 'lamp', 'bathtub', 'bag',
                'otherstructure', 'otherfurniture', 'otherprop')
SIFTFLOW_CLASSES = ('awning', 'balcony', 'bird', 'boat', 'bridge', 'building', 'bus', 'car', 'cow', 'crosswalk',
                    'desert', 'door', 'fence', 'field', 'grass', 'moon', 'mountain', 'person', 'plant', 'pole',
                    'river', 'road', 'rock', 'sand', 'sea', 'sidewalk', 'sign', 'sky', 'staircase', 'streetlight',
                    'sun', 'tree', 'window')
SIFTFLOW_GEO_CLASSES = ('sky', 'horizontal', 'vertical')
CONTEXT_59 = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
              'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor', 'bag',
              'bed', 'bench', 'book', 'building', 'cabinet', 'ceiling', 'clothes', 'computer', 'cup', 'door',
              'fence', 'floor', 'flower', 'food', 'grass', 'ground', 'keyboard', 'light', 'mountain', 'mouse',
              'curtain', 'platform', 'sign', 'plate', 'road', 'rock', 'shelves', 'sidewalk', 'sky', 'snow',
              'bedcloth', 'track', 'tree', 'truck', 'wall', 'water', 'window', 'wood')
# PASCAL-Context's 59-class list spells three classes differently from its full label list.
CONTEXT_RENAMES = {'diningtable': 'table', 'bedcloth': 'bedclothes', 'clothes': 'cloth'}

declare(Dataset(
    'voc', 'PASCAL VOC 2011 (train: SBD)', (Task('', VOC_CLASSES),),
    {'train': Source('voc_layers', 'SBDDSegDataLayer',
                     dict(sbdd_dir='{root}/sbdd/dataset', seed=SEED, split='train', mean=VOC_MEAN),
                     'http://home.bharathh.info/pubs/codes/SBD/download.html (benchmark.tgz, folder '
                     'benchmark_RELEASE/dataset)', 'caffe_fcn.datalayers.datasets:SBDD',
                     'caffe_fcn.datalayers.synth:write_sbdd'),
     'val': Source('voc_layers', 'VOCSegDataLayer',
                   dict(voc_dir='{root}/pascal/VOC2011', seed=SEED, split='seg11valid', mean=VOC_MEAN),
                   'http://host.robots.ox.ac.uk/pascal/VOC/voc2011/', 'caffe_fcn.datalayers.datasets:VOC',
                   'caffe_fcn.datalayers.synth:write_voc')},
    means={'color': VOC_MEAN}, solver=dict(test_iter=736, max_iter=100000, snapshot=4000, **SNAPSHOT_PREFIX),
    schedule=(25, 4000), mean_dtype='float64', inference_mean=VOC_INFER_MEAN))  # np.array(params['mean'])
NYUD_SOURCE = Source('nyud_layers', 'NYUDSegDataLayer',
                     dict(tops=TOPS, seed=SEED, nyud_dir='{root}/nyud', split='{split}'),
                     'https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html, with the 40-class labels, depth and '
                     'HHA of Gupta et al. (https://github.com/s-gupta/rcnn-depth)',
                     'caffe_fcn.datalayers.datasets:NYUD',
                     'caffe_fcn.datalayers.synth:write_nyud')
declare(Dataset(
    'nyud', 'NYUDv2 (40 classes)', (Task('', NYUD_CLASSES),), {'trainval': NYUD_SOURCE, 'test': NYUD_SOURCE},
    means={'color': (116.190, 97.203, 92.318), 'hha': (132.431, 94.076, 118.477), 'depth': 7.844},
    solver=dict(test_iter=654, max_iter=300000, snapshot=2000, **SNAPSHOT_PREFIX), schedule=(50, 2000)))
SIFTFLOW_SOURCE = Source('siftflow_layers', 'SIFTFlowSegDataLayer',
                         dict(siftflow_dir='{root}/sift-flow', seed=SEED, split='{split}'),
                         'http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip',
                         'caffe_fcn.datalayers.datasets:SIFTFlow', 'caffe_fcn.datalayers.synth:write_siftflow')
declare(Dataset(
    'siftflow', 'SIFT Flow',
    (Task('_sem', SIFTFLOW_CLASSES, 'sem'), Task('_geo', SIFTFLOW_GEO_CLASSES, 'geo', 'loss_geo')),
    {'trainval': SIFTFLOW_SOURCE, 'test': SIFTFLOW_SOURCE}, means={'color': (114.578, 115.294, 108.353)},
    solver=dict(test_iter=200, max_iter=300000), schedule=(50, 2000)))
CONTEXT_SOURCE = Source('pascalcontext_layers', 'PASCALContextSegDataLayer',
                        dict(context_dir='{root}/pascal-context', voc_dir='{root}/pascal', split='{split}', seed=SEED),
                        'https://cs.stanford.edu/~roozbeh/pascal-context/ (trainval.tar.gz, labels.txt, '
                        '59_labels.txt) and VOC2010 from http://host.robots.ox.ac.uk/pascal/VOC/voc2010/',
                        'caffe_fcn.datalayers.datasets:PASCALContext', 'caffe_fcn.datalayers.synth:write_pascalcontext')
declare(Dataset(
    'pascalcontext', 'PASCAL-Context (59 classes)', (Task('', ('background', *CONTEXT_59)),),
    {'train': CONTEXT_SOURCE, 'val': CONTEXT_SOURCE}, means={'color': (104.007, 116.669, 122.679)},
    solver=dict(test_iter=5105, max_iter=300000, snapshot=4000, **SNAPSHOT_PREFIX), schedule=(50, 8000),
    reference_root='../../data'))
# The ILSVRC classifiers: deploy nets only, named as the published caffemodels.
declare(Dataset('ilsvrc', 'ILSVRC 2012 classification', (Task('', tuple(f'class {i}' for i in range(1000))),),
                {}, means={'color': VOC_MEAN}, solver={}, schedule=()))


# --- the models --------------------------------------------------------------------------------------------

REFERENCE_HOST = 'http://dl.caffe.berkeleyvision.org/'  # each model folder's caffemodel-url in the reference
SEG11VALID = 'mean IU on seg11valid (the reference\'s README)'


def fcn(name, dataset, stride=32, base_lr=1e-10, heavy=None, reported=None, checksum=None, **kwargs):
    """An FCN; `heavy` the file name of its published weights on the reference's host (as its caffemodel-url
    names them), `reported` the score its authors give, `checksum` where one is published."""
    solver_values = dict(base_lr=base_lr, **kwargs.pop('solver', {}))
    weights = Published(name, f'{REFERENCE_HOST}{heavy}.caffemodel', checksum, reported=reported) if heavy else None
    return Model(name, dataset, stride=stride, solver_values=solver_values, weights=weights, **kwargs)


def classifier(trunk, url, checksum=None):
    """An ILSVRC classifier the reference starts from, and where its weights are published."""
    name = f'ilsvrc-{trunk}'
    return Model(name, 'ilsvrc', trunk=trunk, stride=0, weights=Published(name, url, checksum))


ALEXNET_SOLVER = dict(momentum=0.9, iter_size=20)  # normalized loss, minibatch 20 by accumulation (CVPR sec. 4.3)
COLOR_HHA = dict(modalities=('color', 'hha'), fusion='late')

for entry in [
    fcn('voc-fcn32s', 'voc', heavy='fcn32s-heavy-pascal', reported=f'63.6 {SEG11VALID}',
        paper=Paper('FCN-VGG16', 56.0, 210, 16, 134, 404, 32)),
    fcn('voc-fcn16s', 'voc', 16, 1e-12, init_from='voc-fcn32s', data_root='../../data',  # as the reference
        heavy='fcn16s-heavy-pascal', reported=f'65.0 {SEG11VALID}'),
    fcn('voc-fcn8s', 'voc', 8, 1e-14, init_from='voc-fcn16s', heavy='fcn8s-heavy-pascal',
        reported=f'65.5 {SEG11VALID}', checksum='md5:c03b2953ebd846c270da1a8e8f200c09'),  # the Chainer port's pin
    # the paper's ablations (CVPR 2015): Table 2's FCN-32s-fixed; sec. 4.3's learned intermediate upsampling
    fcn('voc-fcn32s-fixed', 'voc', fixed=True),
    fcn('voc-fcn16s-learned-up', 'voc', 16, 1e-12, init_from='voc-fcn32s', learned_upsampling=True),
    fcn('voc-fcn8s-learned-up', 'voc', 8, 1e-14, init_from='voc-fcn16s-learned-up', learned_upsampling=True),
    fcn('voc-fcn8s-atonce', 'voc', 8, skip_scales={'pool4': 0.01, 'pool3': 0.0001}, solver=dict(max_iter=300000),
        schedule=(75, 4000), heavy='fcn8s-atonce-pascal', reported=f'65.4 {SEG11VALID}'),
    fcn('voc-fcn-alexnet', 'voc', 32, 1e-4, trunk='caffenet', normalize=True, solver=ALEXNET_SOLVER,
        heavy='fcn-alexnet-pascal', reported=f'48.0 {SEG11VALID}',
        paper=Paper('FCN-AlexNet', 39.8, 50, 8, 57, 355, 32)),
    fcn('voc-fcn-googlenet', 'voc', 32, 5e-5, trunk='googlenet', normalize=True, solver=ALEXNET_SOLVER,
        paper=Paper('FCN-GoogLeNet', 42.5, 59, 22, 6, 907, 32)),
    fcn('nyud-fcn32s-color', 'nyud', heavy='nyud-fcn32s-color-heavy'),
    fcn('nyud-fcn32s-hha', 'nyud', modalities=('hha',), heavy='nyud-fcn32s-hha-heavy'),
    fcn('nyud-fcn32s-color-d', 'nyud', modalities=('color', 'depth'), fusion='early'),
    fcn('nyud-fcn32s-color-hha', 'nyud', 32, 1e-12, heavy='nyud-fcn32s-color-hha-heavy', **COLOR_HHA),
    # unreleased (PAMI Table 4): 16s stage of the two-stream net; SIFT Flow keeps 1e-12 past 16s, so do we
    fcn('nyud-fcn16s-color-hha', 'nyud', 16, 1e-12, init_from='nyud-fcn32s-color-hha', **COLOR_HHA),
    fcn('siftflow-fcn32s', 'siftflow', heavy='siftflow-fcn32s-heavy'),
    fcn('siftflow-fcn16s', 'siftflow', 16, 1e-12, init_from='siftflow-fcn32s', heavy='siftflow-fcn16s-heavy'),
    fcn('siftflow-fcn8s', 'siftflow', 8, 1e-12, init_from='siftflow-fcn16s', heavy='siftflow-fcn8s-heavy'),
    fcn('pascalcontext-fcn32s', 'pascalcontext', heavy='pascalcontext-fcn32s-heavy'),
    fcn('pascalcontext-fcn16s', 'pascalcontext', 16, 1e-12, init_from='pascalcontext-fcn32s',
        heavy='pascalcontext-fcn16s-heavy'),
    fcn('pascalcontext-fcn8s', 'pascalcontext', 8, 1e-14, init_from='pascalcontext-fcn16s',
        heavy='pascalcontext-fcn8s-heavy', reported='35.1 mean IU on the 59 classes (CVPR 2015, appendix B)'),
    # the ILSVRC classifiers the reference starts from; sha1s from the Caffe model zoo
    classifier('vgg16', 'http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel'),
    classifier('caffenet', f'{REFERENCE_HOST}bvlc_reference_caffenet.caffemodel',
               'sha1:4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46'),
    classifier('googlenet', f'{REFERENCE_HOST}bvlc_googlenet.caffemodel',
               'sha1:405fc5acd08a3bb12de8ee5e23a96bec22f08204'),
]:
    declare(entry)

CLASSIFIER_SIZE = {'vgg16': 224, 'caffenet': 227, 'googlenet': 224}


# --- the published weights ---------------------------------------------------------------------------------

def published():
    """{model name: its Published} for every model with published weights, in declaration order."""
    return {name: m.weights for name, m in MODELS.items() if m.weights is not None}


def publish(entry):
    """Declare published weights for a declared model after the fact (a test's own file, say)."""
    model = get(entry.model)
    if model.weights is not None:
        raise ValueError(f'weights for {entry.model!r} are declared twice')
    MODELS[model.name] = replace(model, weights=entry)
    return entry


# --- any dataset: a folder, a Python file, and any single-output colour model on it ---------------------

class NotADataset(ValueError):
    """A --dataset that is not a dataset, or a folder dataset whose declaration files are wrong (exit 2)."""


FOLDER_SPLITS = ('train', 'val')
FOLDER_STATS = 'dataset.json'
FOLDER_ROUNDS = 25  # rounds of one pass over the training split each (PASCAL: 25 of 4000 steps, ~12 passes)
MAX_CLASSES = 255  # label values are bytes and 255 is void
PASCAL_PIXELS = 500 * 375  # the typical PASCAL VOC image (most are 500 x 375 or 375 x 500): the reference's lr


def dataset(ref):
    """The Dataset a --dataset value names: a declared name, a folder dataset (a folder with classes.txt), or a
    Python file that declares one dataset (imported here, as Caffe imports a Python layer's module)."""
    if isinstance(ref, Dataset):
        return ref
    if ref in DATASETS:
        return DATASETS[ref]
    path = Path(ref).expanduser()
    if path.is_dir():
        return folder_dataset(path)
    if path.suffix == '.py' and path.is_file():
        return declared_in(path)
    names = ', '.join(n for n, d in DATASETS.items() if d.builtin or d.home is None)
    raise NotADataset(f'--dataset {ref}: not a folder, a Python file that declares a dataset, or a declared '
                       f'dataset ({names})')


def declared_in(path):
    """The one dataset that the Python file `path` declares (its module is importable by its stem afterwards, so
    that a net naming it finds it)."""
    path = Path(path).resolve()
    before = set(DATASETS)
    name = path.stem
    if name in sys.modules and getattr(sys.modules[name], '__file__', None) == str(path):
        module = sys.modules[name]
    else:
        taken_by(name, path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's own code: its failure is theirs to read, in one line
            del sys.modules[name]
            raise NotADataset(f'--dataset {path}: importing it failed: {type(err).__name__}: {err}') from None
    new = [DATASETS[n] for n in DATASETS if n not in before] or \
        [d for d in vars(module).values() if isinstance(d, Dataset)]
    if len(new) != 1:
        raise NotADataset(f'--dataset {path}: the file declares {len(new)} datasets; it must declare one '
                          '(registry.declare(Dataset(...)))')
    ORIGINS[new[0].name] = str(path)
    return new[0]


def taken_by(name, path):
    """Refuse a dataset file whose stem names another module: it is imported under its stem (its Source's reader
    'STEM:Class' names it), which would shadow that module (numpy.py replacing numpy while it runs)."""
    try:
        other = sys.modules.get(name) or importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a stem such as 'a.b' whose parent is no package: nothing to shadow
        return
    origin = getattr(other, '__file__', None) or getattr(other, 'origin', None) or 'built in'
    if other is not None and Path(origin).resolve() != path:
        raise NotADataset(f'--dataset {path}: a dataset file is imported as the module named by its stem, and '
                          f'{name!r} is already another module ({origin}); rename the file (e.g. '
                          f'my_{name}.py, and its reader to \'my_{name}:Class\')')


def read_classes(path):
    """classes.txt: one class name a line, line i naming label value i (255 is void, never a class)."""
    try:
        lines = Path(path).read_text(encoding='utf-8').splitlines()
    except FileNotFoundError:
        raise NotADataset(f'{path} not found: a folder dataset names its classes there, one a line (line i is '
                           'label value i; 255 is void)') from None
    except (OSError, UnicodeDecodeError) as err:
        raise NotADataset(f'{path}: unreadable ({err})') from None
    while lines and not lines[-1].strip():
        lines.pop()
    return check_classes(tuple(line.strip() for line in lines), path)


def check_classes(names, where):
    """Class names as a folder dataset holds them (label value i is names[i]): none empty or given twice, two
    to MAX_CLASSES of them. `where` names their file in the message."""
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise NotADataset(f'{where}: line {empty[0]} is empty: every line names one class')
    if not names:
        raise NotADataset(f'{where} is empty: name one class a line')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise NotADataset(f'{where}: class name(s) {", ".join(map(repr, repeated))} given twice: each line names '
                           'another class')
    odd = next((n for n in names if n != n.strip() or n.splitlines() != [n]), None)  # as read_classes reads it
    if odd is not None:
        raise NotADataset(f'{where}: class name {odd!r} has leading or trailing spaces or a line break: a class '
                          'name is one line of classes.txt, read without its surrounding spaces')
    if len(names) > MAX_CLASSES:
        raise NotADataset(f'{where} names {len(names)} classes; at most {MAX_CLASSES} fit labels of one byte with '
                           '255 for void')
    if len(names) < 2:
        raise NotADataset(f'{where} names one class: segmentation needs two at least (e.g. background and one)')
    return tuple(names)


def folder_ids(path):
    """The ids of a folder dataset's split file (read here only to count them; the reader checks each)."""
    try:
        return [line.strip() for line in Path(path).read_text(encoding='utf-8').splitlines() if line.strip()]
    except FileNotFoundError:
        raise NotADataset(f'{path} not found: write the split files with `fcn-data split {Path(path).parent}`') \
            from None
    except (OSError, UnicodeDecodeError) as err:
        raise NotADataset(f'{path}: unreadable ({err})') from None


def is_colour_mean(mean):
    """Whether the numbers `mean` are a colour mean the nets can subtract: B, G, R, each from 0 to 255."""
    return len(mean) == 3 and all(0 <= v <= 255 for v in mean)  # NaN fails the comparisons too


def folder_stats(root):
    """DIR/dataset.json (`fcn-data stats DIR`), or None when it is absent; its mean (B, G, R, each 0 to 255) and
    mean_pixels (above 0) checked, since the nets subtract the one and the learning rate follows the other."""
    path = Path(root) / FOLDER_STATS
    if not path.is_file():
        return None
    again = f'run `fcn-data stats {root}` to compute it again'
    try:
        stats = json.loads(path.read_text())
        mean = tuple(float(v) for v in stats['mean'])
        pixels = float(stats['mean_pixels'])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise NotADataset(f'{path} is not what `fcn-data stats` writes ({type(err).__name__}: {err}); '
                          f'{again}') from None
    if not is_colour_mean(mean):
        raise NotADataset(f'{path}: its mean {str(stats["mean"])[:80]} is not 3 values (B, G, R) from 0 to 255; '
                          f'{again}')
    if not 0 < pixels < math.inf:
        raise NotADataset(f'{path}: its mean_pixels {pixels:g} is not a positive number of pixels; {again}')
    counts = stats.get('pixels')
    if not isinstance(counts, dict) or not all(isinstance(split, dict) and all(
            isinstance(n, int) and n >= 0 for n in split.values()) for split in counts.values()):
        raise NotADataset(f'{path}: its pixels are not counts per split and class; {again}')
    return stats


FOLDER_SOURCE = Source(*GENERIC_LAYER, dict(dataset='{root}', split='{split}', seed=SEED, mean=VOC_MEAN),
                       'your own: images/ID.jpg|png, labels/ID.png (8-bit index or palette), classes.txt, '
                       'train.txt, val.txt', 'caffe_fcn.datalayers.datasets:Folder',
                       'caffe_fcn.datalayers.synth:write_folder')


def folder_dataset(path, stats=True, mean=None):
    """The declaration of the folder dataset at `path` (classes.txt, images/, labels/, train.txt, val.txt and the
    mean from dataset.json, unless `stats` is False or `mean` (B, G, R: a trained net's) is given), declared under
    its absolute path; read afresh each time (the files may change)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise NotADataset(f'--dataset {path}: not a folder')
    names = read_classes(root / 'classes.txt')
    counts = {split: len(folder_ids(root / f'{split}.txt')) for split in FOLDER_SPLITS}
    empty = [split for split, n in counts.items() if not n]
    if empty:
        raise NotADataset(f'{root / (empty[0] + ".txt")} lists no images: every split needs one at least')
    stats = folder_stats(root) if stats and mean is None else None
    mean = tuple(mean) if mean is not None else tuple(stats['mean']) if stats else VOC_MEAN
    sources = {split: replace(FOLDER_SOURCE, params={**FOLDER_SOURCE.params, 'dataset': str(root), 'split': split,
                                                      'mean': tuple(round(v, 5) for v in mean)})
               for split in FOLDER_SPLITS}
    steps = counts['train']
    data = Dataset(str(root), root.name, (Task('', names),), sources, means={'color': mean},
                   solver=dict(test_iter=counts['val'], max_iter=FOLDER_ROUNDS * steps, **SNAPSHOT_PREFIX),
                   schedule=(FOLDER_ROUNDS, steps), home=str(root / 'runs'))
    DATASETS[data.name] = data
    return data


def mean_pixels(data):
    """The mean pixel count of a dataset's training images, where it is known (a folder dataset's stats)."""
    if data.home is None or data.builtin:
        return None
    stats = folder_stats(Path(data.name))
    return float(stats['mean_pixels']) if stats else None


def for_dataset(model, data):
    """`model`'s architecture with `data`'s classes and splits: any single-output colour FCN (the VGG16,
    AlexNet and GoogLeNet ones, 32s, 16s and 8s). Its published weights stay with the declared model."""
    model, data = get(model), dataset(data)
    if data.name == model.dataset:
        return model
    if not model.splits or len(model.tasks) != 1 or model.modalities != ('color',):
        raise NotADataset(f'{model.name} takes {" and ".join(model.modalities)} images and has '
                           f'{len(model.tasks)} output(s): another dataset needs a single-output colour model, '
                           'e.g. voc-fcn32s, voc-fcn16s, voc-fcn8s, voc-fcn-alexnet or voc-fcn-googlenet')
    if len(data.tasks) != 1 or set(data.means) != {'color'}:
        raise NotADataset(f'dataset {data.title} has {len(data.tasks)} outputs and inputs {sorted(data.means)}: '
                           f'{model.name} takes one colour image and gives one output')
    return replace(model, dataset=data.name, data_root=None, schedule=None,
                   solver_values={k: v for k, v in model.solver_values.items() if k != 'max_iter'})


def reference(data):
    """What a run records to find its dataset again: the Python file that declared it, else its name (a folder
    dataset's name is its folder)."""
    return ORIGINS.get(data.name, data.name)
