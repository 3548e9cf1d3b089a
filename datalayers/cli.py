"""fcn-data: synthesize, check and prepare the FCN datasets."""
import argparse
import sys
from pathlib import Path

from fcn import cli

from . import tools
from .datasets import DATASETS
from .synth import MAX_COUNT, MIN_COUNT, dir_overrides, synthesize


DATASET_HELP = 'one of ' + ', '.join(f'{key} (data/{cls.data_folder})' for key, cls in DATASETS.items())


def dataset_name(text):
    """A reader's key, or its folder under data/ (sift-flow for siftflow, pascal for voc, ...)."""
    by_folder = {cls.data_folder: key for key, cls in DATASETS.items()}
    if text in DATASETS or text in by_folder:
        return by_folder.get(text, text)
    raise argparse.ArgumentTypeError(f'unknown dataset {text!r}: {DATASET_HELP}')


def size_arg(text):
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x128 (height x width), got {text!r}") from None
    if not (16 <= h <= MAX_SIDE and 16 <= w <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"each side must be 16 to {MAX_SIDE} pixels, got {text!r}")
    return h, w


MAX_SIDE = 4096  # synthetic images this large already take seconds each


def cmd_synth(args):
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise cli.BadInput(f'--out {out} is not empty: a synthetic set would be written over what is there (a real '
                           'dataset?); choose an empty folder, or pass --overwrite')
    root = synthesize(args.dataset, args.out, count=args.count, seed=args.seed, size=args.size)
    print(f"wrote a synthetic {args.dataset} dataset of {args.count} images to {root}")
    print(f"data layer param_str keys: {dir_overrides(args.dataset, root)}")
    return 0


def cmd_check(args):
    report = tools.check(args.dataset, args.dir, voc_dir=args.voc_dir, splits=args.split, limit=args.limit,
                         max_problems=args.max_problems)
    print(report.summary(args.max_problems))
    return 0 if report.ok else 1


def cmd_seg11valid(args):
    out = tools.write_seg11valid(args.voc_dir, args.sbdd_dir, args.out)
    print(f"wrote {out} ({len(out.read_text().splitlines())} images)")
    return 0


def cmd_sbdd_png(args):
    written = tools.sbdd_to_png(args.sbdd_dir, args.out, args.split)
    print(f"wrote {len(written)} palette PNGs to {written[0].parent}")
    return 0


def parser():
    p = argparse.ArgumentParser(prog='fcn-data', description=__doc__)
    sub = p.add_subparsers(dest='command', required=True)

    s = sub.add_parser('synth', help='write a synthetic dataset in the real on-disk layout',
                       description='Write a synthetic dataset in exactly the real layout (JPEG, palette PNG, .mat, '
                                   'split files), deterministic for a seed, where data/README.md puts the real '
                                   'one when OUT is its folder there: voc writes OUT/VOC2011, sbdd OUT/dataset, '
                                   'pascalcontext OUT and its VOC2010 images in OUT/../pascal/VOC2010, the others '
                                   'into OUT.')
    s.add_argument('dataset', type=dataset_name, metavar='DATASET', help=DATASET_HELP)
    s.add_argument('--out', required=True, help='output directory (e.g. data/pascal for voc)')
    s.add_argument('--count', type=int, default=40, help=f'number of images ({MIN_COUNT} to {MAX_COUNT}; default 40)')
    s.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    s.add_argument('--size', type=size_arg, help='HxW of every image (default: per dataset; VOC-like sets vary)')
    s.add_argument('--overwrite', action='store_true', help='write into an --out that is not empty (files of the '
                   'same names are replaced)')
    s.set_defaults(run=cmd_synth)

    c = sub.add_parser('check', help='validate a real or synthetic dataset',
                       description='Read every image of every split through the data layers\' readers; report '
                                   'counts, label pixels per class and the first problems. Exit 1 on problems.')
    c.add_argument('dataset', type=dataset_name, metavar='DATASET', help=DATASET_HELP)
    c.add_argument('dir', help='the directory given to the data layer (voc: the VOC2011 folder; sbdd: dataset/; '
                               'pascalcontext: context_dir)')
    c.add_argument('--voc-dir', help='pascalcontext only: the folder holding VOC2010/ (default: DIR/../pascal, as '
                   'data/README.md lays them out)')
    c.add_argument('--split', action='append', help='check only this split (repeatable; default: all present)')
    c.add_argument('--limit', type=cli.positive(int), help='check at most this many images per split')
    c.add_argument('--max-problems', type=cli.positive(int), default=10,
                   help='stop after this many problems (default 10)')
    c.set_defaults(run=cmd_check)

    v = sub.add_parser('seg11valid', help='derive seg11valid.txt: VOC2011 seg val minus SBD train',
                       description='Write the VOC2011 segmentation val images that are not in SBD train (736 on the '
                                   'real data) to VOC_DIR/ImageSets/Segmentation/seg11valid.txt.')
    v.add_argument('voc_dir', help='the VOC2011 folder')
    v.add_argument('sbdd_dir', help='the SBD dataset/ folder')
    v.add_argument('--out', help='write here instead')
    v.set_defaults(run=cmd_seg11valid)

    b = sub.add_parser('sbdd-png', help='convert SBD cls/*.mat labels to palette PNGs',
                       description='Convert SBD GTcls.Segmentation class maps to VOC-style palette PNGs.')
    b.add_argument('sbdd_dir', help='the SBD dataset/ folder')
    b.add_argument('--out', help='output folder (default SBDD_DIR/cls_png)')
    b.add_argument('--split', help='only the ids of this split file (default: every .mat in cls/)')
    b.set_defaults(run=cmd_sbdd_png)
    return p


@cli.tool('fcn-data')
def main(argv=None):
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == '__main__':
    sys.exit(main())
