"""Every model, declared once, and the functions that turn a declaration into nets, solvers and files."""
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from . import pieces

REPO = Path(__file__).resolve().parent.parent

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


# --- data -----------------------------------------------------------------------------------------------

DATA_ROOT = {'pascalcontext': '../../data'}  # the reference's paths, kept as they are


def data_params(model, split):
    """(module, layer class, param_str dict, tops) of the model's Python data layer for `split`."""
    dataset, seed = model.dataset, 1337
    root = model.data_root or DATA_ROOT.get(dataset, '../data')
    if dataset == 'voc' and split == 'train':
        return 'voc_layers', 'SBDDSegDataLayer', dict(
            sbdd_dir=f'{root}/sbdd/dataset', seed=seed, split='train', mean=VOC_MEAN), ('data', 'label')
    if dataset == 'voc':
        return 'voc_layers', 'VOCSegDataLayer', dict(
            voc_dir=f'{root}/pascal/VOC2011', seed=seed, split='seg11valid', mean=VOC_MEAN), ('data', 'label')
    if dataset == 'nyud':
        images = ('data',) if model.fusion is None else model.modalities
        return 'nyud_layers', 'NYUDSegDataLayer', dict(
            tops=[*model.modalities, 'label'], seed=seed, nyud_dir=f'{root}/nyud', split=split), (*images, 'label')
    if dataset == 'siftflow':
        return 'siftflow_layers', 'SIFTFlowSegDataLayer', dict(
            siftflow_dir=f'{root}/sift-flow', seed=seed, split=split), ('data', 'sem', 'geo')
    if dataset == 'pascalcontext':
        return 'pascalcontext_layers', 'PASCALContextSegDataLayer', dict(
            context_dir=f'{root}/pascal-context', voc_dir=f'{root}/pascal', split=split, seed=seed), \
            ('data', 'label')
    raise ValueError(f'{model.name} has no data layer')


def data_layer(n, model, split, overrides=None):
    """The Python data layer. An override applies where it is a parameter of this split's layer; one that is a
    parameter of none of the model's data layers is an error (so one dict serves train and val)."""
    module, layer, params, tops = data_params(model, split)
    overrides = dict(overrides or {})
    known = {key for s in model.splits for key in data_params(model, s)[2]}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f'data overrides {sorted(unknown)} are not parameters of the {model.name} data layers; '
                         f'their parameters are {sorted(known)}')
    params.update((key, value) for key, value in overrides.items() if key in params)
    outputs = L.Python(module=module, layer=layer, param_str=str(params), ntop=len(tops))
    for name, top in zip(tops, outputs, strict=True):
        n[name] = top


def input_layer(n, model, size):
    """Deploy input: one Input layer (renamed `input` after to_proto) with a top per input image."""
    shapes = [dict(dim=[1, channels, size[0], size[1]]) for channels in model.inputs.values()]
    outputs = L.Input(shape=shapes, ntop=len(shapes))
    for name, top in zip(model.inputs, outputs if len(shapes) > 1 else [outputs], strict=True):
        n[name] = top


# --- nets -----------------------------------------------------------------------------------------------

def fcn_net(n, model, width, train):
    """Trunk(s), score head per task, and (train/test) the losses, on the input tops already in `n`."""
    trunk = pieces.TRUNKS[model.trunk]
    num_classes = {task.suffix: task.classes for task in model.tasks}
    if model.fusion == 'late':
        streams = {m: trunk(n, n[m], width, suffix=m, train=train) for m in model.modalities}
        for task in model.tasks:  # each stream is complete up to its score_fr, as in the reference
            for m in streams:
                n['score_fr' + task.suffix + m] = pieces.score(streams[m]['fc7'], task.classes)
        reference = n[model.modalities[0]]
    else:
        if model.fusion == 'early':
            n.data = L.Concat(*(n[m] for m in model.modalities))
        first_conv = 'conv1_1_bgrd' if model.fusion == 'early' else 'conv1_1'
        streams = {'': trunk(n, n.data, width, train=train, first_conv=first_conv)}
        reference = n.data

    def score_of(suffix):
        def scored(layer, name):
            if model.fusion == 'late':
                per_stream = [n[name + m] if name + m in n.tops else _scored(name + m, streams[m], layer, suffix)
                              for m in streams]
                fused = 'score_fused' + suffix if layer == 'fc7' else name
                n[fused] = pieces.average(*per_stream)
                return n[fused]
            return _scored(name, streams[''], layer, suffix)
        return scored

    def _scored(name, features, layer, suffix):
        bottom = features[layer]
        if layer in model.skip_scales:  # at-once training: fixed scaling of the pool feature
            n['scale_' + layer] = L.Scale(bottom, filler=dict(type='constant', value=model.skip_scales[layer]),
                                          param=pieces.FIXED)
            bottom = n['scale_' + layer]
        n[name] = pieces.score(bottom, num_classes[suffix])
        return n[name]

    for task in model.tasks:
        score = pieces.fcn_head(n, score_of(task.suffix), reference, task.classes, model.stride, task.suffix)
        if train:
            n[task.loss] = pieces.softmax_loss(score, n[task.label], normalize=model.normalize)


def classifier_net(n, model, width):
    """The ILSVRC classifier in deploy form, named as the published caffemodel."""
    nclass = model.tasks[0].classes
    if model.trunk == 'vgg16':
        features = pieces.vgg16(n, n.data, width, first_pad=1)
        n.fc8 = L.InnerProduct(pieces.fully_connected(n, features['pool5'], 7, width, convolutional=False),
                               num_output=nclass)
        top = n.fc8
    elif model.trunk == 'caffenet':
        features = pieces.caffenet(n, n.data, width, first_pad=0)
        n.fc8 = L.InnerProduct(pieces.fully_connected(n, features['pool5'], 6, width, convolutional=False,
                                                      multiple=2), num_output=nclass)
        top = n.fc8
    else:
        features = pieces.googlenet(n, n.data, width)
        n['pool5/7x7_s1'] = L.Pooling(features['inception_5b'], pool=P.Pooling.AVE, kernel_size=7, stride=1)
        n['pool5/drop_7x7_s1'] = L.Dropout(n['pool5/7x7_s1'], dropout_ratio=0.4, in_place=True)
        n['loss3/classifier'] = L.InnerProduct(n['pool5/drop_7x7_s1'], num_output=nclass)
        top = n['loss3/classifier']
    n.prob = L.Softmax(top)


CLASSIFIER_SIZE = {'vgg16': 224, 'caffenet': 227, 'googlenet': 224}


def net(name, split, width=1.0, data=None):
    """The NetParameter of model `name` for `split` (one of model.splits, or 'deploy').

    width: scales every channel count except the classes (same topology); data: param_str overrides for the
    data layer, e.g. {'sbdd_dir': '/tmp/synth/sbdd/dataset'}."""
    model = get(name)
    if split != 'deploy' and split not in model.splits:
        raise ValueError(f'{name} has no split {split!r}; choose one of {", ".join((*model.splits, "deploy"))}')
    if not (isinstance(width, (int, float)) and 0 < width <= 1):
        raise ValueError(f'width must be a number in (0, 1], got {width!r}')
    if data and split == 'deploy':
        raise ValueError('a deploy net has no data layer: drop the data overrides or choose a train/test split')
    n = caffe.NetSpec()
    if model.dataset == 'ilsvrc':
        size = CLASSIFIER_SIZE[model.trunk]
        input_layer(n, model, (size, size))
        classifier_net(n, model, width)
    elif split == 'deploy':
        input_layer(n, model, (DEPLOY_SIZE, DEPLOY_SIZE))
        fcn_net(n, model, width, train=False)
    else:
        data_layer(n, model, split, data)
        fcn_net(n, model, width, train=True)
    proto = n.to_proto()
    if split == 'deploy':
        proto.layer[0].name = 'input'
    return proto


# --- solvers and files ----------------------------------------------------------------------------------

def solver(name, **overrides):
    """The SolverParameter of model `name`; keyword arguments override any solver field."""
    model = get(name)
    if not model.splits:
        raise ValueError(f'{name} is a classifier net: it has no solver')
    train, test = model.splits
    values = dict(train_net=f'{train}.prototxt', test_net=f'{test}.prototxt', **SOLVER_COMMON)
    values.update(SOLVER_DATASET[model.dataset])
    values.update(model.solver_values)
    fields = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f'{unknown} are not SolverParameter fields (see caffe.proto)')
    values.update(overrides)
    proto = caffe_pb2.SolverParameter()
    for key, value in values.items():
        if hasattr(getattr(proto, key), 'extend'):  # repeated: test_net, test_iter
            getattr(proto, key).extend(value if isinstance(value, (list, tuple)) else [value])
        else:
            setattr(proto, key, value)
    return proto


def text(proto):
    """Deterministic prototxt text of a message."""
    return str(proto)


def generate(name, width=1.0, data=None):
    """{file name: text} of everything model `name` writes."""
    model = get(name)
    files = {f'{split}.prototxt': text(net(name, split, width, data)) for split in model.splits}
    files['deploy.prototxt'] = text(net(name, 'deploy', width))
    if model.splits:
        files['solver.prototxt'] = text(solver(name))
    return files


def write(name, out_dir=None, width=1.0, data=None):
    """Write the model's nets, deploy.prototxt and solver.prototxt into out_dir (default REPO / name)."""
    out = Path(out_dir) if out_dir is not None else REPO / name
    files = generate(name, width, data)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, content in files.items():
        path = out / filename
        path.write_text(content)
        paths.append(path)
    return paths
