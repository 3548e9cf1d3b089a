"""The benchmark's PyTorch net: the module fcn-export writes (caffe_fcn.export.torch_source) for the same graph,
carrying Caffe's weights, wrapped to return every blob by name as the Caffe side reads them.

Parameters whose Caffe lr_mult is 0 (the fixed bilinear upsampling) get no gradient, as in Caffe.
"""
import tempfile
from pathlib import Path

from torch import nn

from caffe_fcn.export import torch_source
from caffe_fcn.export.check import load_module


class CaffeNet(nn.Module):
    """The generated module, called with its inputs by name; returns {blob: tensor}."""

    def __init__(self, net, attributes):
        super().__init__()
        self.net = net
        self.attributes = attributes

    def forward(self, **inputs):
        results = self.net(*(inputs[blob] for blob in self.net.inputs))
        return dict(zip(self.net.outputs, results if isinstance(results, tuple) else (results,), strict=True))

    def param(self, name, i):
        """Caffe's blob i (0 weight, 1 bias) of layer `name`, or None."""
        layer = getattr(self.net, self.attributes.get(name, ''), None)
        return None if layer is None else getattr(layer, ('weight', 'bias')[i], None)


def build(layers, weights):
    """CaffeNet for `layers` (caffe_fcn.export.graph.graph) with {layer name: [weight, bias]} numpy arrays."""
    blobs = list(dict.fromkeys(top for spec in layers if spec['type'] != 'Input' for top in spec['top']))
    shapes = {name: [list(a.shape) for a in arrays] for name, arrays in weights.items()}
    text = torch_source.source(layers, shapes, 'bench', returns=blobs)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / 'bench_net.py'
        path.write_text(text)
        module = load_module(path, 'fcn_bench_net')
    net = getattr(module, torch_source.class_name('bench'))()
    net.load_state_dict(torch_source.state_dict(layers, weights))
    wrapped = CaffeNet(net, torch_source.attributes(layers))
    for spec in layers:
        for i, mult in enumerate(spec['lr_mult']):
            param = wrapped.param(spec['name'], i)
            if mult == 0 and param is not None:
                param.requires_grad_(False)
    return wrapped
