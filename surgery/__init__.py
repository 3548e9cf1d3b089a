"""Weights surgery: ILSVRC classifiers into FCN trunks, bilinear upsampling, and checked weight loading.

- `transplant(new_net, net, suffix='')`: copy by name, coerce fully connected into convolution -> Report
- `interp(net, layers=None)`, `upsample_filt(size)`, `upsampling_layers(net)`: bilinear kernels for the
  Deconvolution layers (by default all of them)
- `expand_score(new_net, new_layer, net, layer)`: a k-class score layer into a k' >= k class one
- `transfer_classes(new_net, net, names, new_names)`: a trained net into one for other classes, by class name
- `init_color_d(new_net, vgg_net)`, `init_two_stream(new_net, vgg_net, suffixes)`: NYUDv2 initializations
- `load_weights(net, path)`: validate a caffemodel against the net in Python, then copy_from
- `check_trained_trunk(net)`: refuse a trunk that is all zero or still at its fillers
- `stand_in_trunk(net, seed)`: seeded stand-in trunk weights for smoke tests (not the paper's initialization)
- `blob_shape(blob)`: the shape a BlobProto declares (legacy num/channels/height/width too)
- `instantiate(netparam_or_path, weights=None)`, `read_prototxt(path, message=None)`, `save_net(net, out, layers=None)`
  (net.save through the atomic write, its room proved first): Caffe loaded on first use
"""
from .bilinear import interp, upsample_filt, upsampling_layers
from .stand_in import stand_in_trunk
from .transplant import (Move, Report, expand_score, init_color_d, init_two_stream, transfer_classes,
                         transplant)
from .weights import (LoadReport, WeightsError, blob_shape, check_trained_trunk, load_weights, read_caffemodel,
                      validate)

__all__ = ['transplant', 'interp', 'upsample_filt', 'upsampling_layers', 'stand_in_trunk', 'expand_score',
           'init_color_d', 'init_two_stream', 'transfer_classes', 'load_weights', 'check_trained_trunk', 'validate',
           'read_caffemodel',
           'blob_shape', 'instantiate', 'read_prototxt', 'save_net', 'WeightsError', 'Report', 'Move', 'LoadReport']


def __getattr__(name):  # instantiating a net needs Caffe: imported on first use, so `import surgery` does not load it
    if name in ('instantiate', 'read_prototxt', 'save_net'):
        from . import nets
        return getattr(nets, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
