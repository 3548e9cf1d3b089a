"""The benchmarked nets: netgen's deploy nets at a given input size, with the training loss added.

`graph()` (caffe_fcn.export.graph) gives a net as plain data, so that a process without Caffe (the PyTorch side) can
build the same net.
"""

from caffe.proto import caffe_pb2

import netgen
from caffe_fcn.export.graph import graph  # noqa: F401 (the benchmark's name for it)


def deploy_net(model, size, width=1.0):
    """netgen's deploy net of `model` with its Input reshaped to 1 x 3 x size x size."""
    net = netgen.net(model, 'deploy', width=width)
    (data,) = [layer for layer in net.layer if layer.type == 'Input']
    shape = data.input_param.shape[0]
    del shape.dim[:]
    shape.dim.extend([1, 3, size, size])
    return net


def train_net(model, size, width=1.0):
    """The deploy net plus a label Input and the training loss (as in the models' train nets).

    Same computation as a training iteration without the Python data layer, whose cost is
    measured separately.
    """
    deploy = deploy_net(model, size, width)
    out = deploy.layer[-1].top[0]
    net = caffe_pb2.NetParameter(name=deploy.name)
    for layer in deploy.layer:
        net.layer.add().CopyFrom(layer)
        if layer.type == 'Input':
            label = net.layer.add(name='label', type='Input', top=['label'])
            label.input_param.shape.add(dim=[1, 1, size, size])
    loss = net.layer.add(name='loss', type='SoftmaxWithLoss', bottom=[out, 'label'], top=['loss'])
    loss.loss_param.normalize = False
    loss.loss_param.ignore_label = 255
    return net


def data_layer_net(model, data_dir, width=1.0):
    """A net of only the model's training data layer (its Python layer), reading from `data_dir`."""
    train_split = netgen.MODELS[model].splits[0]
    data = netgen.net(model, train_split, width=width, overrides={'sbdd_dir': str(data_dir)}).layer[0]
    if data.type != 'Python':
        raise ValueError(f'{model}: the first layer of its {train_split} net is {data.type}, not a Python data layer')
    net = caffe_pb2.NetParameter(name=f'{model}-data')
    net.layer.add().CopyFrom(data)
    return net
