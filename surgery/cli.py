"""fcn-surgery: transplant weights between nets, and convert ILSVRC classifiers into FCN trunk weights."""
import sys
from pathlib import Path

from caffe_fcn import cli, registry

from .bilinear import interp, upsampling_layers
from .transplant import transplant
from .weights import load_weights

def conversions():
    """{trunk: the FCN whose trunk `convert TRUNK` writes}, for every trunk with a declared ILSVRC classifier."""
    return {m.trunk: registry.conversion_target(m.trunk) for m in registry.MODELS.values() if not m.stride}


def run_transplant(args):
    from .nets import instantiate, save_net

    src = instantiate(args.src_net, weights=args.src_weights)
    dst = instantiate(args.dst_net)
    report = transplant(dst, src, suffix=args.suffix, strict=args.strict)
    if args.interp:
        deconvs = upsampling_layers(dst)
        interp(dst, deconvs)
        print(f'bilinear {", ".join(deconvs) or "(no Deconvolution layers)"}')
    print(report)
    save_net(dst, args.out)
    print(f'wrote {args.out} for {args.dst_net}')


def run_convert(args):
    from .nets import instantiate, save_net

    import netgen  # only convert needs the model declarations

    target = registry.conversion_target(args.model)
    classifier, fcn = target.classifier, target.name
    src = instantiate(netgen.net(classifier, 'deploy', width=args.width))
    from .published import published_weights

    args.weights = published_weights(registry.get(classifier), args.weights)
    load_weights(src, args.weights)  # the whole classifier: a file lacking a layer is refused
    dst = instantiate(netgen.net(fcn, 'deploy', width=args.width))
    report = transplant(dst, src)
    print(report)
    trunk = report.written()
    save_net(dst, args.out, trunk, model=fcn)
    print(f'wrote {args.out}: the {fcn} trunk ({len(trunk)} layers); score and upsampling layers are left '
          'to the net\'s initialization and surgery.interp')


def run_init(args):
    from .nets import instantiate, save_net
    from .stand_in import stand_in_trunk

    import netgen

    if args.dataset:
        from caffe_fcn.datalayers.resolve import resolve_dataset

        args.model = registry.for_dataset(args.model, resolve_dataset(args.dataset))
    net = instantiate(netgen.net(args.model, 'deploy', width=args.width))
    stand_in_trunk(net, args.seed)
    interp(net)
    save_net(net, args.out, model=args.model.name)
    print(f'wrote {args.out}: seeded stand-in weights (seed {args.seed}) for {args.model.name} at width '
          f'{args.width:g}, upsampling bilinear. For smoke tests only: NOT the paper\'s initialization, which is '
          '`fcn-surgery convert` of the published ILSVRC classifier')


def parser():
    p = cli.ArgumentParser(
        prog='fcn-surgery', description=__doc__,
        epilog='Both commands print a per-blob report: copied, coerced (fully connected -> convolution), '
               'dropped, left at initialization. Weights are checked against the nets before Caffe loads them.')
    sub = p.add_subparsers(dest='command', required=True)

    t = sub.add_parser('transplant', help='copy weights by layer name from one net into another',
                       description='Copy every parameter of the source net into the destination layer of the same '
                                   'name (plus --suffix); fully connected weights are coerced into convolutions.')
    t.add_argument('--src-net', type=Path, required=True, help='source net prototxt')
    t.add_argument('--src-weights', type=Path, required=True, help='source caffemodel')
    t.add_argument('--dst-net', type=Path, required=True, help='destination net prototxt (a deploy net is simplest)')
    cli.add_output(t, '--out', required=True, help='caffemodel to write for the destination net')
    t.add_argument('--suffix', default='', help="appended to each source layer name, e.g. 'color' or 'hha'")
    t.add_argument('--interp', action='store_true', help='fill every Deconvolution with bilinear kernels')
    t.add_argument('--strict', action='store_true',
                   help='fail on a layer whose size differs instead of leaving it at initialization')
    t.set_defaults(run=run_transplant)

    c = sub.add_parser('convert', help='ILSVRC classifier weights -> FCN trunk weights (e.g. vgg16-fcn.caffemodel)',
                       description='Convolutionalize a published ILSVRC classifier: its conv layers are copied and '
                                   'fc6/fc7 become convolutions with the same weights. Only the trunk is written.')
    targets = conversions()
    c.add_argument('model', choices=sorted(targets), help='which classifier: ' + ', '.join(
        f'{trunk} ({fcn.classifier} -> {fcn.name})' for trunk, fcn in targets.items()))
    c.add_argument('--weights', type=Path, help='the published ILSVRC caffemodel (default: the one `fcn-weights fetch '
                   'ilsvrc-TRUNK` cached)')
    cli.add_output(c, '--out', required=True, help='caffemodel to write, e.g. vgg16-fcn.caffemodel')
    cli.add_width(c, what='both nets (reduced widths for tests)')
    c.set_defaults(run=run_convert)

    i = sub.add_parser('init', help='seeded stand-in weights for smoke tests (not the paper\'s initialization)',
                       description='Write weights for a model\'s net without any download: a seeded trunk that '
                                   'starts by passing the image through, score layers at zero, bilinear upsampling. '
                                   'Good for smoke tests and demos; the paper starts from `convert`.')
    i.add_argument('model', type=cli.model, metavar='MODEL', help='the model, e.g. voc-fcn32s')
    i.add_argument('--random', action='store_true', required=True,
                   help='required: say that random, untrained weights are what you want')
    i.add_argument('--seed', type=cli.seed, default=0, help='random seed (default 0)')
    cli.add_output(i, '--out', required=True, help='caffemodel to write')
    cli.add_dataset(i, run=False)
    cli.add_width(i, what='the net')
    i.set_defaults(run=run_init)
    return p


@cli.tool('fcn-surgery')
def main(argv=None):
    args = parser().parse_args(argv)  # the parse kept --out apart from the nets and weights given (paths)
    args.run(args)
    return cli.OK


if __name__ == '__main__':
    sys.exit(main())

