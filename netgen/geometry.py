"""Geometry of a net, computed by walking its layers: output stride, receptive field, where each output's first
pixel sits in the input (coord_map's shift), crop offsets, conv depth, and parameter counts (from Caffe)."""
import math
import os
from dataclasses import dataclass
from fractions import Fraction

SPATIAL = ('Convolution', 'Pooling')
GLOBAL = None  # receptive field / stride of a layer that sees the whole input (InnerProduct, global pooling)


@dataclass(frozen=True)
class Blob:
    """Geometry of a blob relative to the input: `stride` input pixels per output pixel, receptive field `rf`
    in input pixels, `origin` the input coordinate of the centre of output pixel 0, and the conv `depth`
    (longest chain of Convolution layers behind it)."""
    stride: Fraction | None
    rf: int | None
    origin: Fraction | None
    depth: int


@dataclass(frozen=True)
class Row:
    layer: str
    type: str
    blob: Blob
    crop: tuple | None


INPUT = Blob(Fraction(1), 1, Fraction(0), 0)


def _first(values, default):
    return values[0] if len(values) else default


def _field(param, hw_name, value):
    """The _h variant of a field where it is set explicitly, else the plain value."""
    return getattr(param, hw_name) if param.HasField(hw_name) else value


def _window(layer):
    """(kernel, stride, pad) of a Convolution / Deconvolution / Pooling layer along height."""
    if layer.type == 'Pooling':
        p = layer.pooling_param
        return _field(p, 'kernel_h', p.kernel_size), _field(p, 'stride_h', p.stride), _field(p, 'pad_h', p.pad)
    p = layer.convolution_param
    kernel = _field(p, 'kernel_h', _first(p.kernel_size, 1))
    return ((kernel - 1) * _first(p.dilation, 1) + 1, _field(p, 'stride_h', _first(p.stride, 1)),
            _field(p, 'pad_h', _first(p.pad, 0)))


def _combine(blobs):
    """Pointwise layers over several bottoms (Eltwise, Concat): the widest view, the finest stride."""
    known = [b for b in blobs if b.rf is not None]
    if not known:
        return Blob(GLOBAL, GLOBAL, GLOBAL, max(b.depth for b in blobs))
    return Blob(min(b.stride for b in known), max(b.rf for b in known), known[0].origin,
                max(b.depth for b in blobs))


def layer_geometry(layer, bottoms):
    """The geometry of a layer's top from its bottoms' geometry."""
    if not bottoms:  # Input / data layers
        return INPUT
    if layer.type == 'Crop':
        b = bottoms[0]  # the second bottom only gives the size
        offset = _first(layer.crop_param.offset, 0)
        return Blob(b.stride, b.rf, None if b.origin is None else b.origin + offset * b.stride, b.depth)
    b = _combine(bottoms)
    if layer.type == 'InnerProduct' or (layer.type == 'Pooling' and layer.pooling_param.global_pooling):
        return Blob(GLOBAL, GLOBAL, GLOBAL, b.depth)
    if b.rf is None:
        return b
    if layer.type in SPATIAL:
        kernel, stride, pad = _window(layer)
        depth = b.depth + (layer.type == 'Convolution')
        return Blob(b.stride * stride, b.rf + (kernel - 1) * b.stride,
                    b.origin + (Fraction(kernel - 1, 2) - pad) * b.stride, depth)
    if layer.type == 'Deconvolution':
        kernel, stride, pad = _window(layer)
        # an output pixel sums ceil(k / s) input pixels; output pixel 0 sits at (pad - (k - 1) / 2) / s inputs
        return Blob(b.stride / stride, b.rf + (math.ceil(kernel / stride) - 1) * b.stride,
                    b.origin + (pad - Fraction(kernel - 1, 2)) / stride * b.stride, b.depth)
    return b  # pointwise: ReLU, Dropout, LRN, Scale, Eltwise, Concat, Softmax, losses


def walk(proto):
    """Row per layer of a NetParameter, in order."""
    blobs, rows = {}, []
    for layer in proto.layer:
        bottoms = [blobs.get(name, INPUT) for name in layer.bottom]
        if layer.type == 'Crop':
            bottoms = bottoms[:1]
        geometry = layer_geometry(layer, bottoms)
        for top in layer.top:
            blobs[top] = geometry
        crop = tuple(layer.crop_param.offset) if layer.type == 'Crop' else None
        rows.append(Row(layer.name, layer.type, geometry, crop))
    return rows


def score_layer(proto):
    """The coarse score layer: the one feeding the first upsampling Deconvolution (else the last layer)."""
    producers = {top: layer.name for layer in proto.layer for top in layer.top}
    for layer in proto.layer:
        if layer.type == 'Deconvolution':
            return producers[layer.bottom[0]]
    return proto.layer[-1].name


def blob_shapes(proto, h, w):
    """{blob: (C, H, W)} of a deploy net fed one H x W image, by Caffe's own shape rules (computed, never
    allocated: Caffe aborts on a blob of more than 2**31 - 1 values). Square kernels, as in every FCN here."""
    shapes = {}
    for layer in proto.layer:
        bottoms = [shapes[name] for name in layer.bottom]
        if layer.type == 'Input':
            tops = [(shape.dim[1], h, w) for shape in layer.input_param.shape]
        else:
            tops = [_top_shape(layer, bottoms)] * len(layer.top)
        shapes.update(zip(layer.top, tops, strict=True))
    return shapes


def blob_sizes(proto, h, w):
    """{blob: values} of the deploy net fed one H x W image (blob_shapes)."""
    return {name: math.prod(shape) for name, shape in blob_shapes(proto, h, w).items()}


def forward_memory(proto, h, w):
    """(activations, im2col) bytes of a forward pass at H x W: every blob's float32 values (Caffe keeps
    them all), and the largest convolution's column buffer (kernel size x output pixels; 1 x 1 convolutions
    need none). The weights come on top, the same at every size."""
    shapes = blob_shapes(proto, h, w)
    columns = [(shapes[layer.bottom[0]][0] // max(layer.convolution_param.group, 1)) * _window(layer)[0] ** 2
               * math.prod(shapes[layer.top[0]][1:]) for layer in proto.layer
               if layer.type == 'Convolution' and _window(layer) != (1, 1, 0)]
    return 4 * sum(math.prod(s) for s in shapes.values()), 4 * max(columns, default=0)


COL_TILE_MB = 4  # the default build's im2col tile (CAFFE_COL_TILE_MB): a larger column buffer is made in tiles


def peak_memory(proto, h, w, gpu=False):
    """Bytes a forward pass at H x W needs beyond the weights: the activations, and the im2col buffer
    (on the CPU at most the default build's tile; Caffe's GPU convolution makes it whole)."""
    activations, columns = forward_memory(proto, h, w)
    cap = float(os.environ.get('CAFFE_COL_TILE_MB', COL_TILE_MB)) * (1 << 20)
    return activations + (columns if gpu else min(columns, cap))


def context(proto):
    """The input pixels each side of an output pixel that can change it (half the outputs' receptive field),
    rounded up to the net's coarsest stride: tiles that overlap by this much, on that grid, give the whole
    image's scores away from the tile edges."""
    rows = walk(proto)
    geometry = {top: row.blob for layer, row in zip(proto.layer, rows, strict=True) for top in layer.top}
    coarsest = int(max(row.blob.stride for row in rows if row.blob.stride))
    half = max(math.ceil(geometry[out].rf / 2) for out in outputs(proto))
    return coarsest, -(-half // coarsest) * coarsest


def outputs(proto):
    """The net's output blobs: tops no layer reads."""
    read = {bottom for layer in proto.layer for bottom in layer.bottom}
    tops = [top for layer in proto.layer for top in layer.top]
    return [top for top in dict.fromkeys(tops) if top not in read]


def _top_shape(layer, bottoms):
    channels, h, w = bottoms[0]
    if layer.type in SPATIAL or layer.type == 'Deconvolution':
        kernel, stride, pad = _window(layer)
        if layer.type == 'Pooling':  # rounded up, a window starting in the padding dropped (pooling_layer.cpp)
            size = [math.ceil((n + 2 * pad - kernel) / stride) + 1 for n in (h, w)]
            size = [s - 1 if pad and (s - 1) * stride >= n + pad else s for s, n in zip(size, (h, w), strict=True)]
        elif layer.type == 'Convolution':
            size = [(n + 2 * pad - kernel) // stride + 1 for n in (h, w)]
        else:
            size = [stride * (n - 1) + kernel - 2 * pad for n in (h, w)]
        out = channels if layer.type == 'Pooling' else layer.convolution_param.num_output
        return (out, *size)
    if layer.type == 'Crop':
        return (channels, *bottoms[1][1:])
    if layer.type == 'Concat':
        return (sum(b[0] for b in bottoms), h, w)
    if layer.type == 'InnerProduct':
        return (layer.inner_product_param.num_output, 1, 1)
    return bottoms[0]  # pointwise


def coarse_scores(proto):
    """{output blob: (the coarse score blob its final upsampling reads, that blob's geometry)}: for each Crop of
    an upsampling Deconvolution's top (score <- upscore <- score_fr, fuse_pool4, ...)."""
    producers, geometry = {}, {}
    for layer, row in zip(proto.layer, walk(proto), strict=True):
        for top in layer.top:
            producers[top], geometry[top] = layer, row.blob
    found = {}
    for layer in proto.layer:
        upsampling = producers.get(layer.bottom[0]) if layer.type == 'Crop' else None
        if upsampling is not None and upsampling.type == 'Deconvolution':
            coarse = upsampling.bottom[0]
            found[layer.top[0]] = (coarse, geometry[coarse])
    return found


def _fixed(layer):
    return len(layer.param) > 0 and all(p.lr_mult == 0 for p in layer.param)


def parameter_counts(proto):
    """{layer: learned parameters} of a deploy net, sized as Caffe sizes the blobs of its convolutions,
    deconvolutions and inner products (weights, and a bias per output unless bias_term is off), at the size of its
    Input; layers whose every param has lr_mult 0 (the fixed bilinear upsampling, at-once skip scales) count 0."""
    net_input = next(layer for layer in proto.layer if layer.type == 'Input')
    shapes = blob_shapes(proto, *net_input.input_param.shape[0].dim[2:4])
    counts = {}
    for layer in proto.layer:
        if layer.type in ('Convolution', 'Deconvolution'):
            p = layer.convolution_param
            kernel = _field(p, 'kernel_h', _first(p.kernel_size, 1))
            weights = p.num_output * shapes[layer.bottom[0]][0] // max(p.group, 1) * kernel ** 2
            outputs = p.num_output if p.bias_term else 0
        elif layer.type == 'InnerProduct':
            p = layer.inner_product_param
            weights, outputs = p.num_output * math.prod(shapes[layer.bottom[0]]), p.num_output if p.bias_term else 0
        elif layer.type == 'Scale' and _fixed(layer):
            weights = outputs = 0
        else:
            continue
        counts[layer.name] = 0 if _fixed(layer) else weights + outputs
    return counts


def totals(proto, rows=None, counts=None):
    """Conv depth, learned parameters, receptive field and stride at the coarse score layer."""
    rows = rows if rows is not None else walk(proto)
    counts = counts if counts is not None else parameter_counts(proto)
    at = score_layer(proto)
    score = next(row.blob for row in rows if row.layer == at)
    return {'score_layer': at, 'depth': score.depth, 'parameters': sum(counts.values()),
            'receptive_field': score.rf, 'stride': None if score.stride is None else int(score.stride)}


def _fmt(value):
    if value is None:
        return 'global'
    if isinstance(value, Fraction):
        return str(value.numerator) if value.denominator == 1 else f'{float(value):g}'
    return str(value)


def report(proto, weights_of=None):
    """The --info text: per layer stride, receptive field, origin, crop offset; then the totals. Parameters are
    counted on `weights_of` (default `proto`): a train net's own data layer would need its dataset."""
    rows, counts = walk(proto), parameter_counts(weights_of or proto)
    lines = [f'{"layer":<28} {"type":<16} {"stride":>7} {"rf":>6} {"origin":>8} {"crop":>6} {"params":>11}']
    for row in rows:
        b = row.blob
        crop = ','.join(map(str, row.crop)) if row.crop else ''
        params = f'{counts[row.layer]:,}' if counts.get(row.layer) else ''
        lines.append(f'{row.layer:<28} {row.type:<16} {_fmt(b.stride):>7} {_fmt(b.rf):>6} {_fmt(b.origin):>8} '
                     f'{crop:>6} {params:>11}')
    t = totals(proto, rows, counts)
    lines += ['', f'at the score layer {t["score_layer"]}: conv depth {t["depth"]}, '
              f'parameters {t["parameters"] / 1e6:.1f}M ({t["parameters"]:,}; fixed upsampling not counted), '
              f'receptive field {_fmt(t["receptive_field"])}, stride {_fmt(t["stride"])}',
              'origin: input coordinate of the centre of output pixel 0 (0 = aligned with the input)']
    return '\n'.join(lines)
