"""A Caffe graph (caffe_fcn.export.graph) as the source of a self-contained PyTorch module file, and its state_dict.

The file imports only torch: a class whose __init__ declares the layers with parameters (nn.Conv2d,
nn.ConvTranspose2d, a per-channel Scale) and whose forward is one line per Caffe layer, in Caffe's order, with
crop offsets as the net has them, so that any input size gives Caffe's output size. Caffe -> PyTorch: MAX
Pooling rounds its output size up (ceil_mode), Dropout is the identity (Caffe's TEST phase), Crop is slicing,
LRN is local_response_norm (the same formula), SoftmaxWithLoss is cross-entropy over pixels.
"""
import textwrap
from pprint import pformat

from caffe_fcn.export.graph import crop_offsets, identifier, inputs, outputs

# Names the generated forward uses besides its blobs.
RESERVED = {'self', 'torch', 'nn', 'F'}

HELPERS = {
    'Scale': '''
        class Scale(nn.Module):
            """Caffe's Scale layer: a learned factor (and bias) per channel."""

            def __init__(self, channels, bias=False):
                super().__init__()
                self.weight = nn.Parameter(torch.ones(channels))
                self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

            def forward(self, x):
                x = x * self.weight.view(1, -1, 1, 1)
                return x if self.bias is None else x + self.bias.view(1, -1, 1, 1)
        ''',
    'SoftmaxWithLoss': '''
        def softmax_loss(score, label, ignore_label, normalize):
            """Caffe's SoftmaxWithLoss: cross-entropy summed over pixels, divided by the counted pixels (normalize)
            or by the batch size."""
            label = label[:, 0].long()
            ignore = -100 if ignore_label is None else ignore_label
            loss = F.cross_entropy(score, label, ignore_index=ignore, reduction='sum')
            return loss / (label != ignore).sum() if normalize else loss / score.shape[0]
        ''',
}

USAGE = '''
    def load(weights=None, device='cpu'):
        """The net with its weights (by default the .pt file beside this module), for inference: in eval mode,
        without gradients (net.requires_grad_(True) to fine-tune it)."""
        net = {cls}()
        path = weights or os.path.splitext(os.path.abspath(__file__))[0] + '.pt'
        net.load_state_dict(torch.load(path, map_location=device))
        return net.to(device).eval().requires_grad_(False)


    def preprocess(image, input={first!r}):
        """An H x W x 3 image (numpy or tensor; NYUDv2 depth: H x W millimetres) as `input` takes it, like the
        training data layer fed it: 1 x C x H x W float32."""
        modality, mean = INPUTS[input]
        x = torch.tensor(image, dtype=torch.float32)  # a copy: images are often read-only arrays
        if modality == 'depth':
            x = torch.log(x)[..., None]  # log depth
        elif modality == 'color':
            x = x.flip(-1)  # RGB -> BGR, Caffe's channel order
        return (x - torch.tensor(mean, dtype=torch.float32)).permute(2, 0, 1)[None]
    '''


def _size(pair):
    """A kernel/stride/pad pair as PyTorch's argument: one number when square."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def _keywords(**values):
    """', a=1, b=(2, 3)' for the values that differ from PyTorch's defaults (given as (value, default))."""
    shown = {k: _size(v) if isinstance(v, (list, tuple)) else v for k, (v, _) in values.items()}
    return ''.join(f', {k}={v!r}' for k, v in shown.items() if v != values[k][1])


def attributes(layers):
    """{layer name: module attribute} for the layers with parameters."""
    taken = set(RESERVED)
    names = {}
    for spec in layers:
        if spec['type'] in ('Convolution', 'Deconvolution', 'Scale'):
            names[spec['name']] = claim(taken, spec['name'])
    return names


def claim(taken, name):
    """A new identifier for `name`, added to the set `taken`."""
    text = identifier(name, taken)
    taken.add(text)
    return text


def declaration(spec, shapes):
    """The nn.Module that holds a layer's parameters; `shapes` its Caffe blob shapes."""
    if spec['type'] == 'Scale':
        return f'Scale({shapes[0][0]}{", bias=True" if spec["bias"] else ""})'
    weight = shapes[0]
    group = spec['group']
    conv = spec['type'] == 'Convolution'
    channels = (weight[1] * group, weight[0]) if conv else (weight[0], weight[1] * group)
    options = _keywords(stride=(spec['stride'], 1), padding=(spec['pad'], 0), dilation=(spec['dilation'], 1),
                        groups=(group, 1), bias=(spec['bias'], True))
    return f'nn.{"Conv2d" if conv else "ConvTranspose2d"}({channels[0]}, {channels[1]}, ' \
           f'{_size(spec["kernel"])}{options})'


def expression(spec, blob, attribute):
    """The PyTorch expression for one layer's output from its bottoms (`blob` maps a blob to its variable)."""
    x = [blob(b) for b in spec['bottom']]
    kind = spec['type']
    if kind in ('Convolution', 'Deconvolution', 'Scale'):
        return f'self.{attribute}({x[0]})'
    if kind == 'ReLU':
        in_place = spec['top'] == spec['bottom']
        slope = spec['negative_slope']
        if slope:
            return f'F.leaky_relu({x[0]}, {slope!r}{", inplace=True" if in_place else ""})'
        return f'F.relu({x[0]}{", inplace=True" if in_place else ""})'  # in place as in Caffe: less memory
    if kind == 'Pooling':
        return f'F.max_pool2d({x[0]}, {_size(spec["kernel"])}, {_size(spec["stride"])}' \
               f'{_keywords(padding=(spec["pad"], 0))}, ceil_mode=True)'
    if kind == 'Dropout':
        return x[0]
    if kind == 'Crop':
        index = [f'{o}:{o} + {x[1]}.shape[{axis}]' if o else f':{x[1]}.shape[{axis}]'
                 for axis, o in crop_offsets(spec).items()]
        return f'{x[0]}[{", ".join([":"] * (4 - len(index)) + index)}]'
    if kind == 'Eltwise':
        coeff = spec['coeff'] or [1.0] * len(x)
        return ' + '.join(b if c == 1 else f'{c!r} * {b}' for c, b in zip(coeff, x, strict=True))
    if kind == 'Concat':
        return f'torch.cat([{", ".join(x)}], {spec["axis"]})'
    if kind == 'LRN':
        return f'F.local_response_norm({x[0]}, {spec["size"]}, {spec["alpha"]!r}, {spec["beta"]!r}, {spec["k"]!r})'
    if kind == 'SoftmaxWithLoss':
        return f'softmax_loss({x[0]}, {x[1]}, {spec["ignore_label"]!r}, {spec["normalize"]!r})'
    raise ValueError(f'{spec["name"]}: no PyTorch expression for {kind}')


def class_name(model):
    """voc-fcn8s -> VocFcn8s."""
    return ''.join(part[:1].upper() + part[1:] for part in identifier(model).split('_')) or 'Net'


def source(layers, shapes, model='net', doc='', inputs_info=None, classes=None, returns=None):
    """The module file's text. `shapes`: {layer: [blob shape, ...]} of the parameters; `inputs_info`: {input:
    (modality, mean)} for preprocess(); `classes`: {output: class names}; `returns`: the blobs forward returns
    (default: the net's outputs)."""
    cls = class_name(model)
    attribute = attributes(layers)
    taken = set(RESERVED)  # blobs are locals: layer attributes live on self
    variables = {}

    def blob(name):
        if name not in variables:
            variables[name] = claim(taken, name)
        return variables[name]

    net_inputs = [blob(name) for name in inputs(layers)]
    init = [f'self.{attribute[s["name"]]} = {declaration(s, shapes[s["name"]])}' for s in layers
            if s['name'] in attribute]
    lines = []
    for spec in layers:
        if spec['type'] == 'Input' or (spec['type'] == 'Dropout' and spec['top'] == spec['bottom']):
            continue
        line = f'{blob(spec["top"][0])} = {expression(spec, blob, attribute.get(spec["name"]))}'
        lines.append(line if spec['name'] == spec['top'][0] else f'{line}  # {spec["name"]}')
    returns = returns or outputs(layers)
    lines.append(f'return {", ".join(blob(name) for name in returns)}')
    helpers = ''.join(textwrap.dedent(HELPERS[t]) + '\n\n' for t in dict.fromkeys(s['type'] for s in layers)
                      if t in HELPERS)
    body = '\n'.join(['', f'class {cls}(nn.Module):', f'    """{model} as Caffe runs it (TEST phase)."""', '',
                      '    inputs = ' + repr(tuple(inputs(layers))),
                      '    outputs = ' + repr(tuple(returns)), '',
                      '    def __init__(self):', '        super().__init__()']
                     + [f'        {line}' for line in init]
                     + ['', f'    def forward(self, {", ".join(net_inputs)}):']
                     + [f'        {line}' for line in lines])
    usage = textwrap.dedent(USAGE.format(cls=cls, first=next(iter(inputs_info)))) if inputs_info else ''
    tables = ''.join(table(name, value) for name, value in (('INPUTS', inputs_info), ('CLASSES', classes)) if value)
    parts = [docstring(doc or model) + '\n' + ('import os\n\n' if inputs_info else '')
             + 'import torch\nimport torch.nn.functional as F\nfrom torch import nn\n', tables, helpers.strip('\n'),
             body.strip('\n'), usage.strip('\n')]
    return '\n\n\n'.join(part.strip('\n') for part in parts if part.strip()) + '\n'


def table(name, entries):
    """`NAME = {...}`, one key a line, a long value wrapped under itself."""
    rows = []
    for key, value in entries.items():
        text = pformat(value, width=100, compact=True).replace('\n', '\n' + ' ' * (6 + len(repr(key))))
        rows.append(f'    {key!r}: {text},')
    return f'{name} = {{\n' + '\n'.join(rows) + '\n}\n'


def docstring(text):
    """`text` as a docstring that no file name in it can end early."""
    return '"""' + text.replace('\\', '\\\\').replace('"""', '\\"""') + '"""'


def state_dict(layers, weights):
    """The module's state_dict (torch tensors) from Caffe's {layer: [weight, bias]} arrays."""
    import torch

    attribute = attributes(layers)
    return {f'{attribute[name]}.{kind}': torch.from_numpy(array.copy())
            for name, arrays in weights.items() if name in attribute
            for kind, array in zip(('weight', 'bias')[:len(arrays)], arrays, strict=True)}
