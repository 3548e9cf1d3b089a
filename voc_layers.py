"""Caffe Python layers for PASCAL VOC and SBD, under the reference FCN's module name."""
from caffe_fcn.datalayers.layers import SBDDSegDataLayer, VOCSegDataLayer

__all__ = ['VOCSegDataLayer', 'SBDDSegDataLayer']
