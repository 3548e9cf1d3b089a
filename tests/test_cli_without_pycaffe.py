"""Before `make setup` has built pycaffe: every tool answers --help, and a command that needs Caffe says how to
get it in one line (exit 1), never a traceback. Caffe is hidden from a child interpreter (None in sys.modules
makes `import caffe` fail as it does where the package is absent): the child programs here hide it first, and this
module imports nothing of the project at its top, so that nothing has loaded Caffe before."""
import importlib
import os
import runpy
import stat
import subprocess
import sys

import pytest

from common import QUIET, REPO, child, child_command

ENTRY = {  # console script -> the module whose main it calls (a script: run as __main__)
    'fcn-netgen': 'netgen.cli', 'fcn-netdiff': 'netgen.netdiff', 'fcn-surgery': 'surgery.cli',
    'fcn-data': 'caffe_fcn.datalayers.cli', 'fcn-score': 'solvers.score', 'fcn-infer': 'solvers.infer',
    'fcn-export': 'caffe_fcn.export.cli', 'demo': 'solvers.demo', 'voc-fcn32s/solve.py': None,
}


def hide_caffe():
    """Make `import caffe` fail from here on; nothing has imported it yet."""
    assert 'caffe' not in sys.modules, 'Caffe was loaded before it could be hidden'
    sys.modules['caffe'] = None


def run_tool_without_caffe(tool, *args):
    """`tool ARGS` (a key of ENTRY) with Caffe hidden first; its main's status the exit status."""
    hide_caffe()
    sys.argv = [tool, *args]
    if ENTRY[tool] is None:
        runpy.run_path(sys.argv[0], run_name='__main__')
    else:
        sys.exit(importlib.import_module(ENTRY[tool]).main())


def import_the_hidden_caffe():
    """`import caffe` with Caffe hidden first: fails (ModuleNotFoundError)."""
    hide_caffe()
    import caffe  # noqa: F401


def without_caffe(tool, *args, cwd=REPO):
    return child(run_tool_without_caffe, tool, *args, cwd=cwd, timeout=120)


@pytest.mark.parametrize('tool', sorted(ENTRY))
def test_help_works_without_pycaffe(tool):
    result = without_caffe(tool, '--help')
    assert result.returncode == 0, result.stderr
    assert 'usage:' in result.stdout
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('tool', sorted(ENTRY))
def test_help_onto_a_full_device_is_an_error(tool):
    """argparse drops a failed write of --help; the tools' parser (cli.ArgumentParser) does not: one line, exit 1."""
    with open('/dev/full', 'w') as full:
        result = subprocess.run(child_command(run_tool_without_caffe, tool, '--help'), stdout=full,
                                stderr=subprocess.PIPE, text=True, env=QUIET, cwd=REPO, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].endswith(': error: [Errno 28] No space left on device'), result.stderr


def test_the_hidden_caffe_is_really_hidden():
    result = child(import_the_hidden_caffe)
    assert result.returncode == 1 and 'ModuleNotFoundError' in result.stderr


def commands(tmp_path):
    import numpy as np
    from PIL import Image

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
    from caffe_fcn.cli import PYCAFFE_MISSING

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
    from caffe_fcn.files import write_atomic

    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / 'scores.json', '{}')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
