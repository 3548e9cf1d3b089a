"""Caffemodel files checked in Python before Caffe sees them, and the guard against untrained trunks.

Caffe's `Net.copy_from` aborts the whole process on a missing file, a parse failure, a wrong number of
blobs or a shape mismatch. `load_weights` checks all of that first, with the same rules Caffe applies
(`Net::CopyTrainedLayersFrom`, `Blob::ShapeEquals`, `Blob::FromProto`), and raises `WeightsError`.
"""
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from tqdm import tqdm

CONVERT_HINT = 'make the trunk weights with `fcn-surgery convert` (or transplant them with `surgery.transplant`)'


class WeightsError(ValueError):
    """A weights file or a net's weights that cannot be used; the message says what to do."""


@dataclass
class LoadReport:
    """What `load_weights` copied: layers loaded, file layers the net lacks, net layers the file lacks."""
    path: Path
    loaded: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    missing: list = field(default_factory=list)

    def __str__(self):
        lines = [f'{self.path}: loaded {len(self.loaded)} layers']
        lines += [f'  ignored  {name} (not in the net)' for name in self.ignored]
        lines += [f'  initial  {name} (not in the file: left at initialization)' for name in self.missing]
        return '\n'.join(lines)


def read_caffemodel(path):
    """Parse a binary caffemodel into a NetParameter; a missing, empty or corrupt file is a WeightsError."""
    path = Path(path)
    if path.exists() and not path.is_file():  # reading a FIFO would wait forever
        raise WeightsError(f'weights {path} is not a regular file (a folder, FIFO or device): give a .caffemodel')
    if not path.is_file():
        raise WeightsError(f'weights file {path} does not exist: check the path, or {CONVERT_HINT}')
    if path.suffix in ('.h5', '.hdf5'):
        raise WeightsError(f'{path}: HDF5 weights are not supported here; save the net as a binary .caffemodel')
    data = path.read_bytes()
    if not data:
        raise WeightsError(f'weights file {path} is empty: download or write it again')
    from caffe.proto import caffe_pb2

    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(data)
    except DecodeError as e:
        raise WeightsError(f'{path} is not a valid caffemodel (truncated or corrupt: {e}); '
                           'download or write it again') from None
    return param


def blob_shape(blob):
    """The shape a BlobProto declares: `shape.dim`, or the legacy 4D num/channels/height/width."""
    if _is_legacy(blob):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(blob.shape.dim)


def _is_legacy(blob):
    return any(blob.HasField(name) for name in ('num', 'channels', 'height', 'width'))


def shape_equals(shape, blob):
    """Caffe's Blob::ShapeEquals: legacy 4D shapes index from the end, missing leading axes count as 1."""
    shape = tuple(shape)
    if _is_legacy(blob):
        return len(shape) <= 4 and (1,) * (4 - len(shape)) + shape == blob_shape(blob)
    return shape == blob_shape(blob)


def file_layers(param):
    """(name, blobs) for each layer of a NetParameter, V2 `layer` and old V1 (and V0) `layers` alike."""
    for layer in param.layer:
        yield layer.name, layer.blobs
    for v1 in param.layers:
        if v1.name or not v1.HasField('layer'):
            yield v1.name, v1.blobs
        else:  # V0: the definition and its blobs are nested one level down
            yield v1.layer.name, v1.layer.blobs


def net_layers(net):
    """(name, blobs) for each layer of an instantiated caffe.Net, in order."""
    return list(zip(net._layer_names, (layer.blobs for layer in net.layers), strict=True))


def validate(net, param, path='weights'):
    """Check a parsed caffemodel against a net as Caffe's copy_from would; return a LoadReport."""
    targets = {}
    for name, blobs in net_layers(net):
        targets.setdefault(name, blobs)  # Caffe copies into the first layer of that name
    report = LoadReport(Path(path))
    for name, blobs in file_layers(param):
        if name not in targets:
            report.ignored.append(name)
            continue
        target = targets[name]
        if len(target) != len(blobs):
            raise WeightsError(f'{path}: layer {name!r} has {len(blobs)} blobs in the file but {len(target)} '
                               'in the net: the file was made for a different net')
        for i, (dst, src) in enumerate(zip(target, blobs, strict=True)):
            _check_blob(path, name, i, tuple(dst.data.shape), src)
        if len(blobs):
            report.loaded.append(name)
    if not report.loaded:
        raise WeightsError(f'{path}: none of its layers matches a layer of the net: the file was made for a '
                           f'different net (file layers: {[n for n, _ in file_layers(param)][:8]}...)')
    loaded = set(report.loaded)
    report.missing = [name for name, blobs in net_layers(net) if len(blobs) and name not in loaded]
    return report


def _check_blob(path, layer, index, shape, blob):
    stored_shape = blob_shape(blob)
    if not shape_equals(shape, blob) and layer.startswith('score') and len(stored_shape) == len(shape) \
            and tuple(stored_shape[1:]) == tuple(shape[1:]):  # a score layer: its first axis is the classes
        raise WeightsError(f'{path} was trained for {stored_shape[0]} classes (its {layer!r} has {stored_shape[0]} '
                           f'rows) but this net has {shape[0]}: weights for another dataset? Give that dataset '
                           '(--dataset), or weights trained on this one')
    if not shape_equals(shape, blob):
        raise WeightsError(f'{path}: layer {layer!r} blob {index} has shape {blob_shape(blob)} in the file but '
                           f'{shape} in the net: the file was made for a different net or width')
    count = int(np.prod(shape))
    stored = len(blob.double_data) or len(blob.data)
    if stored != count:
        raise WeightsError(f'{path}: layer {layer!r} blob {index} holds {stored} values for shape {shape} '
                           f'({count} expected): the file is truncated or corrupt; download or write it again')
    diff = len(blob.double_diff) or len(blob.diff)
    if diff and diff != count:
        raise WeightsError(f'{path}: layer {layer!r} blob {index} holds {diff} diff values for shape {shape} '
                           f'({count} expected): the file is corrupt')


def load_weights(net, path, read_limit=None, partial=False, model=None):
    """Validate the caffemodel at `path` against `net` in Python, then let Caffe copy it in.

    Returns a LoadReport. Raises WeightsError naming the layer, the blob and both shapes on a mismatch,
    and on a missing, truncated or corrupt file: Caffe would abort the process instead. Every layer of the net
    that has weights must be in the file (a file cut at a layer boundary parses, but lacks some), unless
    `partial` (starting a net from another one's weights; the report lists what stays at initialization).
    NaN or infinite weights are refused either way. A file larger than Caffe can read (the published VGG16
    caffemodel is 553 MB) is handed to Caffe one layer at a time. `model`: the name of the model the net is, said
    to differ where the file names another (the files this project writes carry their model's name).
    """
    param = read_caffemodel(path)
    if model is not None:
        check_written_for(param, model, path)
    report = validate(net, param, path)
    if report.missing and not partial:
        raise WeightsError(f'{path} has no weights for {len(report.missing)} layer(s) of the net: '
                           f'{", ".join(report.missing[:8])}{" ..." if len(report.missing) > 8 else ""}; the file '
                           'is truncated or was made for another net')
    if not partial:
        check_dropped(param, report, path)
    limit = CAFFE_READ_LIMIT if read_limit is None else read_limit
    if Path(path).stat().st_size < limit:
        net.copy_from(str(path))
    else:
        _copy_by_layer(net, param, set(report.loaded), limit, path)
    broken = [name for name in report.loaded if not all(np.isfinite(blob.data).all() for blob in net.params[name])]
    if broken:
        raise WeightsError(f'{path} holds NaN or infinite weights in {", ".join(broken[:8])}'
                           f'{" ..." if len(broken) > 8 else ""}: it cannot give meaningful results; use a snapshot '
                           'from before the training diverged')
    return report


def check_written_for(param, model, path):
    """A warning where the file names another of the declared models than the one it is loaded into."""
    from caffe_fcn import registry

    if param.name and param.name != model and param.name in registry.MODELS:
        print(f'warning: {path} was written for {param.name} (the model its file names), not for {model}',
              file=sys.stderr)


def check_dropped(param, report, path):
    """Weighted layers of the file that the net lacks mean weights of another model: named on stderr, and refused
    where they change the output (the at-once model's Scale layers: its skips would be summed unscaled)."""
    types = {layer.name: layer.type for layer in param.layer}
    dropped = [name for name, blobs in file_layers(param) if len(blobs) and name in report.ignored]
    scales = [name for name in dropped if types.get(name) == 'Scale']
    if scales:
        raise WeightsError(f'{path} holds Scale layers this net lacks ({", ".join(scales)}): weights of another model '
                           '(voc-fcn8s-atonce?) whose output depends on them; load them into that model')
    if dropped:
        print(f'warning: {path} holds layers this net lacks, left out: {", ".join(dropped[:8])}'
              f'{" ..." if len(dropped) > 8 else ""} (weights of another model?)', file=sys.stderr)


# Caffe's ReadProtoFromBinaryFile caps a binary proto at 512 MiB (CodedInputStream::SetTotalBytesLimit)
CAFFE_READ_LIMIT = 512 * 2 ** 20


def _copy_by_layer(net, param, names, limit, path):
    """copy_from one single-layer caffemodel per layer, each under Caffe's read limit (all checked first)."""
    parts = []
    for kind in ('layer', 'layers'):  # V1 layers stay V1: Caffe upgrades them as it would the whole file
        for layer in getattr(param, kind):
            if layer.name in names:
                single = type(param)(name=param.name)
                getattr(single, kind).add().CopyFrom(layer)
                parts.append((layer.name, single.SerializeToString()))
    too_big = [f'{name} ({len(data)} bytes)' for name, data in parts if len(data) >= limit]
    if too_big:
        raise WeightsError(f'{path}: layers {", ".join(too_big)} are each larger than Caffe reads from one file '
                           f'({limit} bytes); nothing was loaded')
    with tempfile.TemporaryDirectory(prefix='fcn-weights-') as tmp:
        part = Path(tmp) / 'layer.caffemodel'
        for _, data in tqdm(parts, desc=f'loading {Path(path).name}', unit='layer', disable=None, leave=False):
            part.write_bytes(data)
            net.copy_from(str(part))


# The guard before training ------------------------------------------------------------------------

TRUNK_TYPES = ('Convolution', 'InnerProduct')


def trunk_layers(net):
    """The learned feature layers: convolutions and fully connected layers that are not score layers.

    Score layers (`score_fr`, `score_pool4`, ...) and the bilinear Deconvolutions are legitimately at their
    initialization before training; everything else comes from the ILSVRC classifier.
    """
    return [name for name, layer in net.layer_dict.items()
            if layer.type in TRUNK_TYPES and len(layer.blobs) and 'score' not in name]


def check_trained_trunk(net):
    """Refuse to train a net whose trunk was never given trained weights.

    Raises WeightsError when every trunk weight is zero (Caffe's default constant filler, which netgen's nets
    keep: the net would output all zeros) or when a trunk layer's kernel is constant (all values equal, as no
    trained kernel is). Returns the trunk layer names otherwise.
    """
    trunk = trunk_layers(net)
    if not trunk:
        raise WeightsError('the net has no trunk layers (Convolution or InnerProduct outside the score layers)')
    kernels = {name: net.params[name][0].data for name in trunk}
    if not any(np.any(k) for k in kernels.values()):
        raise WeightsError(f'every trunk weight of the net is zero ({len(trunk)} layers, {trunk[0]} ... '
                           f'{trunk[-1]}): the net would output all zeros; {CONVERT_HINT}, then load them')
    untrained = [name for name, k in kernels.items() if k.size > 1 and bool(np.all(k == k.flat[0]))]
    if untrained:
        raise WeightsError(f'trunk layers still at their fillers: {", ".join(untrained)}; they were never given '
                           f'trained weights: {CONVERT_HINT}, or initialize them (e.g. surgery.init_color_d for '
                           'conv1_1_bgrd)')
    return trunk
