"""The benchmarked nets: netgen's deploy nets at a given input size, with the training loss added.

Also `graph()`, the net as plain data (layer type, blobs and the geometry of each layer), so that a
process without Caffe (the PyTorch side) can build the same net.
"""

from caffe.proto import caffe_pb2

import netgen


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
    data = netgen.net(model, train_split, width=width, data={'sbdd_dir': str(data_dir)}).layer[0]
    if data.type != 'Python':
        raise ValueError(f'{model}: the first layer of its {train_split} net is {data.type}, not a Python data layer')
    net = caffe_pb2.NetParameter(name=f'{model}-data')
    net.layer.add().CopyFrom(data)
    return net


def _pair(values, default):
    """Caffe's repeated kernel/pad/stride field as (h, w)."""
    values = list(values)
    return (values[0], values[-1]) if values else (default, default)


def graph(net):
    """The NetParameter as a list of plain dicts, one per layer, with what a re-implementation needs."""
    layers = []
    for layer in net.layer:
        spec = {'name': layer.name, 'type': layer.type, 'bottom': list(layer.bottom), 'top': list(layer.top),
                'lr_mult': [p.lr_mult for p in layer.param]}
        if layer.type in ('Convolution', 'Deconvolution'):
            p = layer.convolution_param
            spec.update(num_output=p.num_output, kernel=_pair(p.kernel_size, 1), pad=_pair(p.pad, 0),
                        stride=_pair(p.stride, 1), group=p.group, bias=p.bias_term)
            if list(p.dilation) not in ([], [1]):
                raise NotImplementedError(f'{layer.name}: dilated convolutions are not benchmarked')
        elif layer.type == 'Pooling':
            p = layer.pooling_param
            spec.update(pool=caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool),
                        kernel=_pair([p.kernel_size] if p.kernel_size else [], 1),
                        stride=_pair([p.stride] if p.stride else [], 1), pad=_pair([p.pad] if p.pad else [], 0))
        elif layer.type == 'Crop':
            spec.update(axis=layer.crop_param.axis, offset=list(layer.crop_param.offset))
        elif layer.type == 'Eltwise':
            p = layer.eltwise_param
            spec.update(operation=caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation), coeff=list(p.coeff))
        elif layer.type == 'SoftmaxWithLoss':
            p = layer.loss_param
            spec.update(ignore_label=p.ignore_label if p.HasField('ignore_label') else None,
                        normalize=p.normalize if p.HasField('normalize') else True)
        elif layer.type == 'Input':
            spec.update(shape=[list(s.dim) for s in layer.input_param.shape])
        layers.append(spec)
    return layers
