"""fcn-netgen: write a model's nets, deploy.prototxt and solver.prototxt; list models; show a net's geometry."""
import argparse
import ast
import sys

from caffe_fcn import cli, registry

EPILOG = """examples:
  fcn-netgen --list
  fcn-netgen voc-fcn8s                      write voc-fcn8s/{train,val,deploy,solver}.prototxt
  fcn-netgen --all                          every model (what `make nets` runs)
  fcn-netgen voc-fcn32s --out /tmp/tiny --width 1/16 --data sbdd_dir=/tmp/synth/sbdd/dataset
  fcn-netgen --info voc-fcn32s              per layer stride, receptive field, crop; Table 1's totals
  fcn-netgen --check                        exit 1 when a committed model folder is stale
  fcn-netgen --table1                       CVPR Table 1 from the nets, forward times measured here
"""


def data_override(text):
    """KEY=VALUE, VALUE a Python literal (else a string)."""
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'--data takes KEY=VALUE, e.g. sbdd_dir=/tmp/synth/sbdd/dataset; got {text!r}')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def size(text):
    """N or HxW."""
    try:
        sides = [int(v) for v in text.lower().split('x')]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f'a size is N or HxW (height x width), e.g. 500 or 1024x2048; got {text!r}')
    return (sides * 2)[:2]


def memory_report(proto, h, w):
    """The peak memory of a forward pass at H x W beyond the weights, as fcn-infer plans with it."""
    from netgen.geometry import COL_TILE_MB, forward_memory, peak_memory

    activations, columns = forward_memory(proto, h, w)
    mb, cpu = 2 ** 20, peak_memory(proto, h, w)
    return (f'forward pass at {h}x{w}, beyond the weights: CPU {cpu / mb:.0f} MB '
            f'(activations {activations / mb:.0f} MB, im2col at most {COL_TILE_MB} MB in the default build), '
            f'GPU {peak_memory(proto, h, w, gpu=True) / mb:.0f} MB (the whole im2col buffer, '
            f'{columns / mb:.0f} MB; cuDNN workspaces not counted)')


def parser():
    p = cli.ArgumentParser(prog='fcn-netgen', description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('models', nargs='*', type=cli.model, metavar='MODEL', help='model(s) to write (see --list)')
    action = p.add_mutually_exclusive_group()
    action.add_argument('--list', action='store_true', help='list the models and exit')
    action.add_argument('--all', action='store_true', help='write every model into its folder')
    action.add_argument('--info', action='store_true',
                        help="print MODEL's per-layer output stride, receptive field and crop offset, then totals")
    action.add_argument('--check', action='store_true',
                        help='compare the files in the model folders with what the generator writes now')
    action.add_argument('--table1', action='store_true',
                        help="CVPR 2015 Table 1 computed from the nets, with a forward pass timed here beside the "
                             "paper's K40c times and mean IU")
    cli.add_output(p, '--out', folder=True, help="output folder (default: the model's folder at the repo top level)")
    cli.add_dataset(p, run=False)
    cli.add_width(p)
    p.add_argument('--data', type=data_override, action='append', default=[], metavar='KEY=VALUE',
                   help='data layer param_str override, repeatable (e.g. sbdd_dir=/tmp/synth/sbdd/dataset)')
    p.add_argument('--split', default='deploy', help='the net --info analyses (default: deploy)')
    p.add_argument('--size', type=size, help='--table1: the square input it times (N, default 500); --info: also '
                   'the peak memory of a forward pass at HxW (or N x N), on the CPU and the GPU')
    p.add_argument('--repeat', type=int, default=3, help='--table1: timed forward passes, median (default 3)')
    return p


def list_models():
    print(f'{"model":<24} {"dataset":<14} {"trunk":<10} {"stride":>6}  {"init from":<24} files')
    for m in registry.MODELS.values():
        init = m.init_from or (m.classifier if m.splits else '-')
        print(f'{m.name:<24} {m.dataset:<14} {m.trunk:<10} {m.stride or "-":>6}  {init:<24} {" ".join(m.files)}')


def check(netgen, models):
    """Names of the stale or missing files."""
    stale = []
    for model in models:
        for filename, content in netgen.generate(model).items():
            path = registry.REPO / model.name / filename
            if not path.exists() or path.read_text() != content:
                stale.append(str(path.relative_to(registry.REPO)))
    return stale


@cli.tool('fcn-netgen')
def main(argv=None):
    args = parser().parse_args(argv)
    if args.list:
        list_models()
        return cli.OK
    if args.table1:
        args.size = args.size or (500, 500)
        if args.size[0] != args.size[1]:
            raise cli.BadInput('--table1 times a square input: --size N')
        args.size = args.size[0]
        if args.size < 32 or args.repeat < 1:
            raise cli.BadInput('--size must be at least 32 and --repeat at least 1')
        from netgen import table1
        from surgery import instantiate

        print(table1.render(table1.rows(instantiate, args.size, args.repeat), args.size))
        return cli.OK
    models = list(registry.MODELS.values()) if args.all or (args.check and not args.models) else args.models
    if not models:
        raise cli.BadInput('name a MODEL, or use --all / --list (see --help)')
    if args.out is not None and len(models) > 1:
        raise cli.BadInput('--out takes one model; it would mix the files of several')
    if args.dataset:
        if args.out is None and not (args.info or args.check):
            raise cli.BadInput('--dataset: pass --out DIR (the model folders hold the reference\'s nets)')
        data = registry.dataset(args.dataset)
        if data.home and not data.builtin and registry.folder_stats(data.name) is None:
            raise cli.BadInput(f'--dataset {args.dataset}: its dataset.json (the mean the nets subtract) is missing: '
                               f'run `fcn-data stats {args.dataset}` first')
        models = [registry.for_dataset(model, data) for model in models]
    import netgen
    from netgen import geometry
    from tqdm import tqdm

    if args.info:
        for model in models:
            print(f'# {model.name} ({args.split})')
            print(geometry.report(netgen.net(model, args.split, args.width),
                                  netgen.net(model, 'deploy', args.width)))  # the same weights, no data layer
            if args.size:
                print(memory_report(netgen.net(model, 'deploy', args.width), *args.size))
        return cli.OK
    if args.check:
        stale = check(netgen, models)
        for path in stale:
            print(f'stale: {path}')
        if stale:
            print('fcn-netgen: regenerate with `make nets` (or fcn-netgen MODEL)', file=sys.stderr)
        return cli.FAILURE if stale else cli.OK
    for model in tqdm(models, desc='models', disable=len(models) < 2):
        if args.data:
            check_data_layers(netgen, model, args.width, dict(args.data))
        for path in netgen.write(model, args.out, args.width, dict(args.data) or None):
            tqdm.write(str(path))
    return cli.OK


def check_data_layers(netgen, model, width, overrides):
    """Every data layer's param_str, with the --data overrides, checked as the layer's setup will check it, before
    anything is written (mean=(1,2) would make a net that fails when it is run)."""
    from caffe_fcn.datalayers.layers import checked_params
    from caffe_fcn.datalayers.params import ParamError

    for split in model.splits:
        for layer in netgen.net(model, split, width, overrides).layer:
            if layer.type == 'Python' and not layer.bottom:
                try:
                    checked_params(layer.python_param.layer, layer.python_param.param_str)
                except ParamError as err:
                    raise cli.BadInput(f'--data: {err}') from None


if __name__ == '__main__':
    sys.exit(main())
