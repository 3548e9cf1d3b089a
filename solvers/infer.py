"""Segment images with a trained model: `fcn-infer MODEL --weights W IMAGE... --out DIR`.

For each image (any size: the deploy net is reshaped to it) and each score output of the net, writes the
label map as a palette PNG (`NAME.png`, or `NAME_<output>.png` for multi-output nets such as SIFT Flow)
and a color overlay of the labels on the image (`NAME_overlay.png`, `NAME_<output>_overlay.png`).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from datalayers import palette
from fcn.cli import tool
from datalayers.datasets import CONTEXT_MEAN, NYUD_MEAN_BGR, NYUD_MEAN_HHA, SIFTFLOW_MEAN, VOC_MEAN, preprocess

MEANS = {'voc': VOC_MEAN, 'nyud': NYUD_MEAN_BGR, 'siftflow': SIFTFLOW_MEAN, 'pascalcontext': CONTEXT_MEAN}


def image_mean(name):
    """The BGR mean the model's data layer subtracts (nyud-fcn32s-hha is fed HHA images)."""
    from solvers import runs

    model = runs.check_model(name)
    return NYUD_MEAN_HHA if name.endswith('-hha') and model.dataset == 'nyud' else MEANS[model.dataset]


def read_image(path):
    """H x W x 3 uint8 RGB, or a clear error for a missing or unreadable file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert('RGB'))
    except FileNotFoundError:
        raise ValueError(f'image {path} not found') from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f'{path} is not an image Pillow can read ({err})') from None


def load_deploy_net(name, weights, width=1.0):
    """The model's deploy net with trained weights; it must take one 3-channel `data` input."""
    import surgery
    from solvers import runs

    runs.check_model(name)
    if not Path(weights).is_file():
        raise runs.SetupError(f'weights {weights} not found: pass a .caffemodel written by training')
    param = runs.net_param(name, 'deploy', width)
    net = surgery.instantiate(param)
    if list(net.inputs) != ['data'] or net.blobs['data'].channels != 3:
        shapes = {k: net.blobs[k].data.shape for k in net.inputs}
        raise runs.SetupError(f'fcn-infer feeds one 3-channel image as `data`; {name} takes {shapes}')
    surgery.load_weights(net, str(weights))
    return net


def segment(net, rgb, mean):
    """{output blob: H x W uint8 label map} for one RGB image, at the image's own size."""
    data = preprocess(rgb, mean)
    net.blobs['data'].reshape(1, *data.shape)
    net.reshape()
    # Caffe aborts on a layer whose output vanishes (an image smaller than the net's pooling allows).
    empty = [name for name, blob in net.blobs.items() if blob.count == 0]
    if empty:
        raise ValueError(f'a {rgb.shape[1]}x{rgb.shape[0]} image is too small for this net: '
                         f'{empty[0]} comes out empty; use a larger image')
    net.blobs['data'].data[0] = data
    net.forward()
    return {out: net.blobs[out].data[0].argmax(0).astype(np.uint8) for out in net.outputs}


def label_png(labels):
    im = Image.fromarray(labels, mode='P')
    im.putpalette(palette(256).ravel().tolist())
    return im


def overlay(rgb, labels, alpha=0.5):
    """The image with each labelled pixel blended toward its class color; void (255) pixels untouched."""
    colors = palette(256)[labels].astype(np.float32)
    mixed = (1 - alpha) * rgb.astype(np.float32) + alpha * colors
    keep = (labels == 255)[..., None]
    return Image.fromarray(np.where(keep, rgb, mixed.round()).astype(np.uint8))


def comparison(rows, scale=3):
    """One picture, a row per image: the image, its ground truth, the prediction over the image; enlarged
    (nearest neighbour, so label edges stay sharp). `rows` holds (rgb, truth, prediction) triples."""
    tiles = [[Image.fromarray(rgb), label_png(truth).convert('RGB'), overlay(rgb, pred)] for rgb, truth, pred in rows]
    h, w = max(t[0].height for t in tiles), max(t[0].width for t in tiles)
    sheet = Image.new('RGB', (3 * w * scale, len(tiles) * h * scale), 'white')
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            big = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
            sheet.paste(big, (c * w * scale, r * h * scale))
    return sheet


def write_results(stem, rgb, label_maps, out):
    """Write the label PNG and overlay of every output; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, labels in label_maps.items():
        base = stem if len(label_maps) == 1 else f'{stem}_{name}'
        label_png(labels).save(out / f'{base}.png')
        overlay(rgb, labels).save(out / f'{base}_overlay.png')
        written += [out / f'{base}.png', out / f'{base}_overlay.png']
    return written


def parse_args(argv):
    ap = argparse.ArgumentParser(prog='fcn-infer', description=__doc__.split('\n\n')[0] + ' ' + __doc__.split(
        '\n\n')[1].replace('\n', ' '))
    ap.add_argument('model', help='model name, e.g. voc-fcn8s')
    ap.add_argument('images', nargs='+', type=Path, metavar='IMAGE', help='images to segment (JPEG, PNG, ...)')
    ap.add_argument('--weights', required=True, type=Path, help='trained .caffemodel')
    ap.add_argument('--out', required=True, type=Path, help='directory for the label maps and overlays')
    ap.add_argument('--width', type=float, default=1.0, help='channel width of a reduced-width variant (default 1)')
    device = ap.add_mutually_exclusive_group()
    device.add_argument('--gpu', type=int, metavar='N', help='run on GPU N (needs a CUDA build of Caffe)')
    device.add_argument('--cpu', action='store_true', help='run on the CPU (the default)')
    return ap.parse_args(argv)


@tool('fcn-infer')
def main(argv=None):
    import surgery
    from solvers import driver, runs

    args = parse_args(argv)
    try:
        rgbs = {path: read_image(path) for path in args.images}  # every image checked before any work
        driver.use_device(args.gpu)
        net = load_deploy_net(args.model, args.weights, args.width)
        mean = image_mean(args.model)
        for path, rgb in tqdm(rgbs.items(), desc='segmenting', unit='img', disable=len(rgbs) < 2):
            for written in write_results(path.stem, rgb, segment(net, rgb, mean), args.out):
                print(written)
    except (runs.SetupError, surgery.WeightsError, ValueError) as err:
        print(f'fcn-infer: error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
