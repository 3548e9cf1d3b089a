"""Segment images with a trained model: `fcn-infer MODEL --weights W IMAGE... --out DIR`.

For each image (any size: the deploy net is reshaped to it) and each score output of the net, writes the
label map as a palette PNG (`NAME.png`, or `NAME_<output>.png` for multi-output nets such as SIFT Flow)
and a color overlay of the labels on the image (`NAME_overlay.png`, `NAME_<output>_overlay.png`).
"""
import argparse
import glob
import io
import itertools
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from caffe_fcn.datalayers import label_image, palette
from caffe_fcn.datalayers.datasets import mean_array, preprocess
from caffe_fcn import cli, registry
from caffe_fcn.files import allocate, write_atomic
from solvers.deploy import forward, load_deploy_net, read_image
from solvers.score import CONSTANT


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.tif', '.tiff', '.webp')


def image_paths(items):
    """The images named: files, every image file in a named folder, the matches of a glob pattern; in order,
    each once."""
    found = []
    for item in map(str, items):
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and any(c in item for c in '*?['):
            found += sorted(Path(p) for p in glob.glob(item))
        else:
            found.append(path)
    if not found:
        raise cli.BadInput(f'no images in {", ".join(map(str, items))}')
    return list(dict.fromkeys(found))


def stem_names(paths):
    """A distinct name per input: its stem, or, where inputs share a stem, its path below their common folder
    (a/img.jpg, b/img.jpg -> a_img, b_img; img.jpg, img.png -> img_jpg, img_png)."""
    stems = [p.stem for p in paths]
    names = []
    for path, stem in zip(paths, stems, strict=True):
        if stems.count(stem) > 1:  # absolute, not resolved: a symbolic link loop among them resolves to nothing
            shared = [Path(os.path.abspath(p)) for p, s in zip(paths, stems, strict=True) if s == stem]
            below = Path(os.path.abspath(path)).relative_to(os.path.commonpath(shared)) \
                if len({p.parent for p in shared}) > 1 else Path(path.name)
            stem = '_'.join(below.with_suffix('').parts)
        names.append(stem)
    return [name if names.count(name) == 1 else f'{name}_{path.suffix[1:]}' for name, path in zip(names, paths,
                                                                                                 strict=True)]


def output_names(paths, files_of):
    """An output name per input (stem_names) whose files, `files_of(name)`, are no other input's: where they
    would meet (a.png's overlay a_overlay.png is a_overlay.png's label map), the shorter name keeps its own and
    the longer takes its suffix (a_overlay_png), else a number."""
    names, claimed = stem_names(paths), set()
    for i in sorted(range(len(paths)), key=lambda i: (len(names[i]), i)):
        names[i] = next(name for name in alternatives(names[i], paths[i]) if claimed.isdisjoint(files_of(name)))
        claimed.update(files_of(names[i]))
    return names


def alternatives(name, path):
    yield name
    if path.suffix:
        yield f'{name}_{path.suffix[1:]}'
    yield from (f'{name}_{k}' for k in itertools.count(2))


def segment(net, rgb, mean):
    """{output blob: H x W uint8 label map} for one RGB image, at the image's own size."""
    return segment_inputs(net, {'data': preprocess(rgb, mean)})


def segment_inputs(net, inputs):
    """{output blob: H x W uint8 label map} for one set of input arrays {input top: C x H x W}; a warning on
    stderr where the scores are the same everywhere."""
    if forward(net, inputs):
        tqdm.write(CONSTANT, file=sys.stderr)
    return {out: net.blobs[out].data[0].argmax(0).astype(np.uint8) for out in net.outputs}


def input_mean(model):
    """The mean subtracted from a color image at inference, as the reference does it: its infer.py subtracts
    VOC's unrounded mean as float64; the other models get their data layer's mean, in its dtype."""
    return mean_array(model.data, model.mean)


def model_inputs(model, path, rgb, twins=None):
    """The net's input arrays for one image, as the model's data layer prepares them: a color image; an HHA one
    (nyud-fcn32s-hha); or a color image with its depth or HHA twin of the same file name in the folder `twins`."""
    from caffe_fcn.datalayers.datasets import modality_array

    arrays = {}
    for top, modality in zip(model.inputs, model.modalities, strict=True):
        if modality == 'color':
            arrays[top] = preprocess(rgb, input_mean(model))
        else:
            arrays[top] = modality_array(modality, path if top == 'data' else Path(twins) / Path(path).name,
                                         model.data)
    sizes = {top: array.shape[1:] for top, array in arrays.items()}
    if len(set(sizes.values())) > 1:  # Concat would abort, the two-stream sum fuse misaligned maps
        raise cli.BadInput(f'{path} and its twin in {twins} differ in size: '
                           + ', '.join(f'{top} {h}x{w}' for top, (h, w) in sizes.items()))
    return arrays


def shift_and_stitch(coarse, image, factor, step):
    """CVPR 2015 sec. 3.2: the coarse output (stride s = factor x step) of `factor` x `factor` inputs, each shifted
    up and left by a multiple of `step` pixels, interlaced into one output of stride `step`. `coarse(image)` gives
    C x h x w scores; `image` is H x W (x channels)."""
    maps = {(i, j): coarse(image[i * step:, j * step:]) for i in range(factor) for j in range(factor)}
    h, w = min(m.shape[1] for m in maps.values()), min(m.shape[2] for m in maps.values())
    dense = np.zeros((next(iter(maps.values())).shape[0], h * factor, w * factor), np.float32)
    for (i, j), scores in maps.items():
        dense[:, i::factor, j::factor] = scores[:, :h, :w]
    return dense


def stitched(net, proto, rgb, mean, factor):
    """{output blob: H x W uint8 label map} by shift-and-stitch of each output's coarse scores: each pixel takes
    the label of the nearest cell of the denser output (its centre is `origin` + k x step in the image)."""
    from netgen import geometry

    labels = {}
    for output, (blob, geo) in geometry.coarse_scores(proto).items():
        if geo.stride.denominator != 1 or geo.stride % factor:
            raise cli.BadInput(f'--shift-and-stitch {factor}: {blob} has stride {geo.stride}, which {factor} '
                               'does not divide')
        step = int(geo.stride) // factor

        def coarse(image, blob=blob):
            forward(net, {'data': preprocess(image, mean)})
            return net.blobs[blob].data[0].copy()
        cells = shift_and_stitch(coarse, rgb, factor, step).argmax(0).astype(np.uint8)
        rows, cols = (np.clip(np.round((np.arange(n) - float(geo.origin)) / step).astype(int), 0, m - 1)
                      for n, m in zip(rgb.shape[:2], cells.shape, strict=True))
        labels[output] = cells[np.ix_(rows, cols)]
    return labels


def overlay(rgb, labels, names=(), alpha=0.5):
    """The image with each labelled pixel blended toward its class color; void (255) pixels, and the background
    class where the dataset has one, left as they are."""
    colors = palette(256)[labels].astype(np.float32)
    mixed = (1 - alpha) * rgb.astype(np.float32) + alpha * colors
    keep = (labels == 255) | ((labels == 0) if names[:1] == ('background',) else False)
    return Image.fromarray(np.where(keep[..., None], rgb, mixed.round()).astype(np.uint8))


def with_legend(image, labels, names):
    """The image with a legend below it: the color and the name of every class that appears in `labels`."""
    present = [int(c) for c in np.unique(np.concatenate([np.ravel(x) for x in labels])) if c < len(names)]
    if not present:
        return image
    row = 14
    legend = Image.new('RGB', (max(image.width, 180), row * len(present) + 4), 'white')
    draw = ImageDraw.Draw(legend)
    for i, c in enumerate(present):
        draw.rectangle([4, 3 + i * row, 14, 13 + i * row], fill=tuple(int(v) for v in palette(256)[c]),
                       outline='black')
        draw.text((20, 2 + i * row), f'{c}: {names[c]}', fill='black')
    sheet = Image.new('RGB', (max(image.width, legend.width), image.height + legend.height), 'white')
    sheet.paste(image, (0, 0))
    sheet.paste(legend, (0, image.height))
    return sheet


def comparison(rows, names=(), scale=3):
    """One picture, a row per image: the image, its ground truth, the prediction over the image; enlarged
    (nearest neighbour, so label edges stay sharp), with a legend of the classes shown. `rows` holds
    (rgb, truth, prediction) triples."""
    tiles = [[Image.fromarray(rgb), label_image(truth).convert('RGB'), overlay(rgb, pred, names)]
             for rgb, truth, pred in rows]
    h, w = max(t[0].height for t in tiles), max(t[0].width for t in tiles)
    sheet = Image.new('RGB', (3 * w * scale, len(tiles) * h * scale), 'white')
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            big = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
            sheet.paste(big, (c * w * scale, r * h * scale))
    return with_legend(sheet, [t for _, truth, pred in rows for t in (truth, pred)], names)


SAVE_SCORES = ('probabilities', 'top1')


def result_paths(stem, outputs, out, save=None):
    """{output blob: (label PNG, overlay PNG[, scores])} that write_results writes for one image: with `save`
    the class probabilities (.npy) or, for top1, the winning probability (_confidence.png)."""
    suffix = {'probabilities': '.npy', 'top1': '_confidence.png'}.get(save)
    return {name: (Path(out) / f'{base}.png', Path(out) / f'{base}_overlay.png',
                   *([Path(out) / f'{base}{suffix}'] if suffix else []))
            for name, base in ((name, stem if len(outputs) == 1 else f'{stem}_{name}') for name in outputs)}


def write_results(stem, rgb, label_maps, out, names=None):
    """Write the label PNG and the overlay (with a legend, given the class `names` of each output) of every
    output, each whole or not at all; returns the written paths."""
    written = []
    for name, (label_path, overlay_path, *_) in result_paths(stem, list(label_maps), out).items():
        labels, classes = label_maps[name], (names or {}).get(name, ())
        write_atomic(label_path, png_bytes(label_image(labels)))
        write_atomic(overlay_path, png_bytes(with_legend(overlay(rgb, labels, classes), [labels], classes)))
        written += [label_path, overlay_path]
    return written


class Probabilities:
    """--save-scores: each output's class probabilities (softmax of its scores) as float16 C x H x W .npy files,
    filled tile by tile through a memory map beside them (never held whole) and renamed into place when done;
    or, for top1, the winning probability as an 8-bit PNG (0-255 for 0-1)."""

    def __init__(self, kind, paths, classes, h, w):
        self.kind, self.paths, self.parts, self.maps = kind, paths, {}, {}
        if kind == 'top1':
            self.maps = {out: np.zeros((h, w), np.uint8) for out in paths}
            return
        for out, path in paths.items():
            self.parts[out] = path.with_name(f'.{path.name}.part')
            try:
                self.maps[out] = np.lib.format.open_memmap(self.parts[out], 'w+', np.float16, (classes[out], h, w))
                allocate(self.parts[out])  # before any page of the map is written
            except OSError as err:
                self.discard()
                raise OSError(err.errno, f'cannot write {path} ({2 * classes[out] * h * w / 2 ** 20:.1f} MB): '
                                         f'{err.strerror or err}; nothing of it was kept') from None

    def put(self, out, part, probabilities):
        y0, y1, x0, x1 = part
        if self.kind == 'top1':
            self.maps[out][y0:y1, x0:x1] = np.round(probabilities.max(0) * 255)
        else:
            self.maps[out][:, y0:y1, x0:x1] = probabilities

    def finish(self):
        for out, path in self.paths.items():
            if self.kind == 'top1':
                write_atomic(path, png_bytes(Image.fromarray(self.maps[out], 'L')))
            else:
                self.maps[out].flush()
                os.replace(self.parts[out], path)
        return list(self.paths.values())

    def discard(self):
        self.maps.clear()  # numpy's maps close when dropped
        for part in self.parts.values():
            part.unlink(missing_ok=True)


def segment_image(engine, proto, inputs, budget, gpu=False, probabilities=None):
    """({output: H x W uint8 labels}, tiles, forward seconds) for one image's inputs {top: C x H x W}, in tiles
    where a whole pass would not fit in `budget` bytes (tiles.plan); each tile's probabilities to
    `probabilities` (a Probabilities) where given. A warning where the scores are the same everywhere."""
    import time

    from solvers import tiles

    h, w = next(iter(inputs.values())).shape[1:]
    tile, margin = tiles.plan(proto, h, w, budget, gpu)
    labels, extremes, count, seconds = {}, [np.inf, -np.inf], 0, 0.0
    parts = tiles.tiled(engine.scores, inputs, tile, margin)
    while True:
        start = time.perf_counter()
        part, got = next(parts, (None, None))
        seconds += time.perf_counter() - start
        if part is None:
            break
        y0, y1, x0, x1 = part
        for out, scores in got.items():
            labels.setdefault(out, np.empty((h, w), np.uint8))[y0:y1, x0:x1] = scores.argmax(0)
            if probabilities is not None:
                probabilities.put(out, part, tiles.softmax(scores))
        first = next(iter(got.values()))
        extremes = [min(extremes[0], first.min()), max(extremes[1], first.max())]
        count += 1
    if extremes[0] == extremes[1]:
        tqdm.write(CONSTANT, file=sys.stderr)
    return labels, count, seconds


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, 'PNG')
    return buffer.getvalue()


def shard(text):
    """--shard K/N: the K-th (1 to N) of N parts."""
    try:
        k, n = (int(v) for v in text.split('/'))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f'--shard takes K/N with 1 <= K <= N, such as 3/8; got {text!r}')
    return k, n


def parse_args(argv):
    from solvers.engines import ENGINES
    from solvers.tiles import memory_size

    ap = cli.ArgumentParser(prog='fcn-infer', description=__doc__.split('\n\n')[0] + ' ' + __doc__.split(
        '\n\n')[1].replace('\n', ' '))
    cli.add_model(ap)
    ap.add_argument('images', nargs='*', metavar='IMAGE', help='images to segment (JPEG, PNG, ...): files, folders '
                    '(every image in them) or glob patterns such as "photos/*.jpg"')
    ap.add_argument('--weights', type=Path, help='trained .caffemodel (default: the published weights of MODEL, '
                    'once `fcn-weights fetch MODEL` has cached them)')
    cli.add_output(ap, '--out', folder=True, required=True, help='directory for the label maps and overlays')
    cli.add_dataset(ap)
    cli.add_width(ap, what='the net the weights were trained for')
    ap.add_argument('--twins', type=Path, metavar='DIR', help='for the NYUDv2 two-input models: the folder holding '
                    'each color image\'s depth or HHA twin under the same file name (e.g. data/nyud/data/hha)')
    ap.add_argument('--shift-and-stitch', type=int, default=1, metavar='F', help='CVPR 2015 sec. 3.2: run F x F '
                    'shifted copies of each image and interlace the coarse scores into F x F times denser ones '
                    '(F must divide their stride; default 1: the net\'s own upsampling)')
    ap.add_argument('--engine', choices=ENGINES, default='caffe', help='caffe (default, the faithful one) or '
                    'onnxruntime: this project\'s own ONNX export of the weights, made once, checked against Caffe '
                    'and cached under FCN_CACHE/onnx; faster on the CPU, the same files out')
    ap.add_argument('--max-memory', type=memory_size, metavar='BYTES', help='memory a forward pass may take, with '
                    'K/M/G suffixes (default: the free memory, or the GPU\'s with --gpu); an image that needs more '
                    'is segmented in overlapping tiles whose seams do not show')
    ap.add_argument('--save-scores', action='store_true', help='also write each image\'s scores, as '
                    '--scores-format says')
    ap.add_argument('--scores-format', choices=SAVE_SCORES, help='with --save-scores: '
                    'probabilities (default), the class probabilities (softmax, float16 C x H x W, NAME.npy); top1, '
                    'the winning probability as an 8-bit PNG (NAME_confidence.png)')
    ap.add_argument('--keep-going', action=argparse.BooleanOptionalAction, help='go on past an image that fails, '
                    'naming it, and exit 1 at the end (default: on for several images, off for one)')
    ap.add_argument('--shard', type=shard, metavar='K/N', help='segment only the K-th of N disjoint parts of the '
                    'images (every N-th of the sorted paths, from the K-th), e.g. $SLURM_ARRAY_TASK_ID/8')
    ap.add_argument('--skip-done', action='store_true', help='skip images whose outputs are all there already (a '
                    'rerun of an interrupted shard)')
    cli.add_output(ap, '--report', metavar='FILE', help='write the counts and timings as JSON')
    cli.add_device(ap)
    args = ap.parse_intermixed_args(argv)  # MODEL and IMAGEs are both positional, options may come between
    if args.run and args.model and args.model not in registry.MODELS:  # `fcn-infer --run RUN IMAGE...`
        args.images.insert(0, args.model)
        args.model = None
    if not args.images:
        ap.error('name the IMAGEs to segment')
    if args.shift_and_stitch < 1:
        ap.error('--shift-and-stitch must be at least 1')
    if args.shift_and_stitch > 1 and args.engine != 'caffe':
        ap.error('--shift-and-stitch runs on the caffe engine')
    if args.scores_format and not args.save_scores:
        ap.error('--scores-format says what --save-scores writes: add --save-scores')
    args.save_scores = (args.scores_format or SAVE_SCORES[0]) if args.save_scores else None  # what to save, or None
    return args


def read_ahead(items, load, depth=2):
    """(item, loaded, error) for each item in order, `load(item)` running on a background thread up to `depth`
    items ahead of the caller (decoding overlaps the forward passes)."""
    import queue
    import threading

    ready = queue.Queue(depth)

    def work():
        for item in items:
            try:
                ready.put((item, load(item), None))
            except Exception as err:  # handed to the caller, which says which image failed
                ready.put((item, None, err))
        ready.put(None)
    threading.Thread(target=work, daemon=True).start()
    while (got := ready.get()) is not None:
        yield got


PER_IMAGE = (cli.BadInput, ValueError, OSError)  # what fails one image and not the others


class Writer:
    """Each image's files written on a background thread, at most `depth` images behind; the written paths
    printed, and a failure handed to `fail(path, error)` in the caller's thread."""

    def __init__(self, fail, depth=2):
        from concurrent.futures import ThreadPoolExecutor

        self.pool, self.pending, self.fail, self.depth, self.failed = ThreadPoolExecutor(1), [], fail, depth, 0

    def submit(self, path, write, *args):
        self.pending.append((path, self.pool.submit(write, *args)))
        self.drain(self.depth)

    def drain(self, keep=0):
        while len(self.pending) > keep:
            path, future = self.pending.pop(0)
            try:
                for written in future.result():
                    tqdm.write(str(written))  # printed above the progress bar, not through it
            except PER_IMAGE as err:
                self.failed += 1
                self.fail(path, err)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        try:
            if kind is None:
                self.drain()
        finally:
            self.pool.shutdown(wait=True)


@cli.tool('fcn-infer')
def main(argv=None):
    import time

    from solvers.device import use_device

    args = parse_args(argv)
    from caffe_fcn.datalayers.resolve import resolve_model

    model = args.model = resolve_model(args)
    paths = image_paths(args.images)
    if len(model.inputs) > 1 and args.twins is None:
        raise cli.BadInput(f'{model.name} takes {" and ".join(model.modalities)} images: pass --twins DIR, the '
                           f'folder holding each color image\'s {model.modalities[1]} twin under the same file name')
    if model.modalities != ('color',) and args.shift_and_stitch > 1:
        raise cli.BadInput(f'--shift-and-stitch shifts one color image; {model.name} takes '
                           f'{" and ".join(model.modalities)}')
    keep_going = args.keep_going if args.keep_going is not None else \
        len(paths) > 1 or any(Path(item).is_dir() or any(c in item for c in '*?[') for item in map(str, args.images))
    todo, done, failed = selected_images(args, model, paths, keep_going)
    use_device(args.gpu)
    from solvers import engines, tiles
    from surgery.published import published_weights

    weights = published_weights(args.model, args.weights)
    net, proto = load_deploy_net(args.model, weights, args.width)
    engine = engines.engine(args.engine, model, net, proto, weights, args.width)
    budget = args.max_memory or tiles.free_memory(args.gpu is not None)
    names = {t.score: t.names for t in model.tasks}
    start, forward_seconds, segmented, tiled = time.perf_counter(), 0.0, 0, 0

    def load(item):
        rgb = read_image(item[0])
        return rgb, model_inputs(model, item[0], rgb, args.twins)

    def fail(path, err):
        if not keep_going:
            raise err
        failed.append(path)
        tqdm.write(f'fcn-infer: error: {path}: {err}', file=sys.stderr)

    bar = tqdm(read_ahead(todo, load), total=len(todo), desc='segmenting', unit='img', disable=len(todo) < 2)
    with Writer(fail) as writer:  # PNGs encoded on a thread while the next image runs
        for (path, name), loaded, error in bar:
            try:
                if error is not None:
                    raise error
                rgb, inputs = loaded
                labels, count, seconds = segment_one(engine, net, proto, model, rgb, inputs, budget, args, name, path)
                forward_seconds += seconds
                tiled += count > 1
                segmented += 1
                writer.submit(path, write_results, name, rgb, labels, args.out, names)
            except PER_IMAGE as err:
                fail(path, err)
    summary = {'engine': args.engine, 'images': segmented - writer.failed, 'tiled': tiled, 'failed': len(failed),
               'skipped_done': len(done), 'seconds': round(time.perf_counter() - start, 3),
               'forward_seconds': round(forward_seconds, 3)}
    return finish(args, summary)


def selected_images(args, model, paths, keep_going):
    """(todo, done, failed): the (path, output name) pairs of this shard still to segment, those whose outputs
    are all there and whole (--skip-done) and the paths whose header did not read; no output may land on an
    input or on another output (--report on a label map)."""
    outputs = [t.score for t in model.tasks]

    def files_of(name, out=args.out):
        return [p for group in result_paths(name, outputs, out, args.save_scores).values() for p in group]
    named = list(zip(paths, output_names(paths, lambda name: [p.name for p in files_of(name, '')]), strict=True))
    cli.check_outputs(args, writes={'out': [p for _, name in named for p in files_of(name)]},  # over all shards
                      inputs=[*paths, *twin_paths(model, paths, args.twins)])
    apart_from_images(args.out, [Path(item) for item in map(str, args.images) if Path(item).is_dir()])
    if args.shard:
        k, n = args.shard
        named = named[k - 1::n]
    done = {item for item in named if args.skip_done and all(map(complete, files_of(item[1])))}
    todo, failed = checked_images(model, [item for item in named if item not in done], args.twins, keep_going)
    return todo, done, failed


def apart_from_images(out, folders):
    """Refuse an --out that is a folder of images named to segment: the label maps (photo.png beside photo.jpg)
    would mix with them, and the next run over that folder, or a folder dataset holding it, would take them for
    images. (Images named one by one may have theirs beside them: `fcn-infer cat.jpg --out .`.)"""
    named = {cli.file_key(folder): folder for folder in folders}
    among = named.get(cli.file_key(out))
    if among is not None:
        raise cli.BadInput(f'--out {out} is {among}, the folder of images to segment: the label maps and overlays '
                           'would mix with the images; nothing was written, choose another --out')


def complete(path):
    """Whether an output of an earlier run is there and whole: a PNG whose chunks all check, a .npy whose data
    are all there (each was written whole or not at all, but a disk or a person may have cut one since)."""
    try:
        if path.suffix == '.npy':
            np.load(path, mmap_mode='r')
        else:
            with Image.open(path) as image:
                image.verify()
        return True
    except (OSError, ValueError, SyntaxError, EOFError):  # Pillow's broken PNG is a SyntaxError
        return False


def finish(args, summary):
    """The run's last line (and --report's JSON); exit 1 where an image failed."""
    import json

    seconds = summary['seconds']
    summary['images_per_second'] = round(summary['images'] / seconds, 3) if seconds else None
    if args.report:
        write_atomic(args.report, json.dumps(summary, indent=1) + '\n')
    print(f'segmented {summary["images"]} image(s) in {seconds:.1f} s ({summary["images_per_second"]} images/s, '
          f'forward {summary["forward_seconds"]:.1f} s)'
          + (f'; {summary["skipped_done"]} done already, skipped' if summary['skipped_done'] else '')
          + (f'; {summary["failed"]} failed' if summary['failed'] else ''), file=sys.stderr)
    return cli.FAILURE if summary['failed'] else cli.OK


def twin_paths(model, paths, twins):
    return [twins / path.name for path in paths] if len(model.inputs) > 1 else []


def checked_images(model, named, twins, keep_going):
    """The (path, name) pairs whose image (and twin) headers read, and the paths that failed: every image is
    checked before any work (without keep_going the first bad one stops all)."""
    good, failed = [], []
    for path, name in named:
        try:
            for each in [path, *twin_paths(model, [path], twins)]:
                read_image(each, decode=False)
            good.append((path, name))
        except ValueError as err:
            if not keep_going:
                raise
            failed.append(path)
            tqdm.write(f'fcn-infer: error: {err}', file=sys.stderr)
    return good, failed


def segment_one(engine, net, proto, model, rgb, inputs, budget, args, name, path):
    """({output: labels}, tiles, forward seconds) of one image; its probabilities written where --save-scores
    asks."""
    from solvers import tiles

    if args.shift_and_stitch > 1:
        if tiles.plan(proto, *rgb.shape[:2], budget, args.gpu is not None)[0] < max(rgb.shape[:2]):
            raise cli.BadInput(f'{path}: --shift-and-stitch needs the whole image in one pass, which does not fit '
                               'in --max-memory; leave it out to segment in tiles')
        return stitched(net, proto, rgb, input_mean(model), args.shift_and_stitch), 1, 0.0
    probabilities = None
    if args.save_scores:
        paths = {out: files[2] for out, files in result_paths(name, list(net.outputs), args.out,
                                                              args.save_scores).items()}
        args.out.mkdir(parents=True, exist_ok=True)
        probabilities = Probabilities(args.save_scores, paths, {t.score: t.classes for t in model.tasks},
                                      *rgb.shape[:2])
    try:
        labels, count, seconds = segment_image(engine, proto, inputs, budget, args.gpu is not None, probabilities)
        if probabilities is not None:
            for written in probabilities.finish():
                tqdm.write(str(written))
    finally:
        if probabilities is not None:
            probabilities.discard()
    return labels, count, seconds


if __name__ == '__main__':
    sys.exit(main())
