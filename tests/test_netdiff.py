"""fcn-netdiff: finds each kind of planted difference, applies defaults, --structural, exit codes."""
import pytest

import netgen
from netgen import netdiff


@pytest.fixture
def pair(tmp_path):
    """(a, b, net): a is the voc-fcn32s train net written to disk; write a mutated `net` to b."""
    a, b = tmp_path / 'a.prototxt', tmp_path / 'b.prototxt'
    a.write_text(str(netgen.net('voc-fcn32s', 'train', width=1 / 16)))

    def write_b(mutate):
        net = netgen.net('voc-fcn32s', 'train', width=1 / 16)
        mutate(net)
        b.write_text(str(net))
        return b
    return a, write_b


def layer(net, name):
    return next(layer for layer in net.layer if layer.name == name)


def run(capsys, *args):
    code = netdiff.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_identical_files_are_equal(pair, capsys):
    a, write_b = pair
    assert run(capsys, a, write_b(lambda net: None))[0] == 0


def test_changed_number(pair, capsys):
    a, write_b = pair
    b = write_b(lambda net: layer(net, 'upscore').convolution_param.stride.__setitem__(0, 16))
    code, out, _ = run(capsys, a, b)
    assert code == 1
    assert 'layer upscore: convolution_param.stride: [32] | [16]' in out


def test_renamed_layer(pair, capsys):
    a, write_b = pair
    b = write_b(lambda net: setattr(layer(net, 'conv3_1'), 'name', 'conv3_first'))
    code, out, _ = run(capsys, a, b)
    assert code == 1
    assert "layer conv3_1: name: 'conv3_1' | 'conv3_first'" in out
    assert run(capsys, a, b, '--structural')[0] == 0  # names do not matter to the graph


def test_reordered_param_str_is_equal(pair, capsys):
    a, write_b = pair

    def reorder(net):
        python = net.layer[0].python_param
        python.param_str = "{'mean': (104.00699, 116.66877, 122.67892), 'split': 'train', " \
                           "'seed': 1337, 'sbdd_dir': '../data/sbdd/dataset'}"
    b = write_b(reorder)
    assert 'mean' in b.read_text().split('sbdd_dir')[0]  # the order really is different on disk
    assert run(capsys, a, b)[0] == 0


def test_changed_param_str_value(pair, capsys):
    a, write_b = pair
    b = write_b(lambda net: setattr(net.layer[0].python_param, 'param_str', str(
        {'sbdd_dir': '../data/sbdd/dataset', 'seed': 7, 'split': 'train', 'mean': (104.00699, 116.66877, 122.67892)})))
    code, out, _ = run(capsys, a, b)
    assert code == 1 and 'python_param.param_str' in out and "'seed': 7" in out


def test_missing_layer(pair, capsys):
    a, write_b = pair

    def drop_relu(net):
        del net.layer[[x.name for x in net.layer].index('relu4_2')]
    code, out, _ = run(capsys, a, write_b(drop_relu))
    assert code == 1
    assert "layer relu4_2: layer: 'present' | 'missing'" in out
    assert out.count('\n') == 1  # the layers after it still line up


def test_explicit_default_equals_absent_field(pair, capsys):
    a, write_b = pair

    def spell_out_defaults(net):
        conv = layer(net, 'score_fr').convolution_param
        conv.stride.append(1)
        conv.bias_term = True
        conv.group = 1
    assert run(capsys, a, write_b(spell_out_defaults))[0] == 0


def test_structural_ignores_blob_names_and_data_paths_but_not_numbers(pair, capsys):
    a, write_b = pair

    def rename_everything(net):
        for each in net.layer:
            each.name = 'x_' + each.name
            each.bottom[:] = ['x_' + blob for blob in each.bottom]
            each.top[:] = ['x_' + blob for blob in each.top]
        net.layer[0].python_param.param_str = str(
            {'sbdd_dir': '/elsewhere/sbdd', 'seed': 1337, 'split': 'train', 'mean': (104.00699, 116.66877, 122.67892)})
    b = write_b(rename_everything)
    assert run(capsys, a, b)[0] == 1
    assert run(capsys, a, b, '--structural')[0] == 0

    def rewire_and_change(net):
        rename_everything(net)
        layer(net, 'x_pool3').pooling_param.kernel_size = 3
    code, out, _ = run(capsys, a, write_b(rewire_and_change), '--structural')
    assert code == 1 and 'pooling_param.kernel_size: 2 | 3' in out


def test_structural_sees_rewiring(pair, capsys):
    a, write_b = pair
    b = write_b(lambda net: layer(net, 'score').bottom.__setitem__(1, 'pool1'))  # crop onto pool1, not data
    code, out, _ = run(capsys, a, b, '--structural')
    assert code == 1 and 'bottom' in out


def test_solvers(tmp_path, capsys):
    a, b = tmp_path / 'a.prototxt', tmp_path / 'b.prototxt'
    a.write_text(str(netgen.solver('voc-fcn32s')))
    b.write_text(str(netgen.solver('voc-fcn32s', base_lr=1e-12, train_net='/somewhere/train.prototxt')))
    code, out, _ = run(capsys, a, b)
    assert code == 1 and 'solver: base_lr: 1e-10 | 1e-12' in out and 'train_net' in out
    code, out, _ = run(capsys, a, b, '--structural')
    assert code == 1 and 'train_net' not in out
    assert run(capsys, a, a)[0] == 0


def test_net_against_solver_differs(tmp_path, capsys):
    a, b = tmp_path / 'a.prototxt', tmp_path / 'b.prototxt'
    a.write_text(str(netgen.solver('voc-fcn32s')))
    b.write_text(str(netgen.net('voc-fcn32s', 'deploy', width=1 / 16)))
    code, out, _ = run(capsys, a, b)
    assert code == 1 and 'SolverParameter' in out


@pytest.mark.parametrize('content, message', [
    (None, 'cannot read'),
    ('', 'is empty'),
    ('layer { name: "x" nonsense_field: 3 }', 'not a net or solver prototxt'),
    ('layers { name: "old" type: CONVOLUTION }', 'V1'),
])
def test_unreadable_input_exits_2_with_a_message(tmp_path, capsys, content, message):
    good, bad = tmp_path / 'good.prototxt', tmp_path / 'bad.prototxt'
    good.write_text(str(netgen.solver('voc-fcn32s')))
    if content is not None:
        bad.write_text(content)
    code, out, err = run(capsys, good, bad)
    assert code == 2 and message in err and str(bad) in err
    assert run(capsys, bad, good)[0] == 2


def move_to_end(name):
    def mutate(net):
        index = [x.name for x in net.layer].index(name)
        moved = type(net.layer[index])()
        moved.CopyFrom(net.layer[index])
        del net.layer[index]
        net.layer.add().CopyFrom(moved)
        return index, len(net.layer) - 1
    return mutate


def test_a_moved_layer_is_reported_once_with_both_positions(pair, capsys):
    a, write_b = pair
    positions = []
    b = write_b(lambda net: positions.extend(move_to_end('relu4_2')(net)))
    code, out, _ = run(capsys, a, b)
    assert code == 1
    assert out.splitlines() == [f'layer relu4_2: moved (position): {positions[0]} | {positions[1]}']
    assert run(capsys, a, b, '--ignore-order')[0] == 0  # the same graph


def test_a_moved_and_changed_layer_shows_both(pair, capsys):
    a, write_b = pair

    def mutate(net):
        layer(net, 'conv4_2').convolution_param.num_output = 3
        move_to_end('conv4_2')(net)
    code, out, _ = run(capsys, a, write_b(mutate))
    assert code == 1 and 'layer conv4_2: moved (position)' in out
    assert 'layer conv4_2: convolution_param.num_output' in out
    code, out, _ = run(capsys, a, write_b(mutate), '--ignore-order')
    assert code == 1 and 'moved' not in out and 'convolution_param.num_output' in out


def test_ignore_order_and_structural_exclude_each_other(pair, capsys):
    a, write_b = pair
    with pytest.raises(SystemExit) as exit_:
        run(capsys, a, write_b(lambda net: None), '--ignore-order', '--structural')
    assert exit_.value.code == 2
