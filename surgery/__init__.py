"""Weights surgery: ILSVRC classifiers into FCN trunks, bilinear upsampling, and checked weight loading.

- `transplant(new_net, net, suffix='')`: copy by name, coerce fully connected into convolution -> Report
- `interp(net, layers)`, `upsample_filt(size)`: bilinear kernels for the Deconvolution layers
- `expand_score(new_net, new_layer, net, layer)`: a k-class score layer into a k' >= k class one
- `init_color_d(new_net, vgg_net)`, `init_two_stream(new_net, vgg_net, suffixes)`: NYUDv2 initializations
- `load_weights(net, path)`: validate a caffemodel against the net in Python, then copy_from
- `check_trained_trunk(net)`: refuse a trunk that is all zero or still at its fillers
"""
from .bilinear import interp, upsample_filt
from .transplant import Move, Report, expand_score, init_color_d, init_two_stream, transplant
from .weights import LoadReport, WeightsError, check_trained_trunk, load_weights, read_caffemodel, validate

__all__ = ['transplant', 'interp', 'upsample_filt', 'expand_score', 'init_color_d', 'init_two_stream',
           'load_weights', 'check_trained_trunk', 'validate', 'read_caffemodel', 'instantiate', 'read_prototxt',
           'WeightsError', 'Report', 'Move', 'LoadReport']


def __getattr__(name):  # instantiating a net needs Caffe: imported on first use, so `import surgery` does not load it
    if name in ('instantiate', 'read_prototxt'):
        from . import nets
        return getattr(nets, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
