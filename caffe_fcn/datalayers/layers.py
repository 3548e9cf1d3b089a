"""The Caffe Python data layers, faithful to the reference FCN layers' outputs and order.

One image per forward pass with a leading batch dimension of 1; the net is reshaped for every image.
Training splits (those whose name contains 'train', as in the reference) are read as the reference reads them:
`random.randint(0, n - 1)` after seeding with `seed`, with replacement, one draw in setup and one after each
forward pass, from the layer's own `random.Random` (nothing else in the process can shift it). Evaluation
splits are read in file order. `state()` and `restore()` carry the generator's state, so a resumed run draws
what an uninterrupted one would. Every layer also takes `mirror` and `jitter` (pixels), and `sample` (keep
probability) with `cell` (pixels): training splits are then augmented (`augment`) and their loss sampled
(`sample_cells`) from a separate stream seeded by `seed` and the forward count, so that switching them on does
not move the image order; all are off by default, as the paper ran.
"""
import random

import caffe
import numpy as np

from caffe_fcn import registry

from . import params as P
from .datasets import named
from .io import DatasetError

# Every layer's keys for its order and, on training splits only, the paper's augmentation and loss sampling (CVPR
# 2015 sec. 4.3), both off by default as in its runs.
COMMON = {'randomize': (P.boolean, True), 'seed': (P.seed, None), 'mirror': (P.boolean, False),
          'jitter': (P.pixels, 0), 'sample': (P.probability, 1.0), 'cell': (P.pixels, 32)}


def augment(sample, rng, mirror=False, jitter=0):
    """CVPR 2015 sec. 4.3's augmentation, on every top of one sample alike: a mirror image with probability 1/2,
    and a translation by up to `jitter` pixels each way (the coarsest prediction scale is 32). Pixels shifted in
    are the mean (0 after its subtraction) in images and void (255) in labels (uint8 tops)."""
    flip = mirror and rng.random() < 0.5
    dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
    return {name: shift(array[..., ::-1] if flip else array, dy, dx, 255 if array.dtype == np.uint8 else 0)
            for name, array in sample.items()}


def sample_cells(label, rng, keep, cell):
    """Loss sampling: each `cell` x `cell` block of the labels (one final-layer cell of a stride-`cell` net) is
    kept with probability `keep`, else void (255), so the loss ignores it."""
    h, w = label.shape[-2:]
    dropped = rng.random((-(-h // cell), -(-w // cell))) >= keep
    return np.where(dropped.repeat(cell, 0).repeat(cell, 1)[:h, :w], np.uint8(255), label)


def shift(array, dy, dx, fill):
    """C x H x W `array` moved down by dy and right by dx (negative: up, left), the same size."""
    h, w = array.shape[-2:]
    out = np.full_like(array, fill)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        array[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def check_sample(sample, id_):
    """Every axis of every top before Caffe sees it (a mismatch would abort the process in a loss or Concat):
    each C x H x W, all of one H x W, labels of one channel."""
    shapes = {name: array.shape for name, array in sample.items()}
    sizes = {shape[1:] for shape in shapes.values() if len(shape) == 3}
    labels_ok = all(shape[0] == 1 for name, shape in shapes.items() if sample[name].dtype == np.uint8)
    if any(len(shape) != 3 for shape in shapes.values()) or len(sizes) != 1 or not labels_ok:
        raise DatasetError(f"image {id_}: its tops do not fit one another: "
                           + ', '.join(f"{name} {'x'.join(map(str, shape))}" for name, shape in shapes.items())
                           + ' (each C x H x W, all of one H x W, labels of one channel)')


def reader_class(source):
    """The Reader class of a declared Source (given as the class or as 'module:Class')."""
    return named(source.reader)


def layer_spec(source):
    """The param_str keys a Source's layer takes, derived from its declaration: every declared key (folders,
    `split` and `dataset` required; the mean defaulting to the declared one; a key of its own taking a value of
    the declared type), then the options every layer takes (COMMON)."""
    spec = {}
    for key, value in source.params.items():
        if key.endswith('_dir') or key in ('split', 'dataset'):
            spec[key] = (P.string, P.REQUIRED)
        elif key == 'mean':
            spec[key] = (P.mean3, value)
        elif key == 'tops':
            spec[key] = (P.names_from(reader_class(source).tops), P.REQUIRED)
        elif key not in COMMON:
            spec[key] = (P.like(value), value)
    return {**spec, **COMMON}


def open_reader(source, params):
    """The Reader on the folders a layer's parameters name: its '*_dir' values in declared order, else the
    folder dataset's `dataset`; the mean where the layer takes one."""
    folders = [params[key] for key in source.params if key.endswith('_dir')] or [params['dataset']]
    return reader_class(source)(*folders, **({'mean': params['mean']} if 'mean' in params else {}))


def declared_source(name, given):
    """The Source a data layer reads: under a reference name (VOCSegDataLayer, ...) the one declared with it; as
    SegDataLayer the one of the `dataset` its param_str names (a declared name or a folder dataset's folder)."""
    if name != 'SegDataLayer':
        return registry.source(name)
    if not isinstance(given.get('dataset'), str):
        raise P.ParamError(f"SegDataLayer: param_str needs 'dataset', a declared dataset's name or a folder "
                           f"dataset's folder; got {given.get('dataset')!r}")
    try:
        data = registry.dataset(given['dataset'])
    except registry.NotADataset as err:
        raise P.ParamError(f'SegDataLayer: {err}') from None
    split = given.get('split')
    return data.sources.get(split) or next(iter(data.sources.values()))


def checked_params(name, param_str):
    """(Source, parameters) of a data layer of class `name`, its param_str checked key by key as its setup
    checks it (a ParamError otherwise): fcn-netgen checks what it writes with this."""
    given = P.literal(param_str, name)
    source = declared_source(name, given)
    return source, P.parse(given, layer_spec(source), name)


class SegDataLayer(caffe.Layer):
    """The data layer of every dataset. Under its own name (caffe_fcn.datalayers.layers.SegDataLayer) its param_str
    names the `dataset` (a declared name or a folder dataset's folder); under a reference name (VOCSegDataLayer, ...,
    made by `reference_layer`) the dataset is the one declared with that layer."""

    def setup(self, bottom, top):
        name = type(self).__name__
        source, self.params = checked_params(name, self.param_str)
        self.dataset = open_reader(source, self.params)
        self.tops = list(self.params.get('tops') or self.dataset.tops)
        if len(bottom):
            raise ValueError(f"{name} takes no bottoms, the net gives it {len(bottom)}")
        if len(top) != len(self.tops):
            raise ValueError(f"{name} produces {len(self.tops)} tops ({', '.join(self.tops)}), "
                             f"the net gives it {len(top)}")
        self.split = self.params['split']
        self.ids = self.dataset.ids(self.split)
        self.random = self.params['randomize'] and 'train' in self.split
        seed = self.params['seed']
        # unseeded as the reference (random.seed(None)), but recorded in state() so that the run can be resumed
        self.seed = random.SystemRandom().randrange(2 ** 31) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.forwards = 0  # forward passes so far: the key of the augmentation stream
        self.index = self._draw() if self.random else 0
        self.current_id = None

    def _draw(self):
        return self.rng.randint(0, len(self.ids) - 1)  # the reference's draw, bit for bit

    def reshape(self, bottom, top):
        self.current_id = self.ids[self.index]
        self.sample = self.dataset.load(self.current_id, self.tops)
        p = self.params
        if self.random and (p['mirror'] or p['jitter'] or p['sample'] < 1):  # training splits only
            rng = np.random.default_rng([self.seed, self.forwards, 7])  # apart from the order; resumes with it
            self.sample = augment(self.sample, rng, p['mirror'], p['jitter'])
            if p['sample'] < 1:
                self.sample = {name: sample_cells(a, rng, p['sample'], p['cell']) if a.dtype == np.uint8 else a
                               for name, a in self.sample.items()}
        check_sample(self.sample, self.current_id)
        for i, name in enumerate(self.tops):  # pycaffe's blob vectors index but do not iterate
            top[i].reshape(1, *self.sample[name].shape)

    def forward(self, bottom, top):
        for i, name in enumerate(self.tops):
            top[i].data[...] = self.sample[name]
        self.forwards += 1
        self.index = self._draw() if self.random else (self.index + 1) % len(self.ids)

    def backward(self, top, propagate_down, bottom):
        pass

    def state(self):
        """Where the layer is in its sequence (plain JSON-able values): the next image and the generator."""
        version, internal, gauss = self.rng.getstate()
        return {'split': self.split, 'count': len(self.ids), 'random': self.random, 'seed': self.seed,
                'forwards': self.forwards, 'index': self.index, 'rng': [version, list(internal), gauss]}

    def restore(self, state):
        """Continue from a `state()`; the next forward pass reads the image that followed it."""
        mine = self.state()
        if not isinstance(state, dict) or set(state) != set(mine):
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise DatasetError(f"not a {type(self).__name__} data state: keys {keys}, expected {sorted(mine)} "
                               "(saved by an older fcn? delete the .data.json to restart the data order)")
        for key in ('split', 'count', 'random'):
            if state[key] != mine[key]:
                raise DatasetError(f"cannot restore a data state of {key}={state[key]!r} into a layer with "
                                   f"{key}={mine[key]!r} (different split or dataset?)")
        index, forwards = state['index'], state['forwards']
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, forwards, state['seed'])) \
                or not 0 <= index < len(self.ids) or forwards < 0:
            raise DatasetError(f"data state index {index!r} / forwards {forwards!r} / seed {state['seed']!r} out "
                               f"of range for a split of {len(self.ids)} images")
        rng = random.Random()
        try:
            version, internal, gauss = state['rng']
            rng.setstate((version, tuple(internal), gauss))
        except (TypeError, ValueError, OverflowError) as err:
            raise DatasetError(f"data state: the saved random generator state is corrupt ({err})") from None
        self.seed, self.forwards, self.index, self.rng = state['seed'], forwards, index, rng


def reference_layer(name):
    """The generic layer under the reference's name `name` (its nets name it), for the dataset declared with it."""
    source = registry.source(name)
    spec = layer_spec(source)
    return type(name, (SegDataLayer,), {'spec': spec, '__doc__': f"{name} (the reference's name), param_str keys "
                                        f"{', '.join(spec)}: tops as its Reader gives them"})


VOCSegDataLayer = reference_layer('VOCSegDataLayer')
SBDDSegDataLayer = reference_layer('SBDDSegDataLayer')
NYUDSegDataLayer = reference_layer('NYUDSegDataLayer')
SIFTFlowSegDataLayer = reference_layer('SIFTFlowSegDataLayer')
PASCALContextSegDataLayer = reference_layer('PASCALContextSegDataLayer')
