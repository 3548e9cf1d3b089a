"""A Caffe net as plain data: one dict per layer with its type, blobs and the parameters a re-implementation needs.

Plain dicts (JSON-able) so that a process without Caffe, such as the benchmark's PyTorch worker, can rebuild the
net. Read from the NetParameter's own descriptors, so that this module does not import Caffe.
"""
import keyword

# The layer types the FCNs (and the benchmark's training nets) are made of.
SUPPORTED = ('Input', 'Convolution', 'Deconvolution', 'Pooling', 'ReLU', 'Dropout', 'Crop', 'Eltwise', 'Concat',
             'LRN', 'Scale', 'SoftmaxWithLoss')


class Unsupported(ValueError):
    """A layer or a setting that has no export here."""


def _pair(values, default):
    """Caffe's repeated kernel/pad/stride/dilation field as (h, w)."""
    values = list(values)
    return (values[0], values[-1]) if values else (default, default)


def _enum(message, field):
    """The name of an enum field's value, e.g. 'MAX' for a pooling_param's pool."""
    return message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(message, field)].name


def _convolution(layer):
    p = layer.convolution_param
    return dict(num_output=p.num_output, kernel=_pair(p.kernel_size, 1), pad=_pair(p.pad, 0),
                stride=_pair(p.stride, 1), dilation=_pair(p.dilation, 1), group=p.group, bias=p.bias_term)


def _pooling(layer):
    p = layer.pooling_param
    if _enum(p, 'pool') != 'MAX' or p.global_pooling or p.kernel_h or p.pad_h or p.stride_h:
        raise Unsupported(f'{layer.name}: only square MAX pooling (the FCNs\' only kind) is exported')
    return dict( kernel=(p.kernel_size,) * 2, stride=(p.stride,) * 2, pad=(p.pad,) * 2)


def _eltwise(layer):
    p = layer.eltwise_param
    if _enum(p, 'operation') != 'SUM':
        raise Unsupported(f'{layer.name}: only Eltwise SUM (the FCNs\' fusion) is exported')
    return dict(coeff=list(p.coeff))


def _lrn(layer):
    p = layer.lrn_param
    if _enum(p, 'norm_region') != 'ACROSS_CHANNELS':
        raise Unsupported(f'{layer.name}: only LRN across channels is exported')
    return dict(size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)


def _scale(layer):
    p = layer.scale_param
    if len(layer.bottom) != 1 or p.axis != 1 or p.num_axes != 1:
        raise Unsupported(f'{layer.name}: only a learned per-channel Scale (axis 1, one axis) is exported')
    return dict(bias=p.bias_term)


def _loss(layer):
    p = layer.loss_param
    return dict(ignore_label=p.ignore_label if p.HasField('ignore_label') else None,
                normalize=p.normalize if p.HasField('normalize') else True)


PARAMETERS = {
    'Input': lambda layer: dict(shape=[list(s.dim) for s in layer.input_param.shape]),
    'Convolution': _convolution,
    'Deconvolution': _convolution,
    'Pooling': _pooling,
    'ReLU': lambda layer: dict(negative_slope=layer.relu_param.negative_slope),
    'Dropout': lambda layer: {},
    'Crop': lambda layer: dict(axis=layer.crop_param.axis, offset=list(layer.crop_param.offset)),
    'Eltwise': _eltwise,
    'Concat': lambda layer: dict(axis=layer.concat_param.axis),
    'LRN': _lrn,
    'Scale': _scale,
    'SoftmaxWithLoss': _loss,
}


def graph(net):
    """The NetParameter `net` as a list of plain dicts, one per layer, in order; Unsupported for a layer type
    without an export."""
    layers = []
    for layer in net.layer:
        if layer.type not in PARAMETERS:
            raise Unsupported(f'layer {layer.name}: Caffe {layer.type} layers have no export here '
                              f'(supported: {", ".join(SUPPORTED)})')
        layers.append({'name': layer.name, 'type': layer.type, 'bottom': list(layer.bottom), 'top': list(layer.top),
                       'lr_mult': [p.lr_mult for p in layer.param], **PARAMETERS[layer.type](layer)})
    return layers


def inputs(layers):
    """{input blob: shape} of the Input layers."""
    return {top: shape for spec in layers if spec['type'] == 'Input'
            for top, shape in zip(spec['top'], spec['shape'], strict=True)}


def outputs(layers):
    """The net's outputs as Caffe finds them: the blobs left unread after the last layer, in the order made."""
    available = {}
    for spec in layers:
        for blob in spec['bottom']:
            available.pop(blob, None)
        available.update(dict.fromkeys(spec['top']))
    return list(available)


def crop_offsets(spec, rank=4):
    """{axis: offset} of a Crop layer: Caffe's one offset for every axis from `axis` on, or one per axis."""
    axes = range(spec['axis'] % rank, rank)
    offsets = spec['offset'] or [0]
    return {axis: offsets[0] if len(offsets) == 1 else offsets[i] for i, axis in enumerate(axes)}


def identifier(name, taken=()):
    """A Python identifier for a Caffe name (inception_3a/1x1 -> inception_3a_1x1), not a keyword nor in `taken`."""
    text = ''.join(c if c.isalnum() or c == '_' else '_' for c in name)
    text = f'_{text}' if not text or text[0].isdigit() else text
    while keyword.iskeyword(text) or text in taken:
        text += '_'
    return text
