"""A folder of images and masks as a dataset: its split files, its statistics and its checks (fcn-data split,
stats and check DIR). The declaration is registry.folder_dataset; the reader datasets.Folder."""
import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from caffe_fcn import registry
from caffe_fcn.files import write_atomic

from .datasets import IMAGE_SUFFIXES, Folder
from .io import DatasetError, is_plain_name, read_split

STATS_VERSION = 2  # 2: computed_from digests the images and labels too


def is_folder_dataset(path):
    return Path(path).is_dir() and (Path(path) / 'classes.txt').is_file()


def pairs(root):
    """The ids that have both an image (images/ID.jpg|jpeg|png) and a label (labels/ID.png), sorted; an image
    without a label, a label without an image, or an id with two images is a DatasetError naming it."""
    root = Path(root)
    for folder in ('images', 'labels'):
        if not (root / folder).is_dir():
            raise DatasetError(f'{root / folder} is not a folder.\n{Folder.layout}')
    files = [p for p in (root / 'images').iterdir() if not p.name.startswith('.')]
    others = sorted(p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES)
    if others:
        raise DatasetError(f'{root / "images" / others[0]} is not an image (.jpg, .jpeg or .png): images/ holds '
                           'the photos only')
    images = Counter(p.stem for p in files)
    labels = {p.stem for p in (root / 'labels').iterdir() if p.suffix.lower() == '.png'}
    twice = sorted(i for i, n in images.items() if n > 1)
    if twice:
        raise DatasetError(f'{root / "images"} holds two images for id {twice[0]!r} (.jpg and .png?): keep one')
    for ids, what, other in ((set(images) - labels, 'image', 'label labels/{}.png'),
                             (labels - set(images), 'label', 'image images/{}.jpg or .png')):
        if ids:
            first = sorted(ids)[0]
            raise DatasetError(f'{len(ids)} {what}(s) have no {other.format(first).split(" ")[0]}, e.g. {first!r}: '
                               f'{other.format(first)} is missing')
    strange = sorted(i for i in images if not is_plain_name(i))
    if strange:
        raise DatasetError(f'{root / "images"}: {strange[0]!r} is not a plain id (hidden files are not images)')
    if not images:
        raise DatasetError(f'{root / "images"} holds no .jpg or .png images')
    return sorted(images)


def write_splits(root, val=0.1, seed=0):
    """Write train.txt and val.txt where they are missing: with neither, a random `val` fraction of the pairs
    (at least one image each) goes to val, drawn with `seed`; with one, the other takes the remaining pairs.
    Returns {split: number of ids written}."""
    root = Path(root)
    paths = {split: root / f'{split}.txt' for split in registry.FOLDER_SPLITS}
    missing = [split for split, path in paths.items() if not path.is_file()]
    if not missing:
        raise DatasetError(f'{paths["train"]} and {paths["val"]} exist already: delete them to draw new splits')
    ids = pairs(root)
    if len(missing) == 2:
        if len(ids) < 2:
            raise DatasetError(f'{root} holds {len(ids)} image: a training and a validation split need two at least')
        order = list(ids)
        random.Random(seed).shuffle(order)
        n_val = min(max(1, round(val * len(ids))), len(ids) - 1)
        splits = {'train': sorted(order[n_val:]), 'val': sorted(order[:n_val])}
    else:
        (present,) = set(paths) - set(missing)
        taken = set(read_split(paths[present], Folder.layout))
        splits = {missing[0]: [i for i in ids if i not in taken]}
        if not splits[missing[0]]:
            raise DatasetError(f'{paths[present]} lists every image: none is left for {paths[missing[0]].name}')
    for split, chosen in splits.items():
        write_atomic(paths[split], ''.join(f'{i}\n' for i in chosen))
    return {split: len(chosen) for split, chosen in splits.items()}


def files_digest(root):
    """What dataset.json's statistics were computed from: classes.txt and the split files' contents, and every
    file's name, size and modification time in images/ and labels/ (an image rewritten under its id changes
    the mean; reading them all again would cost as much as the statistics)."""
    root = Path(root)
    digest = hashlib.sha256(str(STATS_VERSION).encode())
    for name in ('classes.txt', *(f'{split}.txt' for split in registry.FOLDER_SPLITS)):
        digest.update((root / name).read_bytes() + b'\0')
    for folder in ('images', 'labels'):
        for path in sorted((root / folder).iterdir()):
            try:
                stat = path.stat()
            except OSError as err:  # a dangling link, say
                raise DatasetError(f'{path}: unreadable ({err.strerror})') from None
            digest.update(f'{folder}/{path.name} {stat.st_size} {stat.st_mtime_ns}\n'.encode())
    return digest.hexdigest()


def compute_stats(root, progress=True):
    """dataset.json's contents, streaming over the images one at a time (constant memory): the BGR mean and
    the mean pixel count of the training split, class pixel frequencies per split, and the image sizes."""
    reader = Folder(root, stats=False)  # dataset.json, being rewritten, may be damaged: not read
    names = reader.declared.tasks[0].names
    total = np.zeros(3, np.float64)
    sizes, frequencies, counts = Counter(), {}, {}
    for split in registry.FOLDER_SPLITS:
        ids = reader.ids(split)
        counts[split] = len(ids)
        pixels = np.zeros(256, np.int64)
        for id_ in tqdm(ids, desc=f'stats {split}', unit='img', disable=None if progress else True):
            rgb, label = reader.pair(id_)
            pixels += np.bincount(label.ravel(), minlength=256)
            sizes[f'{rgb.shape[0]}x{rgb.shape[1]}'] += 1
            if split == 'train':
                total += rgb.reshape(-1, 3).sum(0, dtype=np.float64)
        frequencies[split] = {**{name: int(pixels[i]) for i, name in enumerate(names)}, 'void': int(pixels[255])}
    train_pixels = sum(frequencies['train'].values())
    mean_rgb = total / train_pixels
    return {'version': STATS_VERSION, 'images': counts, 'mean': [round(float(v), 5) for v in mean_rgb[::-1]],
            'mean_pixels': train_pixels / counts['train'], 'pixels': frequencies,
            'sizes': dict(sizes.most_common()), 'computed_from': files_digest(root)}


def write_stats(root, progress=True):
    """Compute and write DIR/dataset.json atomically; returns the statistics."""
    pairs(root)
    stats = compute_stats(root, progress)
    write_atomic(Path(root) / registry.FOLDER_STATS, json.dumps(stats, indent=1) + '\n')
    return stats


def ensure_stats(root, echo=print):
    """The folder dataset's statistics, computed first (and said so) when dataset.json is absent or was computed
    from other classes, splits, images or labels; one whose values are damaged is refused (registry.folder_stats)."""
    pairs(root)  # every image with its label and the reverse, before anything reads them
    stats = registry.folder_stats(root)
    if stats is not None and stats.get('computed_from') == files_digest(root):
        return stats
    echo(f'{root}: computing {registry.FOLDER_STATS} (the training mean and class frequencies) from its images '
         f'and labels' + (', which changed since it was written' if stats is not None else '') +
         f', as `fcn-data stats {root}` does')
    return write_stats(root)


def check(root, max_problems=20):
    """Every pair of both splits read as the data layer reads it, and the folder's own rules: every image has
    a label and the reverse, no id in two splits. Returns (counts, pixels per class, problems, warnings)."""
    reader = Folder(root)
    names = reader.declared.tasks[0].names
    problems, warnings = [], []
    try:
        pairs(root)
    except DatasetError as err:
        problems.append(str(err))
    splits = {split: reader.ids(split) for split in registry.FOLDER_SPLITS}
    both = sorted(set(splits['train']) & set(splits['val']))
    if both:
        warnings.append(f'{len(both)} id(s) are in both train.txt and val.txt (e.g. {both[0]!r}): the validation '
                        'score then flatters the net')
    pixels = Counter()
    for split, ids in splits.items():
        for id_ in tqdm(ids, desc=f'check {split}', unit='img', leave=False, disable=None):
            if len(problems) >= max_problems:
                break
            try:
                _, label = reader.pair(id_)
            except DatasetError as err:
                problems.append(f'{split} {id_}: {err}')
                continue
            values, n = np.unique(label, return_counts=True)
            pixels.update({(names[v] if v < len(names) else 'void'): int(c) for v, c in zip(values, n, strict=True)})
    counts = {split: len(ids) for split, ids in splits.items()}
    return counts, pixels, problems, warnings
