"""Adding a dataset takes one file: tests/toy/toy_dataset.py declares it and a model, reads it and synthesizes it;
fcn-train then trains that model two steps with nothing else changed."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from common import REPO

TOY = Path(__file__).resolve().parent / 'toy'
TRAIN = """
    import sys
    import toy_dataset  # the one new file: its declarations join the registry
    import netgen, surgery
    from solvers.driver import train_command  # what the fcn-train console script runs

    out = sys.argv[1]
    root = toy_dataset.synthesize(out + '/data')
    param = netgen.net('toy-fcn32s', 'deploy', width=1 / 16)
    net = surgery.instantiate(param)
    surgery.stand_in_trunk(net, seed=0)  # a stand-in for the converted ILSVRC trunk
    net.save(out + '/start.caffemodel')
    sys.exit(train_command(['toy-fcn32s', '--weights', out + '/start.caffemodel', '--width', '1/16', '--data-root',
                            str(root), '--steps', '2', '--out', out + '/run', '--seed', '0']))
"""


def test_a_dataset_added_in_one_file_trains_through_fcn_train(tmp_path):
    env = {**os.environ, 'PYTHONPATH': f'{REPO}:{TOY}'}
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(TRAIN), str(tmp_path)], capture_output=True,
                            text=True, env=env, cwd='/', timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / 'run'
    assert (run / 'train_iter_2.caffemodel').is_file() and (run / 'train_iter_2.solverstate').is_file()
    assert (run / 'val.png').is_file() and (run / 'best.caffemodel').is_file()  # the round's sheet, the best
    (row,) = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
    assert row['iter'] == 2 and row['round'] == 1  # the declared schedule: 1 round, here of 2 steps
    assert list(row['scores']['score']['per_class_iu']) == ['background', 'square']  # the declared class names
    header = (run / 'log.csv').read_text().splitlines()[0].split(',')
    assert header[:3] == ['stage', 'round', 'iter'] and 'score_mean_iu' in header
    net = (run / 'run' / 'train.prototxt').read_text()
    assert 'module: "datalayers.layers"' in net and "\\'dataset\\': \\'toy\\'" in net  # the generic layer
    assert str(tmp_path / "data" / "toy") in net  # the data root flowed in
