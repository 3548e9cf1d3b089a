#!/usr/bin/env python3
"""The GPU suite's steps (scripts/gpu_suite.sh makes the venv this runs in; docs/GPU.md says why and how).

In order, each with its share of --budget (time a step leaves unused goes to the next) and its own log lines:
  install  the bundle's wheels into this venv, offline; NVIDIA's libraries linked where the wheel's rpath looks
  ldd      every library of caffe/ and caffe.libs/ resolves inside the venv or to glibc
  device   pycaffe is the CUDA build and (GPU mode) GPU 0 takes it
  pytest   the tests marked gpu (--cpu: collected only: they need a device)
  bench    python -m caffe_fcn.bench --gpu 0: the five nets of the paper's Table 1 at 500 x 500, Caffe against
           PyTorch fp32 (TF32 off) and TF32 with cudnn.benchmark, peak GPU memory, Caffe's per-layer profile
  train    full-width FCN-8s at 500 x 500 on a synthetic VOC set: 200 SGD steps through fcn-train
  demo     the staged demo, 32s -> 16s -> 8s, and its final mean IU
--cpu runs the same steps on the CPU, reduced (smaller inputs, fewer steps) to fit two cores. The results go to
OUT/gpu-results.json after every step (atomically), so a run cut off keeps what it measured; the last line is
  gpu-suite: N passed, M failed; FCN-8s forward X ms (K40c 210 ms), train Y ms/step; PyTorch fp32 Z ms; demo mean IU U
"""
import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(REPO)]  # caffe_build; the project (solvers, caffe_fcn)
from caffe_build.relocate import CUDA_WHEELS, EXTERNAL_LIBS  # noqa: E402

GPU = '0'
GPU_TESTS = ['tests/test_gpu.py']  # every test marked gpu lives there
PREPARE_TIMEOUT = 300  # s, for each step before the budget's (install, ldd, device)
CUDA_SONAMES = [pattern for pattern, _, folder in EXTERNAL_LIBS if folder == CUDA_WHEELS]
# name: (share of the budget, the GPU run's settings, the CPU run's)
SETTINGS = {
    'pytest': (0.25, {}, {}),
    'bench': (0.40, {'args': []},
              {'args': ['--size', '100', '--width', '0.25', '--repeat', '1', '--warmup', '0', '--sgemm-shapes',
                        '256x256x256']}),
    'train': (0.17, {'size': '500x500', 'count': 24, 'steps': 200}, {'size': '500x500', 'count': 4, 'steps': 2}),
    'demo': (0.18, {'args': []}, {'args': ['--rounds', '1', '1', '1', '--steps', '10', '--count', '24']}),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bundle', type=Path, required=True)
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--work', type=Path, required=True, help='scratch: datasets, runs, the bench\'s files')
    ap.add_argument('--cpu', action='store_true')
    ap.add_argument('--budget', type=float, help='seconds for the steps (default 450; --cpu 2400)')
    args = ap.parse_args(argv)
    args.budget = args.budget or (2400 if args.cpu else 450)
    return args


class Suite:
    def __init__(self, args):
        self.args, self.cpu = args, args.cpu
        self.results = {'mode': 'cpu' if args.cpu else 'gpu', 'started': time.strftime('%Y-%m-%d %H:%M:%S'),
                        'budget_s': args.budget, 'steps': {}}
        self.begin = self.start = time.monotonic()
        self.spent_share = 0.0
        self.env = {**os.environ, 'PYTHONPATH': str(REPO), 'GLOG_minloglevel': '1', 'FCN_TEST_GPU': GPU}

    def save(self):
        path = self.args.out / 'gpu-results.json'
        tmp = path.with_name(path.name + '.tmp')
        tmp.write_text(json.dumps(self.results, indent=1) + '\n')
        tmp.replace(path)

    def settings(self, name):
        share, on_gpu, on_cpu = SETTINGS[name]
        return share, (on_cpu if self.cpu else on_gpu)

    def timeout(self, name):
        """What is left of the budget up to this step's end: its share plus what earlier steps left unused (the
        budget starts with the first measuring step)."""
        if name not in SETTINGS:
            return PREPARE_TIMEOUT
        if not self.spent_share:
            self.begin = time.monotonic()
        self.spent_share += self.settings(name)[0]
        return max(10.0, self.begin + self.spent_share * self.args.budget - time.monotonic())

    def command(self, cmd, timeout, cwd=REPO, env=None):
        """Run cmd with its output on ours (the log), killed with its children at the timeout; its exit status
        (124 for the timeout)."""
        print(f'[gpu-suite] $ {" ".join(map(str, cmd))}  (timeout {timeout:.0f} s)', flush=True)
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env or self.env, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f'[gpu-suite] timed out after {timeout:.0f} s', flush=True)
            return 124

    def step(self, name, function):
        start = time.monotonic()
        print(f'\n[gpu-suite] --- {name} ---', flush=True)
        try:
            found = function(self.timeout(name))
        except StepFailed as err:
            found = {'ok': False, 'error': str(err)}
        except Exception as err:  # a step's own bug must not lose the others' results
            found = {'ok': False, 'error': f'{type(err).__name__}: {err}'}
        found['seconds'] = round(time.monotonic() - start, 1)
        self.results['steps'][name] = found
        self.save()
        print(f'[gpu-suite] {name}: {"ok" if found["ok"] else "FAILED: " + found.get("error", "")} '
              f'({found["seconds"]} s)', flush=True)
        return found['ok']

    def python(self, *args):
        return [sys.executable, *args]

    def bin(self, tool):
        return Path(sys.executable).parent / tool


class StepFailed(Exception):
    pass


# --- the steps ----------------------------------------------------------------------------------------------------

def install(suite, timeout):
    """The bundle's wheels, offline and without dependencies, with the bundle's own pip; then NVIDIA's libraries
    found on the machine (its PyPI wheels, else the toolkit) and linked into site-packages/nvidia/cu13/lib, where
    the Caffe wheel's rpath looks, as it would in a venv with those wheels."""
    manifest = json.loads((suite.args.bundle / 'bundle.json').read_text())
    suite.results['bundle'] = manifest
    tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
    if manifest['tag'] != tag:
        raise StepFailed(f'the bundle is for {manifest["tag"]}, this Python is {tag}: make gpu-bundle with its '
                         'headers (scripts/gpu_headers.sh)')
    wheels = sorted(suite.args.bundle / name for name in manifest['files'])
    pip = next((w for w in wheels if w.name.startswith('pip-')), None)
    missing = [w.name for w in wheels if not w.is_file()]
    if missing or pip is None:
        raise StepFailed(f'the bundle lacks {", ".join(missing) or "pip"}')
    # Without the project on the path: pip would take the tree's *.egg-info (make setup's) for the installed project.
    alone = {k: v for k, v in suite.env.items() if k != 'PYTHONPATH'}
    status = suite.command(suite.python(str(pip / 'pip'), 'install', '--no-index', '--no-deps', '--quiet',
                                        *[w for w in wheels if w != pip]), timeout, cwd='/', env=alone)
    if status:
        raise StepFailed(f'pip install exited {status}')
    site = Path(sysconfig.get_paths()['purelib'])
    lib_dir = site / CUDA_WHEELS.removeprefix('../')
    lib_dir.mkdir(parents=True, exist_ok=True)
    machine_sites = [line.strip() for line in (site / '_machine_site.pth').read_text().splitlines() if line.strip()]
    linked = {}
    for soname in CUDA_SONAMES:
        candidates = [p for s in machine_sites for p in sorted(glob.glob(f'{s}/nvidia/**/{soname}', recursive=True))]
        candidates += sorted(glob.glob(f'/usr/local/cuda/lib*/{soname}'))
        if not candidates:
            raise StepFailed(f'{soname} is on neither the machine\'s NVIDIA wheels nor /usr/local/cuda: '
                             'pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand (CUDA 13) there')
        linked[soname] = os.path.realpath(candidates[0])
        (lib_dir / soname).unlink(missing_ok=True)
        (lib_dir / soname).symlink_to(linked[soname])
    return {'ok': True, 'wheels': [w.name for w in wheels], 'nvidia_libraries': linked}


def ldd(suite, timeout):
    status = suite.command(suite.python(str(REPO / 'scripts' / 'ldd_check.py')), timeout)
    return {'ok': status == 0, **({} if status == 0 else {'error': 'libraries outside the venv and glibc (log)'})}


def device(suite, timeout):
    """The installed pycaffe is the CUDA build (its CPU-only refusal would say so) and, on a GPU, takes GPU 0."""
    from solvers.device import check_gpu

    from caffe_fcn.cli import BadInput
    probe = subprocess.run(suite.python('-c', 'import caffe; print(caffe.__file__)'), capture_output=True,
                           text=True, env=suite.env, cwd='/', timeout=timeout)
    if probe.returncode:
        raise StepFailed(f'import caffe failed: {probe.stderr.strip().splitlines()[-1:]}')
    found = {'caffe': probe.stdout.strip()}
    try:
        check_gpu(GPU)
        found['gpu'] = f'GPU {GPU} usable'
    except BadInput as err:
        if 'CPU-only' in str(err) or not suite.cpu:
            raise StepFailed(str(err)) from None
        found['gpu'] = f'none here, as expected with --cpu ({err})'
    return {'ok': True, **found}


def pytest(suite, timeout):
    junit = suite.args.work / 'pytest-gpu.xml'
    extra = ['--collect-only', '-q'] if suite.cpu else [f'--junitxml={junit}', '-ra']
    listing = suite.args.work / 'pytest-collected.txt'
    cmd = suite.python('-m', 'pytest', '-m', 'gpu', '-p', 'no:cacheprovider', *extra, *GPU_TESTS)
    if suite.cpu:
        with open(listing, 'w') as f:
            status = subprocess.run(cmd, cwd=REPO, env=suite.env, stdout=f, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
        text = listing.read_text()
        print(text[-2000:], flush=True)
        collected = int((re.search(r'(\d+)(?:/\d+)? tests? collected', text) or [0, 0])[1])
        return {'ok': status == 0 and collected > 0, 'collected': collected, 'passed': 0, 'failed': 0,
                'note': 'collected only: the tests need a device'}
    status = suite.command(cmd, timeout)
    if not junit.exists():
        raise StepFailed(f'pytest exited {status} without a report')
    suites = ET.parse(junit).getroot()
    counts = {k: sum(int(s.get(k, 0)) for s in suites.iter('testsuite')) for k in ('tests', 'failures', 'errors',
                                                                                     'skipped')}
    failed = counts['failures'] + counts['errors']
    passed = counts['tests'] - failed - counts['skipped']
    return {'ok': status == 0 and failed == 0 and passed > 0, 'passed': passed, 'failed': failed,
            'skipped': counts['skipped'], 'exit': status}


def bench(suite, timeout):
    out = suite.args.out / 'bench-results.json'
    device_args = [] if suite.cpu else ['--gpu', GPU]
    models = ['voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s', 'voc-fcn-alexnet', 'voc-fcn-googlenet']
    status = suite.command(suite.python('-m', 'caffe_fcn.bench', *device_args, '--models', *models,
                                        *suite.settings('bench')[1]['args'], '--scaling', '--out', out,
                                        '--scratch', suite.args.work / 'bench', '--plot',
                                        suite.args.out / 'bench-scaling.png'), timeout)
    if not out.exists():
        raise StepFailed(f'the benchmark exited {status} before its first result')
    measured = json.loads(out.read_text())
    found = {'ok': status == 0, 'exit': status, 'gpu': measured.get('machine', {}).get('gpu'),
             'models': bench_table(measured), 'results': out.name}
    found['slow_convolutions'] = slow_convolutions(measured, found['models'])
    return found


def bench_table(measured):
    """{model: {caffe/pytorch/pytorch-tf32: forward and train ms, peak memory}} from the benchmark's rows."""
    table = {}
    for row in measured.get('runs') and summarize(measured) or []:
        cell = table.setdefault(row['model'], {}).setdefault(row['build'], {})
        cell.update({'forward_ms': ms(row.get('forward_s')), 'train_ms': ms(row.get('train_s')),
                     'forward_gpu_mb': row.get('forward_gpu_mb'), 'train_gpu_mb': row.get('train_gpu_mb'),
                     'paper_k40c_forward_ms': row.get('paper_k40c_forward_ms')})
    return table


def summarize(measured):
    """The benchmark's summary rows (written at its end), or made here from the runs a cut-off benchmark left."""
    if measured.get('summary'):
        return measured['summary']
    from caffe_fcn.bench.__main__ import summarize as bench_summarize
    return bench_summarize(measured['runs'], measured.get('ceilings', {}))


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def slow_convolutions(measured, table):
    """Where Caffe's forward is more than 2x PyTorch fp32's on the same device: the models, and Caffe's slowest
    convolution layers from its per-layer profile (the numbers a cuDNN port would be measured against)."""
    slow = {model: round(cells['caffe']['forward_ms'] / cells['pytorch']['forward_ms'], 2)
            for model, cells in table.items() if cells.get('caffe', {}).get('forward_ms')
            and cells.get('pytorch', {}).get('forward_ms')
            and cells['caffe']['forward_ms'] > 2 * cells['pytorch']['forward_ms']}
    layers = next(iter((measured.get('profile') or {}).values()), [])
    convs = sorted((r for r in layers if r['type'] in ('Convolution', 'Deconvolution')),
                   key=lambda r: -(r['forward_s'] + r['backward_s']))[:8]
    return {'caffe_over_pytorch_fp32_forward': slow,
            'profile_top_convolutions': [{'name': r['name'], 'type': r['type'], 'forward_ms': ms(r['forward_s']),
                                          'backward_ms': ms(r['backward_s'])} for r in convs] if slow else []}


def train(suite, timeout):
    """fcn-train voc-fcn8s at full width on synthetic 500 x 500 images: seconds per step and the loss."""
    settings = suite.settings('train')[1]
    data, run = suite.args.work / 'train-data', suite.args.work / 'train-run'
    weights = suite.args.work / 'fcn8s-init.caffemodel'
    deadline = time.monotonic() + timeout
    for dataset, folder in (('sbdd', 'sbdd'), ('voc', 'pascal')):
        if suite.command([suite.bin('fcn-data'), 'synth', dataset, '--out', data / folder, '--count',
                          settings['count'], '--size', settings['size']], deadline - time.monotonic()):
            raise StepFailed(f'fcn-data synth {dataset} failed')
    if suite.command([suite.bin('fcn-surgery'), 'init', 'voc-fcn8s', '--random', '--seed', '0', '--out', weights],
                     deadline - time.monotonic()):
        raise StepFailed('fcn-surgery init failed')
    device_args = [] if suite.cpu else ['--gpu', GPU]
    status = suite.command([suite.bin('fcn-train'), 'voc-fcn8s', '--weights', weights, '--data-root', data,
                            '--out', run, '--rounds', '1', '--steps', settings['steps'], '--seed', '0',
                            *device_args], max(10.0, deadline - time.monotonic()))
    rows = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()] \
        if (run / 'log.jsonl').exists() else []
    if status or not rows:
        raise StepFailed(f'fcn-train exited {status}' + ('' if rows else ' before its first round was logged'))
    row = rows[-1]
    return {'ok': True, 'steps': row['iter'], 'size': settings['size'], 'round_seconds': row['seconds'],
            'ms_per_step': round(row['seconds'] * 1000 / row['iter'], 1), 'train_loss': row['train_loss'],
            'train_loss_per_pixel': row['train_loss_per_pixel'],
            'note': 'the round\'s wall time over its steps; it includes scoring the synthetic val split once'}


def demo(suite, timeout):
    out = suite.args.work / 'demo'
    device_args = [] if suite.cpu else ['--gpu', GPU]
    status = suite.command(suite.python('-m', 'solvers.demo', '--out', out, *device_args,
                                        *suite.settings('demo')[1]['args']), timeout)
    scores = out / 'scores.json'
    if status or not scores.exists():
        raise StepFailed(f'the demo exited {status}')
    found = json.loads(scores.read_text())
    score = found if 'mean_iu' in found else next(iter(found.values()), {})
    return {'ok': True, 'mean_iu': score.get('mean_iu'), 'scores': score}


def last_line(results):
    steps = results['steps']
    tests, bench_step = steps.get('pytest', {}), steps.get('bench', {})
    models = bench_step.get('models', {})
    fcn8s, fcn32s = models.get('voc-fcn8s', {}), models.get('voc-fcn32s', {})
    k40c = fcn32s.get('caffe', {}).get('paper_k40c_forward_ms') or 210

    def f(value, fmt='.1f'):
        return '-' if value is None else format(value, fmt)
    head = 'gpu-suite' + (' --cpu' if results['mode'] == 'cpu' else '')
    counted = f'{tests.get("passed", 0)} passed, {tests.get("failed", 0)} failed'
    if results['mode'] == 'cpu':
        counted += f' ({tests.get("collected", 0)} GPU tests collected, not run)'
    failed_steps = [name for name, s in steps.items() if not s.get('ok')]
    return (f'{head}: {counted}; FCN-8s forward {f(fcn8s.get("caffe", {}).get("forward_ms"))} ms '
            f'(K40c {k40c} ms), train {f(steps.get("train", {}).get("ms_per_step"))} ms/step; '
            f'PyTorch fp32 {f(fcn8s.get("pytorch", {}).get("forward_ms"))} ms; '
            f'demo mean IU {f(steps.get("demo", {}).get("mean_iu"), ".3f")}'
            + (f'; failed: {", ".join(failed_steps)}' if failed_steps else ''))


def main():
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    suite = Suite(args)
    suite.save()
    ready = suite.step('install', lambda t: install(suite, t)) and suite.step('ldd', lambda t: ldd(suite, t)) \
        and suite.step('device', lambda t: device(suite, t))
    if ready:
        for name, function in (('pytest', pytest), ('bench', bench), ('train', train), ('demo', demo)):
            suite.step(name, lambda t, function=function: function(suite, t))
    suite.results['seconds'] = round(time.monotonic() - suite.start, 1)
    suite.results['last_line'] = last_line(suite.results)
    suite.save()
    print(f'\n[gpu-suite] {args.out / "gpu-results.json"}; {suite.results["seconds"]} s in all')
    print(suite.results['last_line'])
    return 0 if ready and all(s['ok'] for s in suite.results['steps'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
