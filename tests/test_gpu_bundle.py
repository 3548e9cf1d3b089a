"""The GPU machine's two calls and their builder (docs/GPU.md), as far as they run without a GPU or a network:
call 1 (scripts/gpu_headers.sh) on this Python, the target it describes and the Makefile.config built for it,
make gpu-bundle's and the suite's refusals, the suite's last line, and the ldd check on a build that is not
relocatable. make gpu-rehearsal runs the rest (the build, the install, every step in CPU mode)."""
import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile

import pytest

from common import REPO

SCRIPTS = REPO / 'scripts'


def load(name):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_caffe = load('build_caffe')
gpu_suite = load('gpu_suite')
target, config = build_caffe.target, build_caffe.config
SetupError = build_caffe.SetupError


def tool(*args, env=None, cwd=REPO):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={'PATH': '/usr/bin:/bin', **(env or {})})


@pytest.fixture(scope='module')
def headers(tmp_path_factory):
    """Call 1 on this machine: the tarball unpacked, and machine.json."""
    out = tmp_path_factory.mktemp('call1')
    done = tool('bash', SCRIPTS / 'gpu_headers.sh', env={'OUT': out, 'PYTHON': sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith('gpu-headers: ')
    unpacked = tmp_path_factory.mktemp('headers')
    with tarfile.open(out / 'python-headers.tar.gz') as tar:
        tar.extractall(unpacked)
    return unpacked / f'python{sys.version_info.major}.{sys.version_info.minor}', json.loads(
        (out / 'machine.json').read_text())


def test_call_1_brings_headers_that_compile_and_name_their_python(headers):
    include, machine = headers
    assert target.header_version(include) == (*sys.version_info[:2], sys.version.split()[0])
    target.check_compiles((include, include.parent), 'the unpacked headers')  # Python.h and its pyconfig.h
    assert machine['python'] == sys.version.split()[0] and machine['numpy'].split('.')[0] == '2'
    assert set(machine['nvidia_libraries']) == {'libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13',
                                                'libcurand.so.10'}


def test_headers_missing_or_broken_are_refused_with_where_to_get_them(tmp_path):
    with pytest.raises(SetupError, match='gpu_headers.sh'):
        target.header_version(tmp_path)
    (tmp_path / 'Python.h').write_text('#error not really Python\n')
    (tmp_path / 'patchlevel.h').write_text('#define PY_MAJOR_VERSION 3\n#define PY_MINOR_VERSION 12\n'
                                           '#define PY_VERSION "3.12.3"\n')
    assert target.header_version(tmp_path) == (3, 12, '3.12.3')
    with pytest.raises(SetupError, match='does not compile: .*not really Python'):
        target.check_compiles((tmp_path,), 'PY_INCLUDE')


def test_the_host_target_keeps_make_caffes_configuration():
    """make caffe's Makefile.config (so its cache key) is what it was before targets: this Python's headers and
    libpython, Debian's boost_python3XY."""
    host = target.host()
    text = config.makefile_config(None, 'open', '-O2', set())
    major, minor = sys.version_info[:2]
    assert f'PYTHON_LIBRARIES := boost_python{major}{minor} python{major}.{minor}' in text
    assert f'INCLUDE_DIRS := {sysconfig.get_paths()["include"]} ' in text
    assert host.tag == f'cp{major}{minor}' and host.identity == sys.version


def test_a_bundle_target_links_its_boost_python_and_not_libpython(tmp_path):
    other = target.Target((3, 12), (str(tmp_path / 'py'), str(tmp_path / 'numpy')), (str(tmp_path / 'boost'),),
                          'boost_python312', 2, 'Python 3.12.3 headers')
    text = config.makefile_config(None, 'open', '-O2', set(), python=other)
    assert 'PYTHON_LIBRARIES := boost_python312\n' in text
    assert f'INCLUDE_DIRS := {tmp_path / "py"} {tmp_path / "numpy"} ' in text
    assert f'LIBRARY_DIRS := {tmp_path / "boost"} ' in text and f'-Wl,-rpath,{tmp_path / "boost"}' in text
    assert other.tag == 'cp312' and text != config.makefile_config(None, 'open', '-O2', set())


def test_make_gpu_bundle_says_where_each_input_comes_from(headers, tmp_path):
    include, _ = headers
    bundle = [sys.executable, SCRIPTS / 'gpu_bundle.py', '--out', tmp_path / 'bundle']
    cases = {'gpu_headers.sh': [], 'boostorg/python at tag boost-1.74.0': ['--py-include', include],
             'holds no Python headers': ['--py-include', tmp_path, '--boost-python-src', tmp_path],
             'is not a boostorg/python tree': ['--py-include', include, '--boost-python-src', tmp_path]}
    for said, args in cases.items():
        done = tool(*bundle, *args, env={'HOME': tmp_path})
        assert done.returncode == 1 and said in done.stderr, (args, done.stderr)
        assert done.stderr.strip().startswith('error: ') and 'Traceback' not in done.stderr
    assert not (tmp_path / 'bundle').exists()


def test_the_suite_without_a_bundle_stops_in_its_last_line(tmp_path):
    done = tool('bash', SCRIPTS / 'gpu_suite.sh', '--bundle', tmp_path / 'none', env={'OUT': tmp_path / 'out'})
    last = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith('gpu-suite: 0 passed, 0 failed; stopped before the steps: no '
                                                    'bundle in'), done.stdout
    assert last in (tmp_path / 'out' / 'gpu-suite.log').read_text()
    assert tool('bash', SCRIPTS / 'gpu_suite.sh', '--budget', 'soon').returncode == 2
    assert tool('bash', SCRIPTS / 'gpu_suite.sh', '--help').stdout.startswith('usage: ')


def test_the_suites_last_line_reads_the_steps_results():
    results = {'mode': 'gpu', 'steps': {
        'pytest': {'ok': True, 'passed': 32, 'failed': 0},
        'bench': {'ok': True, 'models': {
            'voc-fcn32s': {'caffe': {'forward_ms': 40.0, 'paper_k40c_forward_ms': 210}},
            'voc-fcn8s': {'caffe': {'forward_ms': 42.25}, 'pytorch': {'forward_ms': 20.5}}}},
        'train': {'ok': True, 'ms_per_step': 95.04},
        'demo': {'ok': False, 'error': 'the demo exited 124'}}}
    assert gpu_suite.last_line(results) == ('gpu-suite: 32 passed, 0 failed; FCN-8s forward 42.2 ms (K40c 210 ms), '
                                            'train 95.0 ms/step; PyTorch fp32 20.5 ms; demo mean IU -; failed: demo')


def test_slow_convolutions_are_named_only_past_twice_pytorch():
    profile = {'caffe': [{'name': 'conv1_1', 'type': 'Convolution', 'forward_s': 0.01, 'backward_s': 0.02},
                         {'name': 'relu1_1', 'type': 'ReLU', 'forward_s': 0.5, 'backward_s': 0.5}]}
    table = {'voc-fcn8s': {'caffe': {'forward_ms': 50.0}, 'pytorch': {'forward_ms': 20.0}},
             'voc-fcn32s': {'caffe': {'forward_ms': 30.0}, 'pytorch': {'forward_ms': 20.0}}}
    slow = gpu_suite.slow_convolutions({'profile': profile}, table)
    assert slow['caffe_over_pytorch_fp32_forward'] == {'voc-fcn8s': 2.5}
    assert [r['name'] for r in slow['profile_top_convolutions']] == ['conv1_1']
    del table['voc-fcn8s']
    assert gpu_suite.slow_convolutions({'profile': profile}, table)['profile_top_convolutions'] == []


def test_the_ldd_check_finds_a_build_that_is_not_relocatable():
    """make caffe's own install links Debian's libraries in /usr/lib: outside the venv, so named."""
    done = tool(sys.executable, SCRIPTS / 'ldd_check.py')
    assert done.returncode == 1, done.stdout
    assert 'libglog.so' in done.stdout and 'resolved outside' in done.stdout.strip().splitlines()[-1]


def test_headers_are_cached_by_their_contents_not_where_they_were_unpacked(headers, tmp_path, monkeypatch):
    """The bundle's Makefile.config names the cached copy: the same headers unpacked elsewhere build from the
    same cache entry; other headers get another."""
    include, _ = headers
    monkeypatch.setattr(target, 'CACHE', tmp_path / 'cache')
    version = sys.version_info[:2]
    elsewhere = tmp_path / 'elsewhere'
    shutil.copytree(include.parent, elsewhere)
    first = target.cached_headers(include, version)
    assert target.cached_headers(elsewhere / include.name, version) == first
    target.check_compiles(first, 'the cached copy')
    (elsewhere / include.name / 'patchlevel.h').write_text('/* changed */\n', encoding='utf-8')
    assert target.cached_headers(elsewhere / include.name, version) != first
