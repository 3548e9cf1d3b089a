"""fcn-netgen: write a model's nets, deploy.prototxt and solver.prototxt; list models; show a net's geometry."""
import argparse
import ast
import os
import sys
from fractions import Fraction
from pathlib import Path

from fcn.cli import tool

EPILOG = """examples:
  fcn-netgen --list
  fcn-netgen voc-fcn8s                      write voc-fcn8s/{train,val,deploy,solver}.prototxt
  fcn-netgen --all                          every model (what `make nets` runs)
  fcn-netgen voc-fcn32s --out /tmp/tiny --width 1/16 --data sbdd_dir=/tmp/synth/sbdd/dataset
  fcn-netgen --info voc-fcn32s              per layer stride, receptive field, crop; Table 1's totals
  fcn-netgen --check                        exit 1 when a committed model folder is stale
"""


def width_type(text):
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f'width must be a number or fraction such as 0.25 or 1/16, got {text!r}') from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'width must be in (0, 1], got {text!r}')
    return value


def data_override(text):
    """KEY=VALUE, VALUE a Python literal (else a string)."""
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'--data takes KEY=VALUE, e.g. sbdd_dir=/tmp/synth/sbdd/dataset; got {text!r}')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def parser():
    p = argparse.ArgumentParser(prog='fcn-netgen', description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('models', nargs='*', metavar='MODEL', help='model(s) to write (see --list)')
    action = p.add_mutually_exclusive_group()
    action.add_argument('--list', action='store_true', help='list the models and exit')
    action.add_argument('--all', action='store_true', help='write every model into its folder')
    action.add_argument('--info', action='store_true',
                        help="print MODEL's per-layer output stride, receptive field and crop offset, then totals")
    action.add_argument('--check', action='store_true',
                        help='compare the files in the model folders with what the generator writes now')
    p.add_argument('--out', type=Path, help="output folder (default: the model's folder at the repo top level)")
    p.add_argument('--width', type=width_type, default=1.0,
                   help='channel width factor, e.g. 1/16 for a fast reduced-width variant (default 1)')
    p.add_argument('--data', type=data_override, action='append', default=[], metavar='KEY=VALUE',
                   help='data layer param_str override, repeatable (e.g. sbdd_dir=/tmp/synth/sbdd/dataset)')
    p.add_argument('--split', default='deploy', help='the net --info analyses (default: deploy)')
    return p


def list_models(netgen):
    print(f'{"model":<24} {"dataset":<14} {"trunk":<10} {"stride":>6}  {"init from":<24} files')
    for m in netgen.MODELS.values():
        init = m.init_from or (m.classifier if m.splits else '-')
        print(f'{m.name:<24} {m.dataset:<14} {m.trunk:<10} {m.stride or "-":>6}  {init:<24} {" ".join(m.files)}')


def check(netgen, names):
    """Names of the stale or missing files."""
    stale = []
    for name in names:
        for filename, content in netgen.generate(name).items():
            path = netgen.REPO / name / filename
            if not path.exists() or path.read_text() != content:
                stale.append(str(path.relative_to(netgen.REPO)))
    return stale


@tool('fcn-netgen')
def main(argv=None):
    args = parser().parse_args(argv)
    os.environ.setdefault('GLOG_minloglevel', '2')  # before Caffe is first imported: keep its log quiet
    import netgen
    from netgen import geometry
    from tqdm import tqdm

    unknown = [m for m in args.models if m not in netgen.MODELS]
    if unknown:
        print(f'fcn-netgen: error: unknown model(s) {", ".join(unknown)}; `fcn-netgen --list` shows the models',
              file=sys.stderr)
        return 2
    if args.list:
        list_models(netgen)
        return 0
    names = list(netgen.MODELS) if args.all or (args.check and not args.models) else args.models
    if not names:
        print('fcn-netgen: error: name a MODEL, or use --all / --list (see --help)', file=sys.stderr)
        return 2
    try:
        if args.info:
            for name in names:
                print(f'# {name} ({args.split})')
                print(geometry.report(netgen.net(name, args.split, args.width)))
            return 0
        if args.check:
            stale = check(netgen, names)
            for path in stale:
                print(f'stale: {path}')
            if stale:
                print('fcn-netgen: regenerate with `make nets` (or fcn-netgen MODEL)', file=sys.stderr)
            return 1 if stale else 0
        if args.out is not None and len(names) > 1:
            print('fcn-netgen: error: --out takes one model; it would mix the files of several', file=sys.stderr)
            return 2
        for name in tqdm(names, desc='models', disable=len(names) < 2):
            for path in netgen.write(name, args.out, args.width, dict(args.data) or None):
                tqdm.write(str(path))
    except (ValueError, OSError) as e:
        print(f'fcn-netgen: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
