"""Benchmarks: Caffe CPU speed and memory for the FCNs, beside PyTorch and the sgemm ceiling.

`python -m caffe_fcn.bench` (`make bench`) runs every configuration in a fresh subprocess (caffe_fcn.bench.worker) so
that peak resident memory is its own, prints a table, and writes caffe_fcn/bench/results.json and
caffe_fcn/bench/scaling.png.  Large raw outputs (weights, outputs for the cross-check) go to caffe_fcn/bench/out/.
"""
