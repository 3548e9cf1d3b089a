"""Before `make setup` has built pycaffe: every tool answers --help, and a command that needs Caffe says how to
get it in one line (exit 1), never a traceback. Caffe is hidden from a child interpreter (None in sys.modules
makes `import caffe` fail as it does where the package is absent)."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fcn.cli import PYCAFFE_MISSING
from fcn.files import write_atomic
from common import REPO

HIDE_CAFFE = "import sys; sys.modules['caffe'] = None; "
ENTRY = {  # console script -> how to call its main
    'fcn-netgen': 'from netgen.cli import main; sys.exit(main())',
    'fcn-netdiff': 'from netgen.netdiff import main; sys.exit(main())',
    'fcn-surgery': 'from surgery.cli import main; sys.exit(main())',
    'fcn-data': 'from datalayers.cli import main; sys.exit(main())',
    'fcn-score': 'from solvers.score import main; sys.exit(main())',
    'fcn-infer': 'from solvers.infer import main; sys.exit(main())',
    'fcn-export': 'from export.cli import main; sys.exit(main())',
    'demo': 'from solvers.demo import main; sys.exit(main())',
    'voc-fcn32s/solve.py': 'import runpy; runpy.run_path(sys.argv[0], run_name="__main__")',
}


def without_caffe(tool, *args, cwd=REPO):
    code = HIDE_CAFFE + f'sys.argv = {[tool, *map(str, args)]!r}; ' + ENTRY[tool]
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize('tool', sorted(ENTRY))
def test_help_works_without_pycaffe(tool):
    result = without_caffe(tool, '--help')
    assert result.returncode == 0, result.stderr
    assert 'usage:' in result.stdout
    assert 'Traceback' not in result.stderr


def test_the_hidden_caffe_is_really_hidden():
    result = subprocess.run([sys.executable, '-c', HIDE_CAFFE + 'import caffe'], capture_output=True, text=True)
    assert result.returncode == 1 and 'ModuleNotFoundError' in result.stderr


def commands(tmp_path):
    image = tmp_path / 'image.png'
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    reference = REPO / 'voc-fcn8s' / 'deploy.prototxt'
    weights = tmp_path / 'w.caffemodel'
    weights.write_bytes(b'\0')
    return {
        'fcn-netgen': ['voc-fcn32s', '--out', tmp_path / 'nets'],
        'fcn-netdiff': [reference, reference],
        'fcn-surgery': ['convert', 'vgg16', '--weights', weights, '--out', tmp_path / 'out.caffemodel'],
        'fcn-score': ['voc-fcn8s', '--weights', weights],
        'fcn-infer': ['voc-fcn8s', '--weights', weights, image, '--out', tmp_path / 'infer'],
        'fcn-export': ['voc-fcn8s', '--weights', weights, '--out', tmp_path / 'net.onnx'],
        'demo': ['--out', tmp_path / 'demo'],
        'voc-fcn32s/solve.py': ['--out', tmp_path / 'run', '--rounds', '1', '--steps', '1'],
    }


@pytest.mark.parametrize('tool', sorted(set(ENTRY) - {'fcn-data'}))
def test_a_command_that_needs_caffe_says_how_to_get_it(tmp_path, tool):
    if tool == 'fcn-export':  # it asks for the export extra first
        pytest.importorskip('onnxruntime', reason='the export extra is not installed')
    result = without_caffe(tool, *commands(tmp_path)[tool])
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines()[-1] == f'{tool}: error: {PYCAFFE_MISSING}'
    assert 'Traceback' not in result.stderr


def test_fcn_data_needs_no_caffe(tmp_path):
    result = without_caffe('fcn-data', 'synth', 'voc', '--out', tmp_path, '--count', '6', '--size', '32x32')
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_written_files_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / 'scores.json', '{}')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
