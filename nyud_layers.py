"""Caffe Python layer for NYUDv2 (color, depth, HHA, label), under the reference FCN's module name."""
from caffe_fcn.datalayers.layers import NYUDSegDataLayer

__all__ = ['NYUDSegDataLayer']
