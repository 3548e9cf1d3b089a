"""A Caffe graph (caffe_fcn.export.graph) with its weights as an ONNX model (opset 17) of dynamic batch, height and
width.

Each Caffe layer becomes the equivalent ONNX operator: Convolution -> Conv, Deconvolution -> ConvTranspose (the
same weight layout), MAX Pooling -> MaxPool with ceil_mode (Caffe rounds the output size up), Crop -> Slice whose
ends are the reference blob's runtime shape plus the net's offsets (so any input size crops exactly), Eltwise SUM ->
Sum, Scale -> Mul by the per-channel factors, LRN -> LRN (the same formula), Dropout -> Identity.
Caffe's in-place layers write a blob again: each write gets its own tensor name, the last one the blob's own.
"""
import numpy as np

from caffe_fcn.export.graph import crop_offsets, inputs, outputs

OPSET = 17
IR_VERSION = 8  # the IR of opset 17: runtimes older than the onnx package read it


class Builder:
    """Collects nodes and initializers, naming each write of a Caffe blob."""

    def __init__(self, layers):
        from onnx import helper

        self.helper = helper
        self.nodes, self.initializers = [], []
        self.writes = {}  # blob -> how many writes remain
        for spec in layers:
            for top in spec['top']:
                self.writes[top] = self.writes.get(top, 0) + 1
        self.current = {}  # blob -> the tensor holding its value now

    def read(self, blob):
        return self.current[blob]

    def write(self, blob):
        """A fresh tensor name for the next write of `blob`; the last write keeps the blob's name."""
        self.writes[blob] -= 1
        name = blob if self.writes[blob] == 0 else f'{blob}#{self.writes[blob]}'
        self.current[blob] = name
        return name

    def constant(self, name, array):
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, ins, out, name, **attributes):
        self.nodes.append(self.helper.make_node(op, ins, [out], name=name, **attributes))
        return out


def _conv(b, spec, x, weights):
    name = spec['name']
    ins = [x, b.constant(f'{name}.weight', weights[0])]
    if spec['bias'] and len(weights) > 1:
        ins.append(b.constant(f'{name}.bias', weights[1]))
    op = 'Conv' if spec['type'] == 'Convolution' else 'ConvTranspose'
    return b.node(op, ins, b.write(spec['top'][0]), name, kernel_shape=list(spec['kernel']),
                  pads=list(spec['pad']) * 2, strides=list(spec['stride']), dilations=list(spec['dilation']),
                  group=spec['group'])


def _pool(b, spec, x, weights):
    return b.node('MaxPool', [x], b.write(spec['top'][0]), spec['name'], kernel_shape=list(spec['kernel']),
                  pads=list(spec['pad']) * 2, strides=list(spec['stride']), ceil_mode=1)


def _crop(b, spec, x, reference, weights):
    name = spec['name']
    offsets = crop_offsets(spec)
    axes, starts = list(offsets), list(offsets.values())
    shape = b.node('Shape', [reference], f'{name}/shape', f'{name}/shape', start=axes[0], end=axes[-1] + 1)
    ends = b.node('Add', [shape, b.constant(f'{name}/starts', np.array(starts, np.int64))], f'{name}/ends',
                  f'{name}/ends')
    return b.node('Slice', [x, f'{name}/starts', ends, b.constant(f'{name}/axes', np.array(axes, np.int64))],
                  b.write(spec['top'][0]), name)


def _eltwise(b, spec, *xs, weights):
    name = spec['name']
    terms = []
    for i, (c, x) in enumerate(zip(spec['coeff'] or [1.0] * len(xs), xs, strict=True)):
        terms.append(x if c == 1 else b.node('Mul', [x, b.constant(f'{name}/coeff{i}', np.float32(c))],
                                             f'{name}/term{i}', f'{name}/term{i}'))
    return b.node('Sum', terms, b.write(spec['top'][0]), name)


def _scale(b, spec, x, weights):
    name = spec['name']
    scaled = b.node('Mul', [x, b.constant(f'{name}.weight', weights[0].reshape(1, -1, 1, 1))],
                    b.write(spec['top'][0]) if len(weights) == 1 else f'{name}/scaled', name)
    if len(weights) == 1:
        return scaled
    return b.node('Add', [scaled, b.constant(f'{name}.bias', weights[1].reshape(1, -1, 1, 1))],
                  b.write(spec['top'][0]), f'{name}/bias')


def _relu(b, spec, x, weights):
    slope = spec['negative_slope']
    extra = {'alpha': slope} if slope else {}
    return b.node('LeakyRelu' if slope else 'Relu', [x], b.write(spec['top'][0]), spec['name'], **extra)


OPS = {
    'Convolution': _conv,
    'Deconvolution': _conv,
    'Pooling': _pool,
    'ReLU': _relu,
    'Dropout': lambda b, spec, x, weights: b.node('Identity', [x], b.write(spec['top'][0]), spec['name']),
    'Crop': _crop,
    'Eltwise': _eltwise,
    'Concat': lambda b, spec, *xs, weights: b.node('Concat', list(xs), b.write(spec['top'][0]), spec['name'],
                                                   axis=spec['axis']),
    'LRN': lambda b, spec, x, weights: b.node('LRN', [x], b.write(spec['top'][0]), spec['name'], size=spec['size'],
                                              alpha=spec['alpha'], beta=spec['beta'], bias=spec['k']),
    'Scale': _scale,
}


def model_proto(layers, weights, output_channels, doc=''):
    """The onnx ModelProto. `weights`: {layer: [weight, bias]} float32 arrays; `output_channels`: {output blob:
    channels}, for the declared output shapes."""
    from onnx import TensorProto, checker, helper

    b = Builder(layers)
    graph_inputs = []
    for blob, shape in inputs(layers).items():
        b.write(blob)
        graph_inputs.append(helper.make_tensor_value_info(blob, TensorProto.FLOAT,
                                                          ['batch', shape[1], 'height', 'width']))
    for spec in layers:
        if spec['type'] == 'Input':
            continue
        if spec['type'] not in OPS:
            raise ValueError(f'layer {spec["name"]}: Caffe {spec["type"]} has no ONNX export')
        OPS[spec['type']](b, spec, *map(b.read, spec['bottom']), weights=weights.get(spec['name'], []))
    graph_outputs = [helper.make_tensor_value_info(b.read(blob), TensorProto.FLOAT,
                                                   ['batch', output_channels[blob], 'height', 'width'])
                     for blob in outputs(layers)]
    graph = helper.make_graph(b.nodes, doc.partition('\n')[0] or 'fcn', graph_inputs, graph_outputs,
                              b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)], producer_name='fcn-export',
                              doc_string=doc, ir_version=IR_VERSION)
    checker.check_model(model)
    return model
