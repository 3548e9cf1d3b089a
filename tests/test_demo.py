"""`make demo` (python -m solvers.demo) end to end, at a token size: every stage runs and every output appears.

The full-size demo (its time and final mean IU) is measured by running `make demo`, not here.
"""
import json
import os
import subprocess
import sys

from PIL import Image
from common import REPO



def test_demo_runs_every_stage_and_writes_its_outputs(tmp_path):
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    result = subprocess.run([sys.executable, '-m', 'solvers.demo', '--out', str(tmp_path), '--width', '0.0625',
                             '--count', '8', '--rounds', '1', '1', '1', '--steps', '3'],
                            capture_output=True, text=True, env=env, cwd='/', timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ('voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s'):
        assert f'{stage}: round 1/1 iter 3: score: loss' in result.stdout
        assert (tmp_path / stage / 'train_iter_3.caffemodel').is_file()
    assert 'FCN-8s on the held-out synthetic seg11valid split' in result.stdout
    rows = [json.loads(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert [r['stage'] for r in rows] == ['voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s']
    scores = json.loads((tmp_path / 'scores.json').read_text())
    assert set(scores) >= {'overall_acc', 'mean_acc', 'mean_iu', 'fwavacc', 'per_class_iu'}
    with Image.open(tmp_path / 'overlay.png') as overlay, Image.open(tmp_path / 'labels.png') as labels:
        assert overlay.mode == 'RGB' and labels.mode == 'P'
        # image | ground truth | prediction, enlarged: three tiles at least as large as the label map
        assert overlay.width >= 3 * labels.width and overlay.height >= labels.height
    with Image.open(tmp_path / 'learning_curve.png') as curve:
        assert curve.format == 'PNG'


def test_demo_help():
    result = subprocess.run([sys.executable, '-m', 'solvers.demo', '--help'], capture_output=True, text=True,
                            env={**os.environ, 'PYTHONPATH': str(REPO)}, timeout=120)
    assert result.returncode == 0 and '--rounds' in result.stdout and 'synthetic' in result.stdout
