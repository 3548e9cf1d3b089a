"""Datasets for the FCN nets: readers, Caffe data layers (via the top-level *_layers modules), synthesis, tools.

Importing this package does not import Caffe; the layers live in caffe_fcn.datalayers.layers.
"""
from .io import DatasetError, label_image, palette
from .params import ParamError

__all__ = ['DatasetError', 'ParamError', 'label_image', 'palette']
