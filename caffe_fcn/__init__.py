"""What the fcn tools share and that imports no Caffe: the model registry and the command-line kit."""
