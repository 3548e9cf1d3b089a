"""The rule in conftest.py: under make test (FCN_STRICT_SKIPS=1) a skip fails the run, except in tests marked gpu
or build_kind; the summary says which skips were allowed and which were not."""
import subprocess
import sys

import pytest

from common import ENV, REPO, TESTS

SKIPPING = '''
import pytest


@pytest.mark.gpu
def test_on_a_gpu():
    pytest.skip('no CUDA device')


@pytest.mark.build_kind
def test_on_a_cuda_build():
    pytest.skip('this pycaffe is a CPU-only build')


def test_that_passes():
    pass
'''
MISSING = '''

def test_that_needs_a_part():
    pytest.importorskip('a_part_that_is_not_installed')
'''


def run_pytest(folder, strict):
    env = {**ENV, 'PYTHONPATH': f'{REPO}:{TESTS}', 'FCN_STRICT_SKIPS': '1' if strict else '0'}
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'conftest', '-p', 'no:cacheprovider',
                           '-c', str(REPO / 'setup.cfg'), '--rootdir', str(folder), str(folder)],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=120)


@pytest.mark.parametrize('strict', [True, False])
def test_a_skip_outside_gpu_and_build_kind_fails_make_test(tmp_path, strict):
    (tmp_path / 'test_parts.py').write_text(SKIPPING + MISSING)
    result = run_pytest(tmp_path, strict)
    assert result.returncode == (1 if strict else 0), result.stdout[-2000:]
    assert 'skips allowed: 1 gpu, 1 build_kind' in result.stdout
    verdict = 'fail this run' if strict else 'would fail make test'
    assert f'1 skips {verdict}' in result.stdout and 'test_that_needs_a_part' in result.stdout


def test_allowed_skips_pass_make_test(tmp_path):
    (tmp_path / 'test_parts.py').write_text(SKIPPING)
    result = run_pytest(tmp_path, strict=True)
    assert result.returncode == 0, result.stdout[-2000:]
    assert 'skips allowed: 1 gpu, 1 build_kind' in result.stdout and 'fail this run' not in result.stdout
