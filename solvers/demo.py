"""`make demo`: the staged FCN-32s -> 16s -> 8s pipeline, end to end, on a synthetic VOC-format dataset.

The nets are reduced-width variants of voc-fcn32s/16s/8s (same topology, padding, crops, skips and fixed
bilinear upsampling; fewer channels), fed by the real data layers from an SBD-format train split and the VOC
seg11valid split. As the reference stages them, 16s starts from the trained 32s and 8s from the trained 16s,
each with bilinear upsampling; the 32s trunk starts from `surgery.stand_in_trunk`, a seeded stand-in for the converted
ILSVRC trunk (which would have to be downloaded). Each stage uses the training driver: rounds of
SGD steps, the four metrics printed after each round, atomic snapshots and a log.

Outputs (in --out, default demo-output/): data/ (the synthetic dataset), voc-fcn{32,16,8}s/ (snapshots and
per-stage logs), log.jsonl and learning_curve.png (all stages), overlay.png (held-out images: image, ground
truth, FCN-8s prediction), labels.png (the first prediction as a palette PNG), scores.json (the final FCN-8s
scores).
"""
import json
import sys
import time
from pathlib import Path


from caffe_fcn import cli, registry
from solvers import driver, runs
from solvers.curve import plot_curve
from solvers.metrics import format_scores
from solvers.score import outputs

# (model, base_lr). The loss is summed over pixels (normalize: false) as in the reference, so the rate is small.
# The reference lowers it per stage (1e-10 -> 1e-12 -> 1e-14) for its pretrained nets; from this stand-in
# trunk the skips learn as fast at one rate.
STAGES = (('voc-fcn32s', 1e-8), ('voc-fcn16s', 1e-8), ('voc-fcn8s', 1e-8))


def parse_args(argv):
    ap = cli.ArgumentParser(prog='python -m solvers.demo', description=__doc__.split('\n\n')[0],
                                 epilog='Takes a few minutes on 2 CPU cores with the defaults.')
    ap.add_argument('--out', type=Path, default=registry.REPO / 'demo-output',
                    help='output directory (default: %(default)s)')
    cli.add_width(ap, default=1 / 8)
    ap.add_argument('--count', type=int, default=160, help='synthetic images in the universe (default 160: '
                    '120 SBD train, 40 VOC seg11valid)')
    ap.add_argument('--rounds', type=int, nargs=3, default=(4, 3, 4), metavar=('R32', 'R16', 'R8'),
                    help='rounds per stage (default 4 3 4)')
    ap.add_argument('--steps', type=int, default=200, help='SGD steps per round (default 200)')
    ap.add_argument('--seed', type=int, default=0, help='seed of the dataset and the trunk initialization')
    cli.add_device(ap)
    return ap.parse_args(argv)


def synthesize(root, count, seed):
    """The SBD-format train split and the VOC seg11valid split, laid out under `root` as data/ lays them out."""
    from caffe_fcn.datalayers.synth import synthesize

    synthesize('sbdd', root / 'sbdd', count=count, seed=seed)
    synthesize('voc', root / 'pascal', count=count, seed=seed)
    return root


def run_stage(model, base_lr, previous, args, data_root, log):
    """Train one stage with the driver; returns (its last caffemodel, its last round's scores)."""
    import caffe

    import surgery

    out = args.out / model.name
    # A fixed random_seed makes Caffe's dropout masks, and so the whole demo, repeat from run to run.
    prepared = runs.prepare(model, out, args.width, data_root,
                            solver_overrides={'base_lr': base_lr, 'random_seed': args.seed})
    param = prepared.train_net
    solver = caffe.SGDSolver(str(prepared.solver))
    if previous is None:
        surgery.stand_in_trunk(solver.net, args.seed)
    else:
        surgery.load_weights(solver.net, str(previous), partial=True)  # by name: trunk, score_fr, earlier skips
    surgery.interp(solver.net)
    rounds = args.rounds[[s for s, _ in STAGES].index(model.name)]
    rows = driver.train(solver, rounds, args.steps, out, outputs(param, model), log=log, label=f'{model.name}: ',
                        echo=lambda line: print(line, flush=True))
    return runs.latest_snapshot(out), rows[-1]['scores']['score']


def write_overlay(weights, args, data_root, count=4):
    """Segment the first held-out images with the final net: overlay.png (image | ground truth | prediction,
    a row per image) and labels.png (the first prediction as a palette PNG) in --out."""
    from caffe_fcn.datalayers.io import read_label_png
    from solvers import deploy, infer

    model = registry.get('voc-fcn8s')
    voc = model.data.dirs(data_root)['voc_dir']
    ids = (voc / 'ImageSets' / 'Segmentation' / 'seg11valid.txt').read_text().split()[:count]
    net, _ = deploy.load_deploy_net(model, weights, args.width)
    rows = []
    for id_ in ids:
        rgb = deploy.read_image(voc / 'JPEGImages' / f'{id_}.jpg')
        pred = infer.segment(net, rgb, infer.input_mean(model))['score']
        rows.append((rgb, read_label_png(voc / 'SegmentationClass' / f'{id_}.png'), pred))
    runs.write_atomic(args.out / 'overlay.png', infer.png_bytes(infer.comparison(rows, model.tasks[0].names)))
    runs.write_atomic(args.out / 'labels.png', infer.png_bytes(infer.label_image(rows[0][2])))
    return args.out / 'overlay.png'


@cli.tool('demo')
def main(argv=None):
    from solvers.device import use_device

    args = parse_args(argv)
    args.out = args.out.resolve()
    start = time.time()
    use_device(args.gpu)
    print(f'synthesizing {args.count} VOC/SBD-format images into {args.out / "data"}', flush=True)
    data_root = synthesize(args.out / 'data', args.count, args.seed)
    log = args.out / 'log.jsonl'
    log.unlink(missing_ok=True)
    weights = None
    for name, base_lr in STAGES:
        print(f'--- {name} at width {args.width:g}, base_lr {base_lr:g}'
              + (f', from {weights.name} of the previous stage' if weights else ', stand-in trunk'), flush=True)
        weights, final = run_stage(registry.get(name), base_lr, weights, args, data_root, log)
    plot_curve(log, args.out / 'learning_curve.png', title='demo: FCN-32s -> 16s -> 8s')
    overlay = write_overlay(weights, args, data_root)
    runs.write_atomic(args.out / 'scores.json', json.dumps(final, indent=1))
    print(f'\nFCN-8s on the held-out synthetic seg11valid split: {format_scores(final)}')
    print(f'wrote {overlay}, {args.out / "learning_curve.png"}, {args.out / "scores.json"} '
          f'in {time.time() - start:.0f} s')
    return cli.OK


if __name__ == '__main__':
    sys.exit(main())
