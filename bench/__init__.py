"""Benchmarks: Caffe CPU speed and memory for the FCNs, beside PyTorch and the sgemm ceiling.

`python -m bench` (`make bench`) runs every configuration in a fresh subprocess (bench.worker) so
that peak resident memory is its own, prints a table, and writes bench/results.json and
bench/scaling.png.  Large raw outputs (weights, outputs for the cross-check) go to bench/out/.
"""
