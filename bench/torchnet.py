"""The same net in PyTorch, built from `bench.nets.graph()` and carrying Caffe's weights.

Each Caffe layer becomes the equivalent torch op: Convolution -> conv2d, Deconvolution ->
conv_transpose2d (the same adjoint of cross-correlation, same weight layout), MAX Pooling with
ceil mode (Caffe rounds the output size up), Dropout -> identity (as in Caffe's TEST phase),
Crop -> slicing at Caffe's offsets, Eltwise SUM with its coefficients, SoftmaxWithLoss ->
cross-entropy summed over pixels (normalize: false) ignoring the ignore label.
"""

import torch
import torch.nn.functional as F
from torch import nn


class CaffeNet(nn.Module):
    """Runs the layer list in order over a dict of named blobs, as Caffe does."""

    def __init__(self, layers, weights):
        super().__init__()
        self.layers = [spec for spec in layers if spec['type'] != 'Input']
        self.inputs = [top for spec in layers if spec['type'] == 'Input' for top in spec['top']]
        self.params = nn.ParameterDict()
        for spec in self.layers:
            for i, array in enumerate(weights.get(spec['name'], [])):
                mults = spec.get('lr_mult', [])
                fixed = i < len(mults) and mults[i] == 0
                self.params[f'{spec["name"]}__{i}'] = nn.Parameter(torch.from_numpy(array.copy()),
                                                                  requires_grad=not fixed)

    def param(self, name, i):
        key = f'{name}__{i}'
        return self.params[key] if key in self.params else None

    def forward(self, **inputs):
        blobs = dict(inputs)
        for spec in self.layers:
            bottoms = [blobs[b] for b in spec['bottom']]
            blobs[spec['top'][0]] = OPS[spec['type']](self, spec, *bottoms)
        return blobs


def _conv(net, spec, x):
    return F.conv2d(x, net.param(spec['name'], 0), net.param(spec['name'], 1), stride=spec['stride'],
                    padding=spec['pad'], groups=spec['group'])


def _deconv(net, spec, x):
    return F.conv_transpose2d(x, net.param(spec['name'], 0), net.param(spec['name'], 1), stride=spec['stride'],
                              padding=spec['pad'], groups=spec['group'])


def _pool(net, spec, x):
    if spec['pool'] != 'MAX':
        raise NotImplementedError(f'{spec["name"]}: {spec["pool"]} pooling is not benchmarked')
    return F.max_pool2d(x, spec['kernel'], spec['stride'], spec['pad'], ceil_mode=True)


def _crop(net, spec, x, reference):
    axis, offsets = spec['axis'], spec['offset']
    index = [slice(None)] * x.dim()
    for i, d in enumerate(range(axis, x.dim())):
        offset = offsets[0] if len(offsets) == 1 else offsets[i] if offsets else 0
        index[d] = slice(offset, offset + reference.shape[d])
    return x[tuple(index)]


def _eltwise(net, spec, *xs):
    if spec['operation'] != 'SUM':
        raise NotImplementedError(f'{spec["name"]}: Eltwise {spec["operation"]} is not benchmarked')
    coeff = spec['coeff'] or [1.0] * len(xs)
    return sum(c * x if c != 1 else x for c, x in zip(coeff, xs, strict=True))


def _loss(net, spec, score, label):
    label = label[:, 0].long()
    ignore = spec['ignore_label'] if spec['ignore_label'] is not None else -100
    loss = F.cross_entropy(score, label, ignore_index=ignore, reduction='sum')
    # Caffe's normalize: true divides by the counted pixels, false by the batch size.
    return loss / (label != ignore).sum() if spec['normalize'] else loss / score.shape[0]


OPS = {
    'Convolution': _conv,
    'Deconvolution': _deconv,
    'ReLU': lambda net, spec, x: F.relu(x, inplace=True),  # in place, as in Caffe
    'Pooling': _pool,
    'Dropout': lambda net, spec, x: x,
    'Crop': _crop,
    'Eltwise': _eltwise,
    'SoftmaxWithLoss': _loss,
}


def build(layers, weights):
    """CaffeNet for `layers` (bench.nets.graph) with {layer name: [weight, bias]} numpy arrays."""
    unknown = sorted({spec['type'] for spec in layers} - set(OPS) - {'Input'})
    if unknown:
        raise NotImplementedError(f'no PyTorch equivalent here for Caffe layer type(s) {", ".join(unknown)}')
    return CaffeNet(layers, weights)
