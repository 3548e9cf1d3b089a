"""fcn-netdiff: semantic diff of two prototxts (nets or solvers).

Both files are parsed with caffe_pb2; nets are compared layer by layer (layers aligned by name, or by type
with --structural), every field with its default applied, python_param.param_str as a Python literal. A layer
found in both files at different positions is reported once, as moved (--ignore-order: not at all).
Exit status: 0 equal, 1 different, 2 an input could not be read.
"""
import argparse
import ast
import difflib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from caffe_fcn import cli
from caffe_fcn.cli import BadInput, tool

# Caffe's defaults for repeated fields, which protobuf cannot declare: an empty list means [default]
REPEATED_DEFAULTS = {('ConvolutionParameter', 'pad'): 0, ('ConvolutionParameter', 'stride'): 1,
                     ('ConvolutionParameter', 'dilation'): 1, ('CropParameter', 'offset'): 0}
PATH_FIELDS = {'net', 'train_net', 'test_net', 'snapshot_prefix'}  # solver fields naming files


MAX_PROTOTXT = 64 << 20  # the largest reference net's text is under 100 KB


class UnreadableError(BadInput):
    """An input that is not a readable net or solver prototxt (exit status 2, through the command-line kit)."""


@dataclass
class Difference:
    where: str  # 'layer conv1_1', 'net', 'solver'
    field: str
    a: object
    b: object

    def __str__(self):
        return f'{self.where}: {self.field}: {show(self.a)} | {show(self.b)}'


def show(value):
    """repr, with floats at float32 precision (most Caffe fields are float32: 1e-10, not 1.0000000133e-10)."""
    if isinstance(value, float):
        return format(value, '.7g')
    if isinstance(value, list):
        return '[' + ', '.join(map(show, value)) + ']'
    return repr(value)


def read(path):
    """Parse `path` as a NetParameter or, failing that, a SolverParameter."""
    path = Path(path)
    if path.exists() and not path.is_file():  # /dev/zero, a FIFO: reading would never end
        raise UnreadableError(f'{path} is not a regular file: expected a net or solver prototxt')
    if path.is_file() and path.stat().st_size > MAX_PROTOTXT:
        raise UnreadableError(f'{path} is {path.stat().st_size >> 20} MB: too large for a net or solver prototxt '
                              f'(at most {MAX_PROTOTXT >> 20} MB; a .caffemodel is not a prototxt)')
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UnreadableError(f'cannot read {path}: {e}') from e
    if not content.strip():
        raise UnreadableError(f'{path} is empty: expected a net or solver prototxt')
    from caffe.proto import caffe_pb2

    errors = []
    for message in (caffe_pb2.NetParameter(), caffe_pb2.SolverParameter()):
        try:
            text_format.Parse(content, message)
        except text_format.ParseError as e:
            errors.append(f'as {type(message).__name__}: {e}')
            continue
        if isinstance(message, caffe_pb2.NetParameter) and message.layers:
            raise UnreadableError(f'{path} uses the V1 "layers" format; upgrade it with Caffe\'s '
                                  'upgrade_net_proto_text tool first')
        return message
    raise UnreadableError(f'{path} is not a net or solver prototxt ({"; ".join(errors)})')


def literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def is_path(key, value):
    return isinstance(value, str) and (key.endswith(('_dir', '_path', '_file')) or '/' in value)


def param_str_value(text, structural):
    value = literal(text)
    if structural and isinstance(value, dict):  # data paths are where the data is, not what the net is
        return {k: ('<path>' if is_path(str(k), v) else v) for k, v in value.items()}
    return value


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30)
    return a == b


def compare_messages(a, b, where, prefix='', structural=False, skip=()):
    """Differences between two messages of one type, field by field, with defaults applied."""
    differences = []
    for field in a.DESCRIPTOR.fields:
        name = field.name
        if name in skip:
            continue
        path = prefix + name
        if field.message_type is not None and not field.is_repeated:
            if a.HasField(name) or b.HasField(name):
                differences += compare_messages(getattr(a, name), getattr(b, name), where, path + '.', structural)
            continue
        va, vb = getattr(a, name), getattr(b, name)
        if field.is_repeated and field.message_type is not None:
            for i, (ma, mb) in enumerate(zip(va, vb, strict=False)):
                differences += compare_messages(ma, mb, where, f'{path}[{i}].', structural)
            if len(va) != len(vb):
                differences.append(Difference(where, f'{path} (count)', len(va), len(vb)))
            continue
        if field.is_repeated:
            default = REPEATED_DEFAULTS.get((a.DESCRIPTOR.name, name))
            va, vb = (list(v) or ([] if default is None else [default]) for v in (va, vb))
            if len(va) != len(vb) or not all(same(x, y) for x, y in zip(va, vb, strict=True)):
                differences.append(Difference(where, path, va, vb))
            continue
        if name == 'param_str':
            va, vb = param_str_value(va, structural), param_str_value(vb, structural)
        if not same(va, vb):
            differences.append(Difference(where, path, va, vb))
    return differences


def canonical_blobs(net):
    """Rename every blob to its order of first appearance, so that structural diffs ignore blob names."""
    names = {}
    canonical = type(net)()
    canonical.CopyFrom(net)
    for layer in canonical.layer:
        for blobs in (layer.bottom, layer.top):
            for i, blob in enumerate(blobs):
                blobs[i] = names.setdefault(blob, f'blob{len(names)}')
        layer.name = ''
    return canonical


def align(a, b, structural):
    """(pairs of layer indices to compare, indices only in a, indices only in b): layers aligned in order by
    name (by type with --structural); a layer that changed name in place pairs with its counterpart."""
    keys = [[layer.type if structural else layer.name for layer in net.layer] for net in (a, b)]
    matcher = difflib.SequenceMatcher(a=keys[0], b=keys[1], autojunk=False)
    pairs, only_a, only_b = [], [], []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        left, right = list(range(a0, a1)), list(range(b0, b1))
        if op == 'replace' and not structural:  # a name found elsewhere in the other file moved, not renamed
            left = [i for i in left if keys[0][i] not in keys[1]]
            right = [j for j in right if keys[1][j] not in keys[0]]
            only_a += sorted(set(range(a0, a1)) - set(left))
            only_b += sorted(set(range(b0, b1)) - set(right))
        paired = list(zip(left, right, strict=False)) if op in ('equal', 'replace') else []
        pairs += paired
        only_a += left[len(paired):]
        only_b += right[len(paired):]
    return pairs, sorted(only_a), sorted(only_b)


def compare_nets(a, b, structural=False, ignore_order=False):
    if structural:
        a, b = canonical_blobs(a), canonical_blobs(b)
    differences = compare_messages(a, b, 'net', skip=('layer', 'name') if structural else ('layer',))
    pairs, only_a, only_b = align(a, b, structural)
    if not structural:  # a layer in both files at different places moved: reported once, then compared
        in_b = {b.layer[j].name: j for j in only_b}
        for i in [i for i in only_a if a.layer[i].name in in_b]:
            j = in_b[a.layer[i].name]
            only_a.remove(i)
            only_b.remove(j)
            pairs.append((i, j))
            if not ignore_order:
                differences.append(Difference(f'layer {a.layer[i].name}', 'moved (position)', i, j))
    for i, j in sorted(pairs):
        la, lb = a.layer[i], b.layer[j]
        where = f'layer #{i} {la.type}' if structural else f'layer {la.name}'
        differences += compare_messages(la, lb, where, structural=structural)
    differences += [Difference(f'layer {describe(a.layer[i], i, structural)}', 'layer', 'present', 'missing')
                    for i in only_a]
    differences += [Difference(f'layer {describe(b.layer[j], j, structural)}', 'layer', 'missing', 'present')
                    for j in only_b]
    return differences


def describe(layer, index, structural):
    return f'#{index} {layer.type}' if structural else layer.name


def compare_solvers(a, b, structural=False):
    return compare_messages(a, b, 'solver', structural=structural, skip=PATH_FIELDS if structural else ())


def diff(a, b, structural=False, ignore_order=False):
    """Differences between two parsed prototxts (nets or solvers)."""
    if type(a) is not type(b):
        return [Difference('file', 'kind', type(a).__name__, type(b).__name__)]
    if a.DESCRIPTOR.name == 'NetParameter':
        return compare_nets(a, b, structural, ignore_order)
    return compare_solvers(a, b, structural)


def diff_files(path_a, path_b, structural=False, ignore_order=False):
    return diff(read(path_a), read(path_b), structural, ignore_order)


@tool('fcn-netdiff')
def main(argv=None):
    parser = cli.ArgumentParser(
        prog='fcn-netdiff', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example: fcn-netdiff voc-fcn8s/train.prototxt ../shared/reference-nets/voc-fcn8s/train.prototxt')
    parser.add_argument('a', help='first prototxt (net or solver)')
    parser.add_argument('b', help='second prototxt (net or solver)')
    parser.add_argument('--structural', action='store_true',
                        help='ignore layer and blob names and data paths; compare the graph and its parameters')
    parser.add_argument('--ignore-order', action='store_true',
                        help='compare the graphs only: a layer at another position is no difference (Caffe runs '
                             'layers in file order, so by default a moved layer is one)')
    parser.add_argument('-q', '--quiet', action='store_true', help='print nothing; only the exit status')
    args = parser.parse_args(argv)
    if args.ignore_order and args.structural:
        parser.error('--ignore-order aligns layers by name, which --structural ignores: use one of them')
    differences = diff_files(args.a, args.b, args.structural, args.ignore_order)
    if not args.quiet:
        for difference in differences:
            print(difference)
        print(f'{len(differences)} difference(s)' if differences else 'equal', file=sys.stderr)
    return 1 if differences else 0


if __name__ == '__main__':
    sys.exit(main())
