"""A new dataset added in one file, the way any dataset is added: its declaration, its reader and its synthetic
writer. The nets read it through the generic data layer (caffe_fcn.datalayers.layers.SegDataLayer, param_str 'dataset':
'toy'), whose keys come from the declaration; `fcn-train MODEL --dataset toy_dataset.py` imports this file."""
from pathlib import Path

import numpy as np
from PIL import Image

from caffe_fcn.datalayers import datasets, io
from caffe_fcn import registry

SOURCE = registry.Source(*registry.GENERIC_LAYER, dict(dataset='toy', toy_dir='{root}/toy', seed=registry.SEED,
                                                       split='{split}'), reader='toy_dataset:Toy')
TOY = registry.declare(registry.Dataset(
    'toy', 'Toy squares', (registry.Task('', ('background', 'square')),), {'train': SOURCE, 'val': SOURCE},
    means={'color': (120.0, 120.0, 120.0)}, solver=dict(test_iter=2, max_iter=100), schedule=(1, 2)))
registry.declare(registry.fcn('toy-fcn32s', 'toy'))


class Toy(datasets.Reader):
    name, key, data_folder, declared = 'Toy', 'toy', 'toy', TOY
    layout = '  {split}.txt\n  images/{id}.png\n  labels/{id}.png   palette PNG, 0 background, 1 square'
    tops = ('data', 'label')

    def load(self, id_, tops=None):
        image, label = self.root / 'images' / f'{id_}.png', self.root / 'labels' / f'{id_}.png'
        rgb, classes = io.read_rgb(image), io.read_label_png(label)
        io.check_same_size(rgb, classes, image, label)
        io.check_label(classes, self.declared.tasks[0].classes, label)
        return {'data': datasets.preprocess(rgb, self.declared.means['color']), 'label': classes[np.newaxis]}


def synthesize(root, count=6, size=32, seed=0):
    """A bright square on a dark background per image; the first two thirds train, the rest val."""
    root = Path(root) / 'toy'
    rng = np.random.default_rng(seed)
    ids = [f'toy{i:03d}' for i in range(count)]
    for id_ in ids:
        y, x, side = *rng.integers(0, size // 2, 2), size // 2
        label = np.zeros((size, size), np.uint8)
        label[y:y + side, x:x + side] = 1
        rgb = np.where(label[..., None], 220, 30).astype(np.uint8).repeat(3, axis=2)
        (root / 'images').mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / 'images' / f'{id_}.png')
        io.write_label_png(root / 'labels' / f'{id_}.png', label)
    (root / 'train.txt').write_text(''.join(f'{i}\n' for i in ids[:2 * count // 3]))
    (root / 'val.txt').write_text(''.join(f'{i}\n' for i in ids[2 * count // 3:]))
    return root.parent
