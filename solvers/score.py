"""Score a segmentation net over a split, as the reference score.py does, and `fcn-score`.

Every SoftmaxWithLoss layer of the net is an output to score: its bottoms are the score blob and the label
blob, its top the loss (SIFT Flow has two: score_sem/sem/loss and score_geo/geo/loss_geo).
"""
import ast
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from caffe_fcn import cli
from solvers.metrics import collapse_warning, fast_hist, format_scores, scores, valid_pixels


@dataclass(frozen=True)
class Output:
    score: str   # the score blob (N x K x H x W)
    label: str   # the ground truth blob (N x 1 x H x W)
    loss: str    # the loss blob
    summed: bool  # True when the loss is summed over pixels (normalize: false), False when averaged
    names: tuple = ()  # the class names, when the model is known: per-class results are keyed by them


def loss_is_summed(loss_param):
    """Caffe's rule: the legacy `normalize` field wins when set, else `normalization` (default VALID)."""
    if loss_param.HasField('normalize'):
        return not loss_param.normalize
    return loss_param.normalization in (loss_param.BATCH_SIZE, loss_param.NONE)


def is_summed(layer):
    """Whether a loss layer sums over pixels: Caffe's rule for SoftmaxWithLoss; for solvers.losses'
    WeightedSoftmaxWithLoss (class balancing), unless its param_str normalizes."""
    if layer.type == 'SoftmaxWithLoss':
        return loss_is_summed(layer.loss_param)
    return not ast.literal_eval(layer.python_param.param_str).get('normalize', False)


def outputs(net_param, model=None):
    """The scored outputs of a NetParameter, in layer order: its softmax losses, plain or class-weighted; with
    the `model`, each knows its class names."""
    names = {task.score: task.names for task in model.tasks} if model else {}
    found = [Output(layer.bottom[0], layer.bottom[1], layer.top[0], is_summed(layer), names.get(layer.bottom[0], ()))
             for layer in net_param.layer if layer.type == 'SoftmaxWithLoss'
             or layer.type == 'Python' and layer.python_param.layer == 'WeightedSoftmaxWithLoss']
    if not found:
        raise ValueError(f'net {net_param.name!r} has no SoftmaxWithLoss layer: nothing to score')
    return found


def split_size(net):
    """Number of images in the split that the net's data layer reads (one image per forward)."""
    for layer in net.layers:
        for attr in ('ids', 'indices'):  # the project's layers, the reference's
            if layer.type == 'Python' and hasattr(layer, attr):
                return len(getattr(layer, attr))
    raise ValueError('the net has no Python data layer listing its split (`ids`): pass the number of images')


class NotFinite(cli.Failure):
    """A forward pass gave NaN or infinite outputs: nothing built on them may be scored or written."""


def check_outputs(net, blobs):
    """Refuse NaN or infinity in the named blobs after a forward pass, naming the first layer whose output is not
    finite (weights that pass every check can still overflow: one layer at 3e38 makes the loss NaN and the argmax
    class 0 everywhere). Returns whether the first blob is constant (all-zero weights, say): worth a warning."""
    if all(np.isfinite(net.blobs[b].data).all() for b in blobs):
        data = net.blobs[blobs[0]].data
        return bool(data.size) and data.min() == data.max()
    first = next((layer for layer, tops in net.top_names.items()
                  if any(not np.isfinite(net.blobs[t].data).all() for t in tops)), blobs[0])
    raise NotFinite(f'the net gives non-finite outputs (NaN or infinity): the first is layer {first!r}. The weights '
                    'are out of range or broken (a diverged run?); nothing was scored or written from them')


CONSTANT = 'warning: the net scores every pixel alike (all-zero or untrained weights?): its labels say nothing'


class Accumulator:
    """Confusion matrix and loss of one output, summed image by image."""

    def __init__(self, n_classes):
        self.hist = np.zeros((n_classes, n_classes), np.int64)
        self.loss = 0.0      # summed over pixels and images
        self.pixels = 0      # valid (non-void) pixels
        self.images = 0

    def add(self, gt, pred, loss, summed):
        n = len(self.hist)
        valid = valid_pixels(gt, n)
        self.hist += fast_hist(gt, pred, n)
        self.loss += loss if summed else loss * valid
        self.pixels += valid
        self.images += 1

    def result(self):
        result = scores(self.hist)
        result['loss'] = self.loss / max(self.images, 1)
        result['loss_per_pixel'] = self.loss / max(self.pixels, 1)
        return result


def evaluate(net, outs, n_images, progress=True, samples=None, keep=4):
    """Run `n_images` forward passes of a net whose data layer reads the split; {score blob: result}. Given a
    `samples` list, the first `keep` images go into it as (rgb, ground truth, prediction) of the first output."""
    acc = {o.score: Accumulator(net.blobs[o.score].channels) for o in outs}
    image = next(iter(net.top_names.values()))[0]  # the data layer's first top: the (color) image
    constant = 0
    for i in tqdm(range(n_images), desc='scoring', unit='img', leave=False, disable=not progress):
        net.forward()
        constant += check_outputs(net, [b for o in outs for b in (o.score, o.loss)])
        for o in outs:
            gt = net.blobs[o.label].data[0, 0]
            pred = net.blobs[o.score].data[0].argmax(0)
            acc[o.score].add(gt, pred, float(net.blobs[o.loss].data.flat[0]), o.summed)
        if samples is not None and i < keep:
            first = outs[0]
            samples.append((viewable(net.blobs[image].data[0]), net.blobs[first.label].data[0, 0].astype(np.uint8),
                            net.blobs[first.score].data[0].argmax(0).astype(np.uint8)))
    if n_images and constant == n_images:
        print(CONSTANT, file=sys.stderr)
    for o in outs:
        warning = collapse_warning(acc[o.score].hist, o.names)
        if warning and constant != n_images:
            tqdm.write(warning, file=sys.stderr)
    return {o.score: named(acc[o.score].result(), o.names) for o in outs}


def viewable(data):
    """A mean-subtracted C x H x W BGR input back as H x W x 3 RGB for a picture, its range stretched."""
    bgr = data[:3].transpose(1, 2, 0)[:, :, ::-1]
    low, high = bgr.min(), bgr.max()
    return ((bgr - low) / max(high - low, 1e-6) * 255).round().astype(np.uint8)


def named(result, names):
    """Per-class IU keyed by class name, where the names are known."""
    if names:
        result['per_class_iu'] = dict(zip(names, result['per_class_iu'], strict=True))
    return result


def per_class_table(result):
    """The per-class IU as lines of `name  IU` ('-' where a class is absent from ground truth and prediction)."""
    ious = result['per_class_iu']
    pairs = ious.items() if isinstance(ious, dict) else enumerate(ious)
    return [f'  {name!s:<20} {"-" if iu is None else f"{iu:.3f}"}' for name, iu in pairs]


def parse_args(argv):
    ap = cli.ArgumentParser(prog='fcn-score', description='Score a trained FCN model on a split: overall '
                                 'accuracy, mean accuracy, mean IU, frequency-weighted IU, per-class IU and loss.')
    cli.add_model(ap)
    ap.add_argument('--weights', type=Path, help='trained .caffemodel (default: the published weights of MODEL, '
                    'once `fcn-weights fetch MODEL` has cached them)')
    cli.add_dataset(ap)
    ap.add_argument('--published', action='store_true', help='score the published weights of MODEL (fetched '
                    'first if need be; --mirror URL or FCN_WEIGHTS_MIRROR as for fcn-weights) and print the number '
                    'its authors report beside the result')
    ap.add_argument('--mirror', default=os.environ.get('FCN_WEIGHTS_MIRROR'), metavar='URL',
                    help='with --published: fetch from this mirror')
    ap.add_argument('--split', help="split to score (default: the model's evaluation split, val or test)")
    cli.add_data_root(ap)
    cli.add_width(ap, what='the net the weights were trained for')
    ap.add_argument('--images', type=cli.positive(int), help='score only the first N images of the split')
    cli.add_output(ap, '--json', help='also write the results as JSON here')
    cli.add_device(ap)
    return ap.parse_args(argv)


def load_test_net(model, split, weights, width=1.0, data_root=None, data=None):
    """A caffe.Net (TEST phase) of the model's split with trained weights, everything validated first."""
    import netgen
    import surgery
    from solvers import runs

    split = split or model.splits[1]
    if split not in model.splits:
        raise runs.SetupError(f'{model.name} has the splits {", ".join(model.splits)}, not {split!r}')
    if not Path(weights).is_file():
        raise runs.SetupError(f'weights {weights} not found: pass the .caffemodel that training wrote '
                              f'(e.g. {runs.model_dir(model) / "snapshot"}/train_iter_N.caffemodel)')
    param = netgen.net(model, split, width, runs.data_dirs(model, data_root, data, [split]))  # only its folders
    return surgery.instantiate(param, weights=str(weights), model=model.name), param


@cli.tool('fcn-score')
def main(argv=None):
    import json

    from solvers import runs
    from solvers.device import use_device

    args = parse_args(argv)
    from caffe_fcn.datalayers.resolve import resolve_model

    args.model = resolve_model(args)
    use_device(args.gpu)
    from surgery import published

    entry = args.model.published
    if args.published:
        if entry is None or args.weights:
            raise cli.BadInput(f'--published: {args.model.name} on {args.model.data.title} has no published weights '
                           '(fcn-weights list)'
                               if entry is None else '--published scores the published weights: drop --weights')
        args.width, weights = entry.width, published.fetch(entry, args.mirror)
    else:
        weights = published.published_weights(args.model, args.weights)
    cli.check_outputs(args, inputs=[weights])  # the published weights, where --weights was not given
    net, param = load_test_net(args.model, args.split, weights, args.width, args.data_root)
    outs = outputs(param, args.model)
    size = split_size(net)
    if args.images and args.images > size:
        raise cli.BadInput(f'--images {args.images}: the {args.split or args.model.splits[1]} split has {size}')
    results = evaluate(net, outs, args.images or size)
    for score, result in results.items():
        print(format_scores(result, score))
        print(f'{score}: per-class IU')
        print('\n'.join(per_class_table(result)))
    if args.published:
        print(f'{args.model.name}, published weights: mean IU {100 * next(iter(results.values()))["mean_iu"]:.1f}; '
              f'reported: {entry.reported or "no number in the text here"}')
    if args.json:
        runs.write_atomic(args.json, json.dumps(results, indent=1))
    return cli.OK


if __name__ == '__main__':
    sys.exit(main())
