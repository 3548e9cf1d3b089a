"""fcn-data: synthesize, check and prepare the FCN datasets."""
import argparse
import sys
from pathlib import Path

from caffe_fcn import cli, registry

from . import folder, formats, tools
from .datasets import READERS
from .synth import MAX_COUNT, MIN_COUNT, dir_overrides, synthesize


DATASET_HELP = 'one of ' + ', '.join(f'{key} (data/{cls.data_folder})' for key, cls in READERS.items())
SYNTH_HELP = DATASET_HELP + ', or folder (a folder dataset, as your own photos and masks would be)'


def dataset_name(text):
    """A reader's key, or its folder under data/ (sift-flow for siftflow, pascal for voc, ...)."""
    by_folder = {cls.data_folder: key for key, cls in READERS.items()}
    if text in READERS or text in by_folder:
        return by_folder.get(text, text)
    raise argparse.ArgumentTypeError(f'unknown dataset {text!r}: {DATASET_HELP}')


def synth_name(text):
    return text if text == 'folder' else dataset_name(text)


def size_arg(text):
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x128 (height x width), got {text!r}") from None
    if not (16 <= h <= MAX_SIDE and 16 <= w <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"each side must be 16 to {MAX_SIDE} pixels, got {text!r}")
    return h, w


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f'a fraction between 0 and 1 is needed, e.g. 0.1; got {text!r}')
    return value


MAX_SIDE = 4096  # synthetic images this large already take seconds each


def cmd_synth(args):
    """Write a synthetic dataset in exactly the real layout (JPEG, palette PNG, .mat, split files),
    deterministic for a seed, where data/README.md puts the real one when OUT is its folder there: voc writes
    OUT/VOC2011, sbdd OUT/dataset, pascalcontext OUT and its VOC2010 images in OUT/../pascal/VOC2010, the others
    into OUT."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise cli.BadInput(f'--out {out} is not empty: a synthetic set would be written over what is there (a real '
                           'dataset?); choose an empty folder, or pass --overwrite')
    root = synthesize(args.dataset, args.out, count=args.count, seed=args.seed, size=args.size)
    print(f"wrote a synthetic {args.dataset} dataset of {args.count} images to {root}")
    if args.dataset != 'folder':
        print(f"data layer param_str keys: {dir_overrides(args.dataset, root)}")
    return 0


def cmd_check(args):
    """Read every image of every split through the data layers' readers; report counts, label pixels
    per class and the first problems. Exit 1 on problems. `fcn-data check DIR` checks a folder dataset (DIR
    holding classes.txt): every image has its label and the reverse, and every pair reads as training reads it."""
    if args.dir is None:
        if not folder.is_folder_dataset(args.dataset):
            raise cli.BadInput(f'{args.dataset}: give DATASET DIR (one of {", ".join(READERS)} and its folder), or '
                               'the folder of a folder dataset (one holding classes.txt)')
        return check_folder(args)
    try:
        name = dataset_name(args.dataset)
    except argparse.ArgumentTypeError as err:
        raise cli.BadInput(err) from None
    report = tools.check(name, args.dir, voc_dir=args.voc_dir, splits=args.split,
                         limit=args.limit, max_problems=args.max_problems)
    print(report.summary(args.max_problems))
    return 0 if report.ok else 1


def check_folder(args):
    counts, pixels, problems, warnings = folder.check(args.dataset, args.max_problems)
    names = [*registry.read_classes(Path(args.dataset) / 'classes.txt'), 'void']
    print(f"{args.dataset}: " + ', '.join(f'{split} {n} images' for split, n in counts.items()))
    print('  label pixels per class: ' + ', '.join(f'{name}: {pixels[name]}' for name in names if name in pixels))
    for warning in warnings:
        print(f'warning: {warning}', file=sys.stderr)
    for problem in problems[:args.max_problems]:
        print(f'  {problem}')
    print(f'{len(problems)} problem(s)' if problems else 'no problems found')
    return 1 if problems else 0


def cmd_split(args):
    """Write DIR/train.txt and DIR/val.txt where they are missing: with neither, a random --val
    fraction of the image/label pairs goes to val (at least one image each); with one of them, the other takes
    the remaining pairs."""
    written = folder.write_splits(args.dir, args.val, args.seed)
    for split, n in written.items():
        print(f'wrote {Path(args.dir) / split}.txt ({n} images)')
    return 0


def cmd_stats(args):
    """Read every pair once, one at a time, and write DIR/dataset.json: the BGR mean and mean pixel
    count of the training split (the nets subtract the mean; the learning rate follows the pixel count), class
    pixel frequencies per split and the image sizes. fcn-train computes it when it is missing or stale."""
    stats = folder.write_stats(args.dir)
    print(f"wrote {Path(args.dir) / 'dataset.json'}: mean (B, G, R) {tuple(stats['mean'])}, "
          f"{stats['mean_pixels']:.0f} pixels an image on average")
    for split, pixels in stats['pixels'].items():
        total = sum(pixels.values()) or 1
        print(f'  {split} pixels: ' + ', '.join(f'{name} {100 * n / total:.1f}%' for name, n in pixels.items()))
    return 0


IMPORT_OPTIONS = {'classes': ('index', 'labelme'), 'add_classes': ('labelme',), 'colors': ('rgb',),
                  'images': ('index', 'rgb', 'coco'), 'masks': ('index', 'rgb'), 'crowd_as_class': ('coco',)}


def cmd_import(args):
    for option, fmts in IMPORT_OPTIONS.items():
        if getattr(args, option) not in (None, False) and args.format not in fmts:
            raise cli.BadInput(f'--{option.replace("_", "-")} applies to {" and ".join(fmts)}, not {args.format}')
    if args.src is None and not (args.format in ('index', 'rgb') and args.images and args.masks):
        raise cli.BadInput(f'give SRC: {IMPORT_SRC[args.format]}')
    src = args.src and Path(args.src)
    report = formats.Report()
    classes = formats.Classes(formats.read_classes_file(args.classes), args.add_classes, args.classes) \
        if args.classes else None
    names = None
    if args.format in ('index', 'rgb'):
        images, masks = Path(args.images or src / 'images'), Path(args.masks or src / 'masks')
        inputs = [images, masks]
        if args.format == 'rgb':
            if args.colors is None:
                raise cli.BadInput('rgb needs --colors FILE (name,r,g,b a line) or --colors voc (the PASCAL palette)')
            colours = formats.colour_map(args.colors)
            names = colours.names
            total, samples = formats.rgb_samples(images, masks, colours, report)
        else:
            total, samples = formats.index_samples(images, masks, report)
    elif args.format == 'labelme':
        classes = classes or formats.Classes(['background'], growing=True)
        inputs = [src]
        total, samples = formats.labelme_samples(src, classes, report)
    else:
        if args.images is None:
            raise cli.BadInput('coco needs --images DIR, the folder its file_name entries are in')
        inputs = [src, Path(args.images)]
        names, total, samples = formats.coco_samples(src, args.images, args.crowd_as_class, report)
    names, splits = formats.import_dataset(samples, total, args.out, classes, inputs, report, names=names,
                                           link=args.link, val=args.val, seed=args.seed, overwrite=args.overwrite)
    print('\n'.join(formats.summary(Path(args.out), names, splits, report)))
    return 0


IMPORT_SRC = {'index': 'a folder holding images/ and masks/ (or --images DIR --masks DIR)',
              'rgb': 'a folder holding images/ and masks/ (or --images DIR --masks DIR)',
              'labelme': 'a folder of labelme .json files (their images at imagePath, or embedded)',
              'coco': 'the COCO annotations .json (instances or stuff), with --images DIR'}


def cmd_seg11valid(args):
    """Write the VOC2011 segmentation val images that are not in SBD train (736 on the real data)
    to VOC_DIR/ImageSets/Segmentation/seg11valid.txt."""
    out = tools.write_seg11valid(args.voc_dir, args.sbdd_dir, args.out)
    print(f"wrote {out} ({len(out.read_text().splitlines())} images)")
    return 0


def cmd_sbdd_png(args):
    """Convert SBD GTcls.Segmentation class maps to VOC-style palette PNGs."""
    written = tools.sbdd_to_png(args.sbdd_dir, args.out, args.split)
    print(f"wrote {len(written)} palette PNGs to {written[0].parent}")
    return 0


IMPORT_DESCRIPTION = """Write a folder dataset (classes.txt, images/, labels/ as VOC palette PNGs, train.txt and
val.txt drawn with --val and --seed, dataset.json) from masks as annotation tools leave them:

  index    images/ and masks/ (8-bit index or palette PNGs), paired by file stem
  rgb      images/ and masks/ (RGB colour PNGs) with --colors; a colour not in the map is an error, and JPEG
           masks (colours near, not equal, to the map) are refused rather than snapped
  labelme  labelme JSON files; polygons, rectangles and circles drawn in file order, later over earlier, as
           labelme's export does (lines and points have no area: skipped); labels not in --classes are an
           error unless --add-classes
  coco     a COCO instances or stuff JSON and --images DIR (polygons and RLE, through pycocotools);
           categories in their order are labels 1.., background 0; where instances overlap the smaller area
           wins; iscrowd regions are void (255) unless --crowd-as-class

Images are copied (or hard-linked) as they are: only one that must be turned upright or is not RGB is written
again, losslessly, as PNG. EXIF orientation follows the annotation: labelme draws on the upright image, so it
is turned upright; in the other formats the mask's size decides, and where both ways fit that is an error.
Everything is written into a hidden folder beside --out and renamed into place at the end, so a failed or
interrupted import leaves nothing."""


# fcn-data import's options beside FORMAT, SRC and --out: `--flag METAVAR: help` takes a value, `--flag: help` is a
# switch (one line each, wrapped here by indentation)
IMPORT_FLAGS = """
--classes FILE: index, labelme: class names, one a line (line i names label value i; classes.txt's format, or
    labelme's labels.txt with __ignore__ first)
--add-classes: labelme: append labels not in --classes, in the order they first appear (without --classes every
    label is added after background)
--colors FILE|voc: rgb: the colour map, name,r,g,b a line (line i is label i; lines named void map to 255), or voc
    for the PASCAL palette and its 21 classes
--images DIR: index, rgb: the images (default SRC/images); coco: the folder of its file_name entries
--masks DIR: index, rgb: the masks, paired with the images by file stem (default SRC/masks)
--crowd-as-class: coco: iscrowd regions get their category (default: void, 255)
--link: hard-link the images instead of copying them (--out on the same file system)
"""


def add_options(parser, table):
    """The options a table like IMPORT_FLAGS declares."""
    for entry in table.strip().replace('\n    ', ' ').splitlines():
        flag, _, help_text = entry.partition(': ')
        name, _, metavar = flag.partition(' ')
        kind = dict(metavar=metavar) if metavar else dict(action='store_true')
        parser.add_argument(name, help=help_text, **kind)


def add_draw(parser):
    """--val and --seed: the seeded draw of the validation split."""
    parser.add_argument('--val', type=fraction, default=0.1, help='the fraction drawn for validation (default 0.1)')
    parser.add_argument('--seed', type=int, default=0, help='random seed of that draw (default 0)')


def command(sub, run, help_text, **options):
    """The subcommand that `run` (cmd_NAME) carries out, described by its docstring unless options say otherwise."""
    if 'description' not in options:
        options['description'] = ' '.join(run.__doc__.split())
    command = sub.add_parser(run.__name__[len('cmd_'):].replace('_', '-'), help=help_text, **options)
    command.set_defaults(run=run)
    return command


def parser():
    p = cli.ArgumentParser(prog='fcn-data', description=__doc__)
    sub = p.add_subparsers(dest='command', required=True)

    s = command(sub, cmd_synth, 'write a synthetic dataset in the real on-disk layout')
    s.add_argument('dataset', type=synth_name, metavar='DATASET', help=SYNTH_HELP)
    cli.add_output(s, '--out', folder=True, required=True, help='output directory (e.g. data/pascal for voc)')
    s.add_argument('--count', type=int, default=40, help=f'number of images ({MIN_COUNT} to {MAX_COUNT}; default 40)')
    s.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    s.add_argument('--size', type=size_arg, help='HxW of every image (default: per dataset; VOC-like sets vary)')
    s.add_argument('--overwrite', action='store_true', help='write into an --out that is not empty (files of the '
                   'same names are replaced)')

    c = command(sub, cmd_check, 'validate a real, synthetic or folder dataset')
    c.add_argument('dataset', metavar='DATASET|DIR', help=DATASET_HELP + '; or a folder dataset\'s folder')
    c.add_argument('dir', nargs='?', help='the directory given to the data layer (voc: the VOC2011 folder; sbdd: '
                                          'dataset/; pascalcontext: context_dir)')
    c.add_argument('--voc-dir', help='pascalcontext only: the folder holding VOC2010/ (default: DIR/../pascal, as '
                   'data/README.md lays them out)')
    c.add_argument('--split', action='append', help='check only this split (repeatable; default: all present)')
    c.add_argument('--limit', type=cli.positive(int), help='check at most this many images per split')
    c.add_argument('--max-problems', type=cli.positive(int), default=10,
                   help='stop after this many problems (default 10)')

    sp = command(sub, cmd_split, "write a folder dataset's train.txt and val.txt")
    sp.add_argument('dir', type=Path, metavar='DIR', help='the folder dataset (classes.txt, images/, labels/)')
    add_draw(sp)

    st = command(sub, cmd_stats, "write a folder dataset's dataset.json (mean, class frequencies, sizes)")
    st.add_argument('dir', type=Path, metavar='DIR', help='the folder dataset')

    i = command(sub, cmd_import, 'write a folder dataset from index masks, RGB colour masks, labelme or COCO',
                formatter_class=argparse.RawDescriptionHelpFormatter, description=IMPORT_DESCRIPTION)
    i.add_argument('format', choices=formats.FORMATS, metavar='FORMAT', help='index, rgb, labelme or coco')
    i.add_argument('src', nargs='?', metavar='SRC', help='; '.join(f'{k}: {v}' for k, v in IMPORT_SRC.items()))
    cli.add_output(i, '--out', folder=True, required=True, help='the folder dataset to write (must not exist, unless '
                   '--overwrite)')
    add_options(i, IMPORT_FLAGS)
    add_draw(i)
    i.add_argument('--overwrite', action='store_true', help='replace an existing --out, once the import succeeded')

    v = command(sub, cmd_seg11valid, 'derive seg11valid.txt: VOC2011 seg val minus SBD train')
    v.add_argument('voc_dir', help='the VOC2011 folder')
    v.add_argument('sbdd_dir', help='the SBD dataset/ folder')
    cli.add_output(v, '--out', help='write here instead')

    b = command(sub, cmd_sbdd_png, 'convert SBD cls/*.mat labels to palette PNGs')
    b.add_argument('sbdd_dir', help='the SBD dataset/ folder')
    cli.add_output(b, '--out', folder=True, help='output folder (default SBDD_DIR/cls_png)')
    b.add_argument('--split', help='only the ids of this split file (default: every .mat in cls/)')
    return p


@cli.tool('fcn-data')
def main(argv=None):
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == '__main__':
    sys.exit(main())
