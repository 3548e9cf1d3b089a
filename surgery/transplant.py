"""Moving weights between nets: fully connected into convolution, and the NYUDv2 initializations."""
from dataclasses import dataclass, field

from .weights import WeightsError

BLOB_NAMES = ('weights', 'bias')


@dataclass(frozen=True)
class Move:
    """What happened to one source blob: 'copied', 'coerced' (same values, new shape), 'derived' or 'dropped'."""
    kind: str
    src: str
    dst: str
    index: int
    src_shape: tuple
    dst_shape: tuple = None
    why: str = ''

    def __str__(self):
        blob = BLOB_NAMES[self.index] if self.index < len(BLOB_NAMES) else f'blob {self.index}'
        if self.kind == 'dropped':
            return f'dropped  {self.src} {blob} {self.src_shape}: {self.why}'
        shapes = str(self.dst_shape) if self.src_shape == self.dst_shape else f'{self.src_shape} -> {self.dst_shape}'
        why = f' ({self.why})' if self.why else ''
        return f'{self.kind:8} {self.src} -> {self.dst} {blob} {shapes}{why}'


@dataclass
class Report:
    """The per-blob account of a transplant, plus the destination blobs left at their initialization."""
    moves: list = field(default_factory=list)
    initial: list = field(default_factory=list)  # (layer, index, shape)

    def _kind(self, kind):
        return [m for m in self.moves if m.kind == kind]

    copied = property(lambda self: self._kind('copied'))
    coerced = property(lambda self: self._kind('coerced'))
    derived = property(lambda self: self._kind('derived'))
    dropped = property(lambda self: self._kind('dropped'))

    def written(self):
        """Destination layers that received values."""
        return list(dict.fromkeys(m.dst for m in self.moves if m.kind != 'dropped'))

    def summary(self):
        counts = ', '.join(f'{len(self._kind(k))} {k}' for k in ('copied', 'coerced', 'derived', 'dropped'))
        return f'{counts}, {len(self.initial)} left at initialization'

    def __str__(self):
        lines = [str(m) for m in self.moves]
        lines += [f'initial  {layer} {BLOB_NAMES[i] if i < 2 else i} {shape}' for layer, i, shape in self.initial]
        return '\n'.join(lines + [self.summary()])


def finish(new_net, moves):
    """A Report for these moves, with every destination blob no move wrote listed as left at initialization."""
    written = {(m.dst, m.index) for m in moves if m.kind != 'dropped'}
    initial = [(layer, i, blob.data.shape) for layer, blobs in new_net.params.items()
               for i, blob in enumerate(blobs) if (layer, i) not in written]
    return Report(list(moves), initial)


def transplant(new_net, net, suffix='', strict=False):
    """Copy every parameter of `net` into the layer of `new_net` with the same name plus `suffix`.

    Blobs of equal shape are copied; blobs of equal size and different shape are coerced, which turns a
    fully connected layer (O x I*H*W) into the equivalent convolution (O x I x H x W): Caffe stores both
    in the same order. Layers `new_net` lacks are dropped, and so are blobs whose number of values differs
    (a score layer for other classes: see expand_score), unless `strict`, which makes that a WeightsError.
    Returns a Report: print it for the per-blob account; check_trained_trunk catches a trunk left behind.
    """
    moves = []
    for src, blobs in net.params.items():
        dst = src + suffix
        if dst not in new_net.params:
            moves += [Move('dropped', src, dst, i, b.data.shape, why=f'no layer {dst} in the destination')
                      for i, b in enumerate(blobs)]
            continue
        targets = new_net.params[dst]
        for i, blob in enumerate(blobs):
            moves.append(_move_blob(src, dst, i, blob.data, targets[i].data if i < len(targets) else None, strict))
    return finish(new_net, moves)


def _move_blob(src, dst, index, values, target, strict):
    if target is None:
        return Move('dropped', src, dst, index, values.shape, why=f'{dst} has no blob {index}')
    if values.size != target.size:
        why = f'size mismatch: {values.size} values for {target.size} (other classes or width)'
        if strict:
            raise WeightsError(f'transplant: layer {src!r} blob {index} of shape {values.shape} cannot go into '
                               f'{dst!r} blob {index} of shape {target.shape} ({why}): the nets differ in '
                               'width or classes; use surgery.expand_score for score layers, or strict=False '
                               'to leave them at their initialization')
        return Move('dropped', src, dst, index, values.shape, target.shape, why=why)
    target[...] = values.reshape(target.shape)
    kind = 'copied' if values.shape == target.shape else 'coerced'
    return Move(kind, src, dst, index, values.shape, target.shape)


def expand_score(new_net, new_layer, net, layer):
    """Put a score layer with k classes into one with k' >= k classes: the first k classes are the old ones.

    The remaining classes keep their initialization. Returns the Moves made.
    """
    moves = []
    for i, (old, new) in enumerate(zip(_params(net, layer), _params(new_net, new_layer), strict=False)):
        old, new = old.data, new.data
        k = old.shape[0]
        if k > new.shape[0] or old.shape[1:] != new.shape[1:]:
            raise WeightsError(f'expand_score: {layer!r} blob {i} of shape {old.shape} does not fit into the first '
                               f'classes of {new_layer!r} blob {i} of shape {new.shape}: the new layer needs at '
                               'least as many classes and the same input channels')
        new[:k] = old
        moves.append(Move('copied', layer, new_layer, i, old.shape, new.shape, why=f'first {k} classes'))
    return moves


def transfer_classes(new_net, net, names, new_names):
    """Copy a trained net into one of the same architecture for other classes: every layer whose blobs fit as
    they are, and in the score layers (the first axis the classes) the rows of each class named in both `names`
    and `new_names`; the other rows keep their initialization (zero for the FCN score layers), and the
    Deconvolution upsamplings are left for `interp`. Returns the class names kept (expand_score's idea, matched
    by name rather than by position)."""
    rows = [(names.index(name), i) for i, name in enumerate(new_names) if name in names]
    for layer, new_blobs in new_net.params.items():
        if layer not in net.params or new_net.layer_dict[layer].type == 'Deconvolution':
            continue
        for old, new in zip(net.params[layer], new_blobs, strict=False):
            if old.data.shape == new.data.shape:
                new.data[...] = old.data
            elif old.data.shape[1:] == new.data.shape[1:] and old.data.shape[0] == len(names) \
                    and new.data.shape[0] == len(new_names):
                for source, target in rows:
                    new.data[target] = old.data[source]
    return [new_names[i] for _, i in rows]


def _params(net, layer):
    if layer not in net.params:
        raise WeightsError(f'the net has no layer {layer!r} with parameters (layers: {list(net.params)})')
    return net.params[layer]


# NYUDv2 initializations, as the reference's solve scripts do them --------------------------------


def init_color_d(new_net, vgg_net, layer='conv1_1_bgrd', source='conv1_1'):
    """Early fusion (nyud-fcn32s-color-d): the trunk from `vgg_net`, and a 4-channel first conv.

    The first conv takes the RGB conv1_1 weights for its colour channels and their mean over the colour
    channels for the depth channel; its bias is conv1_1's. Returns the Report.
    """
    report = transplant(new_net, vgg_net)
    rgb, bgrd = _params(vgg_net, source), _params(new_net, layer)
    kernel, new_kernel = rgb[0].data, bgrd[0].data
    if new_kernel.shape != (kernel.shape[0], kernel.shape[1] + 1) + kernel.shape[2:]:
        raise WeightsError(f'init_color_d: {layer!r} has weights of shape {new_kernel.shape}; with {source!r} of '
                           f'shape {kernel.shape} it needs one more input channel and nothing else different')
    new_kernel[:, :-1] = kernel
    new_kernel[:, -1] = kernel.mean(axis=1)
    moves = [Move('derived', source, layer, 0, kernel.shape, new_kernel.shape, why='depth channel = mean of RGB')]
    if len(rgb) > 1 and len(bgrd) > 1:
        bgrd[1].data[...] = rgb[1].data
        moves.append(Move('copied', source, layer, 1, rgb[1].data.shape, bgrd[1].data.shape))
    return finish(new_net, report.moves + moves)


def init_two_stream(new_net, vgg_net, suffixes=('color', 'hha')):
    """Late fusion (nyud-fcn32s-color-hha): the same trunk transplanted into each suffixed stream."""
    moves = []
    for suffix in suffixes:
        moves += transplant(new_net, vgg_net, suffix=suffix).moves
    report = finish(new_net, moves)
    missing = [s for s in suffixes if not any(m.dst.endswith(s) for m in report.moves if m.kind != 'dropped')]
    if missing:
        raise WeightsError(f'init_two_stream: no layer of the net ends with {missing}: the stream suffixes are '
                           f'those of the layer names, e.g. conv1_1color (net layers: {list(new_net.params)[:6]}...)')
    return report

