"""Preparing and checking the real data: SBD .mat -> PNG, the seg11valid list, dataset checks."""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from caffe_fcn.files import write_atomic

from .datasets import READERS, SBDD, VOC, PASCALContext, context_voc_dir
from .io import DatasetError, check_raw_values, read_sbdd_cls, read_split, write_label_png


def seg11valid(voc_val_ids, sbdd_train_ids):
    """The VOC2011 segmentation val images that are not in SBD train (736 on the real data), in val order."""
    train = set(sbdd_train_ids)
    return [i for i in voc_val_ids if i not in train]


def write_seg11valid(voc_dir, sbdd_dir, out=None):
    """Derive seg11valid.txt from VOC's val.txt and SBD's train.txt; return its path."""
    voc, sbdd = VOC(voc_dir), SBDD(sbdd_dir)
    ids = seg11valid(voc.ids('val'), sbdd.ids('train'))
    if not ids:
        raise DatasetError(f"every VOC val image of {voc.split_file('val')} is in SBD train {sbdd.split_file('train')}:"
                           " seg11valid would be empty")
    out = Path(out) if out else voc.split_file('seg11valid')
    return write_atomic(out, ''.join(f'{i}\n' for i in ids))


def sbdd_to_png(sbdd_dir, out_dir=None, split=None):
    """Convert SBD cls/*.mat class maps to palette PNGs (VOC's SegmentationClass format); return the paths."""
    sbdd = SBDD(sbdd_dir)
    out_dir = Path(out_dir) if out_dir else sbdd.root / 'cls_png'
    ids = sbdd.ids(split) if split else sorted(p.stem for p in (sbdd.root / 'cls').glob('*.mat'))
    if not ids:
        raise DatasetError(f"no .mat files in {sbdd.root / 'cls'}\n{sbdd.help()}")
    written = []
    for id_ in tqdm(ids, desc='sbdd .mat -> png', unit='img', disable=None):
        path = sbdd.root / 'cls' / f'{id_}.mat'
        label = read_sbdd_cls(path)
        if label.ndim != 2:
            raise DatasetError(f"{path}: GTcls.Segmentation is not a 2-D class map")
        check_raw_values(label, range(sbdd.n_classes), path)  # SBD's 21 classes; it marks no void
        written.append(out_dir / f'{id_}.png')
        write_label_png(written[-1], label)
    return written


@dataclass
class CheckReport:
    """What `check` found: images per split, label pixels per class, and the problems (file named in each)."""
    dataset: str
    counts: dict = field(default_factory=dict)
    classes: dict = field(default_factory=dict)  # label top -> Counter(class -> pixels)
    names: dict = field(default_factory=dict)  # label top -> class names, from the dataset's declaration
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def summary(self, max_problems=10):
        lines = [f"{self.dataset}: " + ', '.join(f"{s} {n} images" for s, n in self.counts.items())]
        for top, counter in self.classes.items():
            names = self.names.get(top, ())
            classes = ', '.join(f"{names[c] if c < len(names) else 'void' if c == 255 else c}: {n}"
                                for c, n in sorted(counter.items()))
            lines.append(f"  {top} pixels per class: {classes}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s); the first {min(max_problems, len(self.problems))}:")
            lines += [f"  {p}" for p in self.problems[:max_problems]]
        else:
            lines.append("no problems found")
        return '\n'.join(lines)


def open_dataset(dataset, root, voc_dir=None):
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(READERS)}")
    if READERS[dataset] is PASCALContext:
        return PASCALContext(root, voc_dir or context_voc_dir(root))
    return READERS[dataset](root)


def check(dataset, root, voc_dir=None, splits=None, limit=None, max_problems=20):
    """Read every image of the given (default: all present) splits through the layers' own readers."""
    data = open_dataset(dataset, root, voc_dir)
    splits = splits or data.splits()
    if not splits:
        raise DatasetError(f"no split files found in {data.split_file('SPLIT').parent}\n{data.help()}")
    report = CheckReport(dataset, names={task.label: task.names for task in data.declared.tasks})
    for split in splits:
        ids = data.ids(split)[:limit]
        report.counts[split] = len(ids)
        for id_ in tqdm(ids, desc=f'check {dataset} {split}', unit='img', leave=False, disable=None):
            try:
                sample = data.load(id_)
            except DatasetError as e:
                report.problems.append(f"{split} {id_}: {e}")
                if len(report.problems) >= max_problems:
                    return report
                continue
            for top, array in sample.items():
                if array.dtype == np.uint8:
                    values, counts = np.unique(array, return_counts=True)
                    pixels = dict(zip(values.tolist(), counts.tolist(), strict=True))
                    report.classes.setdefault(top, Counter()).update(pixels)
    return report


__all__ = ['seg11valid', 'write_seg11valid', 'sbdd_to_png', 'check', 'CheckReport', 'read_split']
