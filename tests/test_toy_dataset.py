"""Adding a dataset takes one file: tests/toy/toy_dataset.py declares it and a model, reads it and synthesizes it;
fcn-train then trains that model two steps with nothing else changed."""
import json
import os
import sys
from pathlib import Path

from common import ENV, checked, child, save_stand_in

TOY = Path(__file__).resolve().parent / 'toy'


def import_toy_dataset():
    """Import tests/toy/toy_dataset.py, whose declarations join the registry: its folder goes on the path, after the
    project's, of this process and (PYTHONPATH) of its children."""
    os.environ['PYTHONPATH'] = os.pathsep.join([os.environ['PYTHONPATH'], str(TOY)])
    sys.path.append(str(TOY))
    import toy_dataset
    return toy_dataset


def print_toy_data(root):
    """The toy dataset synthesized under `root`; prints where."""
    print(import_toy_dataset().synthesize(root))


def train_the_toy_model(out):
    """Synthetic toy data and a stand-in trunk for toy-fcn32s in `out`; then what the fcn-train console script runs,
    two steps into OUT/run, its status the exit status."""
    toy_dataset = import_toy_dataset()
    from solvers.driver import train_command  # what the fcn-train console script runs

    root = toy_dataset.synthesize(out + '/data')
    save_stand_in('toy-fcn32s', 1 / 16, out + '/start.caffemodel')  # a stand-in for the converted ILSVRC trunk
    sys.exit(train_command(['toy-fcn32s', '--weights', out + '/start.caffemodel', '--width', '1/16', '--data-root',
                            str(root), '--steps', '2', '--out', out + '/run', '--seed', '0']))


def test_a_dataset_added_in_one_file_trains_through_fcn_train(tmp_path):
    checked(child(train_the_toy_model, tmp_path, env=ENV, timeout=300))
    run = tmp_path / 'run'
    assert (run / 'train_iter_2.caffemodel').is_file() and (run / 'train_iter_2.solverstate').is_file()
    assert (run / 'val.png').is_file() and (run / 'best.caffemodel').is_file()  # the round's sheet, the best
    (row,) = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
    assert row['iter'] == 2 and row['round'] == 1  # the declared schedule: 1 round, here of 2 steps
    assert list(row['scores']['score']['per_class_iu']) == ['background', 'square']  # the declared class names
    header = (run / 'log.csv').read_text().splitlines()[0].split(',')
    assert header[:3] == ['stage', 'round', 'iter'] and 'score_mean_iu' in header
    net = (run / 'run' / 'train.prototxt').read_text()
    assert 'module: "caffe_fcn.datalayers.layers"' in net and "\\'dataset\\': \\'toy\\'" in net  # the generic layer
    assert str(tmp_path / "data" / "toy") in net  # the data root flowed in
