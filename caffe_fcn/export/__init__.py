"""Trained FCNs out of Caffe: `fcn-export MODEL --format onnx|torch`, each export checked against Caffe.

graph.py reads a Caffe NetParameter into plain data (one dict per layer); torch_source.py writes that graph as a
self-contained PyTorch module file; onnx_graph.py as an ONNX model; check.py runs an export beside Caffe.
Nothing here imports Caffe at import time.
"""
