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

from fcn.registry import VOC_MEAN

from . import params as P
from .datasets import NYUD, SBDD, VOC, PASCALContext, SIFTFlow
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


class SegDataLayer(caffe.Layer):
    """Shared behaviour; a subclass names its param_str keys (`spec`) and opens its dataset."""
    spec = {}

    def open_dataset(self, params):
        raise NotImplementedError

    def top_names(self, params):
        return list(self.dataset.tops)

    def setup(self, bottom, top):
        name = type(self).__name__
        self.params = P.parse(self.param_str, self.spec, name)
        self.dataset = self.open_dataset(self.params)
        self.tops = self.top_names(self.params)
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


class VOCSegDataLayer(SegDataLayer):
    """PASCAL VOC: tops data, label. param_str keys voc_dir, split, mean, randomize, seed."""
    spec = {'voc_dir': (P.string, P.REQUIRED), 'split': (P.string, P.REQUIRED), 'mean': (P.mean3, VOC_MEAN), **COMMON}

    def open_dataset(self, params):
        return VOC(params['voc_dir'], params['mean'])


class SBDDSegDataLayer(SegDataLayer):
    """SBD: tops data, label. param_str keys sbdd_dir, split, mean, randomize, seed."""
    spec = {'sbdd_dir': (P.string, P.REQUIRED), 'split': (P.string, P.REQUIRED), 'mean': (P.mean3, VOC_MEAN),
            **COMMON}

    def open_dataset(self, params):
        return SBDD(params['sbdd_dir'], params['mean'])


class NYUDSegDataLayer(SegDataLayer):
    """NYUDv2: the modalities named by `tops` (color, depth, hha, label), in that order."""
    spec = {'nyud_dir': (P.string, P.REQUIRED), 'split': (P.string, P.REQUIRED),
            'tops': (P.names_from(NYUD.tops), P.REQUIRED), **COMMON}

    def open_dataset(self, params):
        return NYUD(params['nyud_dir'])

    def top_names(self, params):
        return params['tops']


class SIFTFlowSegDataLayer(SegDataLayer):
    """SIFT Flow: tops data, sem, geo. param_str keys siftflow_dir, split, randomize, seed."""
    spec = {'siftflow_dir': (P.string, P.REQUIRED), 'split': (P.string, P.REQUIRED), **COMMON}

    def open_dataset(self, params):
        return SIFTFlow(params['siftflow_dir'])


class PASCALContextSegDataLayer(SegDataLayer):
    """PASCAL-Context, 59 classes + background: tops data, label. Keys context_dir, voc_dir, split, randomize, seed."""
    spec = {'context_dir': (P.string, P.REQUIRED), 'voc_dir': (P.string, P.REQUIRED),
            'split': (P.string, P.REQUIRED), **COMMON}

    def open_dataset(self, params):
        return PASCALContext(params['context_dir'], params['voc_dir'])
