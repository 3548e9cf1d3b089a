"""FLOPs counted from the net: what the convolutions (im2col + sgemm in Caffe) cost, layer by layer.

A multiply-add is 2 FLOPs; biases and element-wise layers (ReLU, pooling, crop, sum, loss) are not
counted: they are memory-bound and their time shows in the per-layer profile instead.  Backward
counts what a training iteration computes: the gradient with respect to the bottom only where a
learnable layer lies below it (not into the data), the weight gradient only where lr_mult != 0
(not for the fixed bilinear Deconvolutions).
"""

PARAM_TYPES = ('Convolution', 'Deconvolution', 'InnerProduct')


def _macs(layer, weight_shape, bottom_shape, top_shape):
    """Multiply-adds of one forward pass of a parametrized layer."""
    per_position = 1
    for d in weight_shape:
        per_position *= d
    if layer.type == 'Convolution':  # every output position: Cout x Cin/g x kh x kw
        positions = top_shape[0] * top_shape[2] * top_shape[3]
    elif layer.type == 'Deconvolution':  # every input position scatters Cin x Cout/g x kh x kw
        positions = bottom_shape[0] * bottom_shape[2] * bottom_shape[3]
    else:  # InnerProduct
        positions = bottom_shape[0]
    return per_position * positions


def per_layer(net_param, net):
    """[{'name', 'type', 'forward', 'backward'}] in FLOPs for every layer of the instantiated caffe.Net `net`."""
    needs_diff = set()  # blobs whose gradient a training iteration computes
    rows = []
    for layer in net_param.layer:
        learns = layer.name in net.params and (not layer.param or layer.param[0].lr_mult != 0)
        bottom_diff = any(b in needs_diff for b in layer.bottom)
        if learns or bottom_diff:
            needs_diff.update(layer.top)
        forward = backward = 0
        if layer.type in PARAM_TYPES:
            weight = net.params[layer.name][0].data.shape
            macs = _macs(layer, weight, net.blobs[layer.bottom[0]].data.shape, net.blobs[layer.top[0]].data.shape)
            forward = 2 * macs
            backward = 2 * macs * (int(bottom_diff) + int(learns))
        rows.append({'name': layer.name, 'type': layer.type, 'forward': forward, 'backward': backward})
    return rows


def totals(rows):
    """(forward, forward + backward) FLOPs of a whole iteration."""
    forward = sum(r['forward'] for r in rows)
    return forward, forward + sum(r['backward'] for r in rows)
