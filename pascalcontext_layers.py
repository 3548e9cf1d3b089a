"""Caffe Python layer for PASCAL-Context (59 classes + background), under the reference FCN's module name."""
from caffe_fcn.datalayers.layers import PASCALContextSegDataLayer

__all__ = ['PASCALContextSegDataLayer']
