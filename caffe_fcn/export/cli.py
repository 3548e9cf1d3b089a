"""Export a trained FCN to ONNX or PyTorch: `fcn-export MODEL --weights W --format onnx|torch --out F`.

The deploy net is rebuilt from its Caffe graph, crop offsets included, so any input size gives the exact output
size: ONNX (opset 17) with dynamic batch, height and width, or a self-contained PyTorch module file (it imports
only torch) with its state_dict beside it (F.py and F.pt). Before anything is written the export runs beside
Caffe on random inputs at two sizes, one of them odd (and on --image), and fails, leaving no file, when the
scores differ by more than 1e-4 relative or the predicted classes of fewer than 99.9% of the pixels agree.
"""
import argparse
import importlib.util
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from caffe_fcn import cli

FORMATS = ('onnx', 'torch')
DEFAULT_SIZES = ((256, 320), (191, 253))  # height x width; the second odd in both


def size(text):
    """HxW, e.g. 191x253."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'a size is HEIGHTxWIDTH such as 191x253, got {text!r}') from None
    if not (0 < h <= 4096 and 0 < w <= 4096):
        raise argparse.ArgumentTypeError(f'a check size is 1 to 4096 pixels a side, got {text!r}')
    return h, w


def parse_args(argv):
    ap = cli.ArgumentParser(prog='fcn-export', description=__doc__.split('\n\n')[0] + ' ' +
                                 __doc__.split('\n\n')[1].replace('\n', ' '))
    cli.add_model(ap)
    ap.add_argument('--weights', type=Path, help='trained .caffemodel (default: the published weights of MODEL, '
                    'once `fcn-weights fetch MODEL` has cached them)')
    cli.add_dataset(ap)
    ap.add_argument('--format', choices=FORMATS, default='onnx', help='onnx (default): an .onnx model for '
                    'onnxruntime and other runtimes; torch: a module file plus its state_dict')
    cli.add_output(ap, '--out', help='the file to write (default: MODEL.onnx, or MODEL_NAME.py and '
                    'MODEL_NAME.pt for torch, in the current folder)')
    ap.add_argument('--image', type=Path, help='also check on this image (models with one image input)')
    ap.add_argument('--sizes', type=size, nargs=2, default=DEFAULT_SIZES, metavar='HxW',
                    help='the two random check inputs\' sizes (default 256x320 191x253)')
    ap.add_argument('--seed', type=cli.seed, default=0, help='seed of the random check inputs (default 0)')
    cli.add_width(ap, what='the net the weights were trained for')
    return ap.parse_args(argv)


def default_out(model, fmt):
    from caffe_fcn.export.graph import identifier

    return Path(f'{model.name}.onnx' if fmt == 'onnx' else f'{identifier(model.name)}.py')


def shadows(module_file):
    """Whether a module file of this name would hide an installed module (torch.py hides torch); an earlier
    export to the same file does not count."""
    spec = importlib.util.find_spec(module_file.with_suffix('').name)
    return spec is not None and (spec.origin is None or
                                 Path(spec.origin).resolve() != module_file.with_suffix('.py').resolve())


def artifact_names(out, fmt):
    """The files an export writes: F.onnx, or F.py and F.pt."""
    return [out] if fmt == 'onnx' else [out.with_suffix('.py'), out.with_suffix('.pt')]


def require(fmt):
    """Import what the format needs, or say how to install it."""
    needed = ['onnx', 'onnxruntime'] if fmt == 'onnx' else ['torch']
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise cli.Failure(f'--format {fmt} needs {" and ".join(needed)}, which are not installed: '
                              "pip install -e '.[export]' (make test installs them)") from None


def describe(model, weights, width, module=None):
    """The export's docstring: what the model is, where its weights came from, what it takes and gives."""
    from surgery.published import digest

    means = model.data.means
    inputs = '\n'.join(f'  {top}: {modality}, {"BGR " if modality == "color" else ""}minus the mean '
                       f'{means[modality]}{" (log depth in mm)" if modality == "depth" else ""}'
                       for top, modality in zip(model.inputs, model.modalities, strict=True))
    outputs = '\n'.join(f'  {t.score}: N x {t.classes} x H x W class scores ({", ".join(t.names[:3])}, ...)'
                        for t in model.tasks)
    text = (f'{model.name}: FCN-{model.stride}s ({model.trunk}) on {model.data.title}, exported from Caffe by '
            f'fcn-export.\n\nWeights: {Path(weights).name} (sha256 {digest(weights, "sha256")[:16]}...)'
            f'{f", width {width:g}" if width != 1 else ""}.\nInputs, N x C x H x W float32 of any height and width:'
            f'\n{inputs}\nOutputs, the inputs\' height and width:\n{outputs}\n')
    if module:
        call = ', '.join(f'{module}.preprocess(image_{top}, {top!r})' if len(model.inputs) > 1
                         else f'{module}.preprocess(rgb)' for top in model.inputs)
        text += (f'\n    import {module}\n    net = {module}.load()  # the weights: {module}.pt beside this file\n'
                 f'    labels = net({call}).argmax(1)  # CLASSES names them\n')
    return text


def check_cases(model, proto, args):
    """(label, {input: 1 x C x H x W}) for each check: random inputs at the two sizes, and --image."""
    from caffe_fcn.export.check import random_inputs

    cases = [(f'random {h}x{w}', random_inputs(model.inputs, h, w, args.seed + i))
             for i, (h, w) in enumerate(args.sizes)]
    if args.image:
        from caffe_fcn.datalayers.datasets import preprocess
        from solvers.deploy import check_fits, read_image

        rgb = read_image(args.image)
        check_fits(proto, rgb, args.image)
        cases.append((f'{args.image.name} {rgb.shape[0]}x{rgb.shape[1]}', {'data': preprocess(rgb, model.mean)[None]}))
    return cases


def write(fmt, layers, weights, net, folder, out, doc, model):
    """Write the export's files into `folder` under their final names; return a function that runs them, loaded
    from those files as a user would load them."""
    from caffe_fcn.export import check

    if fmt == 'onnx':
        import onnx

        from caffe_fcn.export.onnx_graph import model_proto
        channels = {blob: net.blobs[blob].data.shape[1] for blob in net.outputs}
        path = folder / out.name
        onnx.save(model_proto(layers, weights, channels, doc), path)
        return check.onnx_runner(path)
    import torch

    from caffe_fcn.export import torch_source
    module, state = folder / out.with_suffix('.py').name, folder / out.with_suffix('.pt').name
    classes = {t.score: t.names for t in model.tasks}
    means = dict(zip(model.inputs, ((m, model.data.means[m]) for m in model.modalities), strict=True))
    module.write_text(torch_source.source(layers, {n: [list(a.shape) for a in w] for n, w in weights.items()},
                                          model.name, doc, means, classes))
    buffer = io.BytesIO()  # torch.save fails on a full disk with a RuntimeError of its zip writer: write it here
    torch.save(torch_source.state_dict(layers, weights), buffer)
    state.write_bytes(buffer.getvalue())
    return check.torch_runner(module, state, torch_source.class_name(model.name))


@cli.tool('fcn-export')
def main(argv=None):
    args = parse_args(argv)
    from caffe_fcn.datalayers.resolve import resolve_model

    model, fmt = resolve_model(args), args.format
    out = args.out or default_out(model, fmt)
    if fmt == 'torch' and not out.with_suffix('').name.isidentifier():
        raise cli.BadInput(f'--out {out}: a module is imported by its file name, which must be a Python identifier '
                           f'(letters, digits, _), e.g. {default_out(model, fmt)}')
    if fmt == 'torch' and shadows(out):
        raise cli.BadInput(f'--out {out}: a module named {out.with_suffix("").name} would shadow the installed one '
                           f'of that name wherever it is imported; choose another name, e.g. {default_out(model, fmt)}')
    if args.image and list(model.inputs) != ['data']:
        raise cli.BadInput(f'--image: {model.name} takes {" and ".join(model.modalities)} images; its export is '
                           'checked on random inputs only')
    if args.image:
        from solvers.deploy import read_image
        read_image(args.image, decode=False)
    require(fmt)
    from solvers.deploy import load_deploy_net
    from surgery.published import published_weights

    weights_path = published_weights(model, args.weights)
    cli.check_outputs(args, writes={'out': artifact_names(out, fmt)}, inputs=[weights_path])
    net, proto = load_deploy_net(model, weights_path, args.width)
    for path in checked_export(model, fmt, net, proto, weights_path, args.width, out, check_cases(model, proto, args)):
        print(f'wrote {path} ({path.stat().st_size / 2 ** 20:.1f} MB)')
    return cli.OK


def checked_export(model, fmt, net, proto, weights_path, width, out, cases, echo=print):
    """Write the export of `net` (the model's deploy net with its weights) to `out` once it matches Caffe on
    `cases`; a Failure, leaving nothing, where it does not. Returns the written paths."""
    from caffe_fcn.export import check
    from caffe_fcn.export.graph import graph

    layers = graph(proto)
    weights = {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}
    module = out.with_suffix('').name if fmt == 'torch' else None
    doc = describe(model, weights_path, width, module)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix='.fcn-export-', dir=out.parent))
    try:
        try:
            run = write(fmt, layers, weights, net, folder, out, doc, model)
        except OSError as err:
            raise cli.Failure(f'cannot write the {fmt} export into {out.parent}: {err.strerror or err}; nothing was '
                              'written and what was there is kept') from None
        print(f'{model.name}: {fmt} written; checking it against Caffe on {len(cases)} inputs', file=sys.stderr)
        rows = check.check(net, run, cases)
        echo(check.report(rows))
        failed = [r for r in rows if not r.passed]
        if failed:
            worst = max(failed, key=lambda r: r.relative_error)
            raise cli.Failure(f'the {fmt} export of {model.name} does not match Caffe ({worst.input}, '
                              f'{worst.output}: relative error {worst.relative_error:.2e}, argmax agrees on '
                              f'{100 * worst.agreement:.3f}%; limits {check.MAX_RELATIVE_ERROR:g} and '
                              f'{100 * check.MIN_AGREEMENT:g}%): nothing written')
        written = artifact_names(out, fmt)
        for path in written:
            os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return written


if __name__ == '__main__':
    sys.exit(main())
