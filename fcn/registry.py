"""Every model, declared once, as data: no Caffe is imported here, so command-line tools can list models and
print --help before pycaffe is built. netgen turns a declaration into nets and solvers."""
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the repository root

VOC_MEAN = (104.00699, 116.66877, 122.67892)
CHANNELS = {'color': 3, 'depth': 1, 'hha': 3}
DEPLOY_SIZE = 500


@dataclass(frozen=True)
class Task:
    """One output of a net: the head's name suffix, its classes, its label top and its loss layer."""
    suffix: str
    classes: int
    label: str = 'label'
    loss: str = 'loss'

    @property
    def score(self):
        return 'score' + self.suffix


TASKS = {
    'voc': (Task('', 21),),
    'nyud': (Task('', 40),),
    'siftflow': (Task('_sem', 33, 'sem'), Task('_geo', 3, 'geo', 'loss_geo')),
    'pascalcontext': (Task('', 60),),
    'ilsvrc': (Task('', 1000),),
}
SPLITS = {'voc': ('train', 'val'), 'pascalcontext': ('train', 'val'),
          'nyud': ('trainval', 'test'), 'siftflow': ('trainval', 'test'), 'ilsvrc': ()}

SOLVER_COMMON = dict(lr_policy='fixed', weight_decay=0.0005, display=20, average_loss=20,
                     test_interval=999999999, test_initialization=False, momentum=0.99, iter_size=1)
SNAPSHOT = dict(snapshot_prefix='snapshot/train')
SOLVER_DATASET = {
    'voc': dict(test_iter=736, max_iter=100000, snapshot=4000, **SNAPSHOT),
    'nyud': dict(test_iter=654, max_iter=300000, snapshot=2000, **SNAPSHOT),
    'siftflow': dict(test_iter=200, max_iter=300000),
    'pascalcontext': dict(test_iter=5105, max_iter=300000, snapshot=4000, **SNAPSHOT),
}


@dataclass(frozen=True)
class Model:
    """A model declaration. `stride` is the head's output stride (32, 16, 8; 0 for a classifier);
    `modalities` the input images (NYUDv2: color, depth, hha); `fusion` 'early' (channel concat before the
    trunk) or 'late' (one trunk per modality, averaged scores); `skip_scales` fixed Scale factors on the
    pool skips (at-once training); `data_root` the data folder in param_str paths when it is not the dataset's
    usual one (the reference's own quirk); `solver_values` what differs from the dataset's solver."""
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

    @property
    def splits(self):
        return SPLITS[self.dataset]

    @property
    def tasks(self):
        return TASKS[self.dataset]

    @property
    def classifier(self):
        """The ILSVRC classifier whose converted weights start this model's trunk."""
        return f'ilsvrc-{self.trunk}'

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
        if self.dataset == 'ilsvrc':
            return {'data': 3}
        if self.fusion is None:
            return {'data': CHANNELS[self.modalities[0]]}
        return {m: CHANNELS[m] for m in self.modalities}


def fcn(name, dataset, stride=32, base_lr=1e-10, **kwargs):
    solver_values = dict(base_lr=base_lr, **kwargs.pop('solver', {}))
    return Model(name, dataset, stride=stride, solver_values=solver_values, **kwargs)


def classifier(trunk):
    return Model(f'ilsvrc-{trunk}', 'ilsvrc', trunk=trunk, stride=0)


ALEXNET_SOLVER = dict(momentum=0.9, iter_size=20)  # normalized loss, minibatch 20 by accumulation (CVPR sec. 4.3)
COLOR_HHA = dict(modalities=('color', 'hha'), fusion='late')

MODELS = OrderedDict((m.name, m) for m in [
    fcn('voc-fcn32s', 'voc'),
    fcn('voc-fcn16s', 'voc', 16, 1e-12, init_from='voc-fcn32s', data_root='../../data'),  # as the reference
    fcn('voc-fcn8s', 'voc', 8, 1e-14, init_from='voc-fcn16s'),
    fcn('voc-fcn8s-atonce', 'voc', 8, skip_scales={'pool4': 0.01, 'pool3': 0.0001}, solver=dict(max_iter=300000)),
    fcn('voc-fcn-alexnet', 'voc', 32, 1e-4, trunk='caffenet', normalize=True, solver=ALEXNET_SOLVER),
    fcn('voc-fcn-googlenet', 'voc', 32, 5e-5, trunk='googlenet', normalize=True, solver=ALEXNET_SOLVER),
    fcn('nyud-fcn32s-color', 'nyud'),
    fcn('nyud-fcn32s-hha', 'nyud', modalities=('hha',)),
    fcn('nyud-fcn32s-color-d', 'nyud', modalities=('color', 'depth'), fusion='early'),
    fcn('nyud-fcn32s-color-hha', 'nyud', 32, 1e-12, **COLOR_HHA),
    # unreleased (PAMI Table 4): 16s stage of the two-stream net; SIFT Flow keeps 1e-12 past 16s, so do we
    fcn('nyud-fcn16s-color-hha', 'nyud', 16, 1e-12, init_from='nyud-fcn32s-color-hha', **COLOR_HHA),
    fcn('siftflow-fcn32s', 'siftflow'),
    fcn('siftflow-fcn16s', 'siftflow', 16, 1e-12, init_from='siftflow-fcn32s'),
    fcn('siftflow-fcn8s', 'siftflow', 8, 1e-12, init_from='siftflow-fcn16s'),
    fcn('pascalcontext-fcn32s', 'pascalcontext'),
    fcn('pascalcontext-fcn16s', 'pascalcontext', 16, 1e-12, init_from='pascalcontext-fcn32s'),
    fcn('pascalcontext-fcn8s', 'pascalcontext', 8, 1e-14, init_from='pascalcontext-fcn16s'),
    classifier('vgg16'),
    classifier('caffenet'),
    classifier('googlenet'),
])


def get(name):
    """The Model called `name`, or a ValueError listing the models."""
    if name not in MODELS:
        raise ValueError(f'unknown model {name!r}; fcn-netgen --list shows the models: {", ".join(MODELS)}')
    return MODELS[name]


DATA_ROOT = {'pascalcontext': '../../data'}  # the reference's paths, kept as they are

# Rounds x steps of the reference solve.py scripts.
SCHEDULES = {'voc': (25, 4000), 'nyud': (50, 2000), 'siftflow': (50, 2000), 'pascalcontext': (50, 8000)}
ATONCE_SCHEDULE = (75, 4000)


def schedule(name):
    """(rounds, steps) of the reference's solve.py for model `name`."""
    return ATONCE_SCHEDULE if name.endswith('atonce') else SCHEDULES[get(name).dataset]

CLASSIFIER_SIZE = {'vgg16': 224, 'caffenet': 227, 'googlenet': 224}
