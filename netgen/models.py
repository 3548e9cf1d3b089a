"""Every model, declared once, and the functions that turn a declaration into nets, solvers and files."""
from pathlib import Path

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.net_spec import assign_proto
from caffe.proto import caffe_pb2

from caffe_fcn.files import write_atomic
from caffe_fcn.registry import (CLASSIFIER_SIZE, DEPLOY_SIZE, MODELS, REPO, SOLVER_COMMON, TOPS, TRAINING_OPTIONS,
                                Model, Task, get)

from . import pieces

__all__ = ['MODELS', 'REPO', 'Model', 'Task', 'get', 'net', 'solver', 'generate', 'write']

# --- data -----------------------------------------------------------------------------------------------

def data_params(model, split):
    """(module, layer class, param_str dict, tops) of the model's Python data layer for `split`."""
    source = model.data.sources[split]
    root = model.data_root or model.data.reference_root
    params = {key: fill(value, root, split, model) for key, value in source.params.items()}
    images = ('data',) if model.fusion is None else model.modalities
    return source.module, source.layer, params, (*images, *(task.label for task in model.tasks))


def fill(value, root, split, model):
    """A declared param_str value with the placeholders of caffe_fcn.registry.Source filled in."""
    if value == TOPS:
        return [*model.modalities, 'label']
    return value.format(root=root, split=split) if isinstance(value, str) else value


def data_layer(n, model, split, overrides=None):
    """The Python data layer. An override applies where it is a parameter of this split's layer, and the training
    options (registry.TRAINING_OPTIONS: augmentation, loss sampling) to the training split only; an override that
    is a parameter of none of the model's data layers is an error (so one dict serves train and val)."""
    module, layer, params, tops = data_params(model, split)
    overrides = dict(overrides or {})
    known = {key for s in model.splits for key in data_params(model, s)[2]} | set(TRAINING_OPTIONS)
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f'data overrides {sorted(unknown)} are not parameters of the {model.name} data layers; '
                         f'their parameters are {sorted(known)}')
    training = split == model.splits[0]
    params.update((key, value) for key, value in overrides.items()
                  if key in params or key in TRAINING_OPTIONS and training)
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

def fcn_net(n, model, width, train, class_weights=None):
    """Trunk(s), score head per task, and (train/test) the losses, on the input tops already in `n`;
    `class_weights` {label top: a weight per class} weights those losses."""
    trunk = pieces.TRUNKS[model.trunk]
    num_classes = {task.suffix: task.classes for task in model.tasks}
    if model.fusion == 'late':
        streams = {}
        for m in model.modalities:  # each stream is complete up to its score_fr before the next starts, as in
            streams[m] = trunk(n, n[m], width, suffix=m, train=train)  # the reference (Caffe runs in file order)
            for task in model.tasks:
                n['score_fr' + task.suffix + m] = pieces.score(streams[m]['fc7'], task.classes)
        reference = n[model.modalities[0]]
    else:
        if model.fusion == 'early':
            n.data = L.Concat(*(n[m] for m in model.modalities))
        renamed = {'first_conv': 'conv1_1_bgrd'} if model.fusion == 'early' else {}  # a 4-channel conv1_1
        streams = {'': trunk(n, n.data, width, train=train, **renamed)}
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
        score = pieces.fcn_head(n, score_of(task.suffix), reference, task.classes, model.stride, task.suffix,
                                model.learned_upsampling)
        if train:
            n[task.loss] = pieces.softmax_loss(score, n[task.label], model.normalize,
                                               (class_weights or {}).get(task.label))


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


def net(model, split, width=1.0, overrides=None, class_weights=None):
    """The NetParameter of `model` (a Model or its name) for `split` (one of model.splits, or 'deploy').

    width: scales every channel count except the classes (same topology); overrides: param_str values for the
    data layer, e.g. {'sbdd_dir': '/tmp/synth/sbdd/dataset'}; class_weights: {label top: a weight per class}
    for the training split's loss (class balancing)."""
    model = get(model)
    if split != 'deploy' and split not in model.splits:
        raise ValueError(f'{model.name} has no split {split!r}; choose one of {", ".join((*model.splits, "deploy"))}')
    if not (isinstance(width, (int, float)) and 0 < width <= 1):
        raise ValueError(f'width must be a number in (0, 1], got {width!r}')
    if overrides and split == 'deploy':
        raise ValueError('a deploy net has no data layer: drop the data overrides or choose a train/test split')
    check_class_weights(model, class_weights)
    n = caffe.NetSpec()
    if not model.stride:
        size = CLASSIFIER_SIZE[model.trunk]
        input_layer(n, model, (size, size))
        classifier_net(n, model, width)
    elif split == 'deploy':
        input_layer(n, model, (DEPLOY_SIZE, DEPLOY_SIZE))
        fcn_net(n, model, width, train=False)
    else:
        data_layer(n, model, split, overrides)
        fcn_net(n, model, width, train=True, class_weights=class_weights if split == model.splits[0] else None)
    proto = n.to_proto()
    if split == 'deploy':
        proto.layer[0].name = 'input'
    if model.fixed:
        fix_all_but_the_classifiers(proto)
    return proto


def check_class_weights(model, class_weights):
    """A ValueError unless `class_weights` gives each named task as many positive weights as it has classes."""
    sizes = {task.label: task.classes for task in model.tasks}
    for label, weights in (class_weights or {}).items():
        if label not in sizes or len(weights) != sizes[label] or min(weights) < 0:
            raise ValueError(f'class weights for {label!r}: {model.name} needs {sizes} weights >= 0 per label top')


def fix_all_but_the_classifiers(proto):
    """FCN-32s-fixed (CVPR 2015 Table 2): every layer but the score layers keeps its weights (lr_mult 0)."""
    for layer in proto.layer:
        if not layer.name.startswith('score'):
            for param in layer.param:
                param.lr_mult = 0


# --- solvers and files ----------------------------------------------------------------------------------

def solver(model, **overrides):
    """The SolverParameter of `model` (a Model or its name); keyword arguments override any solver field."""
    model = get(model)
    if not model.splits:
        raise ValueError(f'{model.name} is a classifier net: it has no solver')
    train, test = model.splits
    values = dict(train_net=f'{train}.prototxt', test_net=f'{test}.prototxt', **SOLVER_COMMON)
    values.update(model.data.solver)
    values.update(model.solver_values)
    fields = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f'{unknown} are not SolverParameter fields (see caffe.proto)')
    values.update(overrides)
    proto = caffe_pb2.SolverParameter()
    for key, value in values.items():
        assign_proto(proto, key, value)
    return proto


def generate(model, width=1.0, overrides=None):
    """{file name: prototxt text} of everything `model` writes."""
    model = get(model)
    files = {f'{split}.prototxt': str(net(model, split, width, overrides)) for split in model.splits}
    files['deploy.prototxt'] = str(net(model, 'deploy', width))
    if model.splits:
        files['solver.prototxt'] = str(solver(model))
    return files


def write(model, out_dir=None, width=1.0, overrides=None):
    """Write the model's nets, deploy.prototxt and solver.prototxt into out_dir (default REPO / name)."""
    model = get(model)
    out = Path(out_dir) if out_dir is not None else REPO / model.name
    files = generate(model, width, overrides)
    out.mkdir(parents=True, exist_ok=True)
    return [write_atomic(out / filename, content) for filename, content in files.items()]  # none left half-written
