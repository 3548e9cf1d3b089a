"""Caffe Python layer for SIFT Flow (data, semantic and geometric labels), under the reference FCN's module name."""
from caffe_fcn.datalayers.layers import SIFTFlowSegDataLayer

__all__ = ['SIFTFlowSegDataLayer']
