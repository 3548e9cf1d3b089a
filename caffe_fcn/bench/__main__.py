"""python -m caffe_fcn.bench: Caffe CPU speed and memory for the FCNs, beside PyTorch and the sgemm ceiling.

Every configuration runs in a fresh subprocess (caffe_fcn.bench.worker): peak resident memory is its own, and
the thread counts (OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads) are set before any pool
starts.  Other processes' CPU use during each run is measured from /proc/stat and recorded with it,
so a timing taken on a busy machine says so.  Several Caffe builds can be compared in one run:
--caffe LABEL=PYTHON, once per build (a venv with that build of pycaffe installed).

--gpu N: Caffe on GPU N (a CUDA build) against PyTorch on the same GPU, in float32 with TF32 off and
with TF32 and cudnn.benchmark on, beside the FCN paper's K40c forward times; peak GPU memory instead of
the sgemm ceiling and the wait for a quiet CPU.
"""

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from google.protobuf import text_format
from tqdm import tqdm

from caffe_fcn.bench.ceiling import SHAPES as SGEMM_SHAPES
from caffe_fcn import cli, registry
from caffe_fcn.files import write_atomic

HERE = Path(__file__).resolve().parent
OUT = HERE / 'out'
MODELS = ('voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s')
GPU_MODELS = MODELS + ('voc-fcn-alexnet', 'voc-fcn-googlenet')  # the three nets of the paper's Table 1
SCALING_SIZES = (250, 500, 750, 1000)  # on the CPU; none by default on a GPU
SCALING_MODEL = 'voc-fcn8s'
# The FCN paper (Long, Shelhamer, Darrell, CVPR 2015), Table 1: forward time of a 500 x 500 input on an NVIDIA
# Tesla K40c, averaged over 20 trials.  Its FCN-VGG16 is FCN-32s; FCN-16s and 8s add the skips it does not time.
PAPER_K40C_FORWARD_MS = {m.name: m.paper.forward_ms for m in registry.MODELS.values() if m.paper}  # Table 1
PAPER_SIZE = 500


# --- measuring the machine's load ------------------------------------------------

def cpu_busy_s(niced=None):
    """Seconds of CPU time the whole machine has spent busy since boot (all cores).

    niced=True: only the time of processes at a positive nice (which yield to the benchmark's
    normal-priority threads), niced=False: all but that.
    """
    fields = [int(v) for v in Path('/proc/stat').read_text().split('\n')[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    normal = user + system + irq + softirq + steal
    return {True: nice, False: normal, None: normal + nice}[niced] / os.sysconf('SC_CLK_TCK')


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def others_load(seconds=3.0, niced=None):
    """Cores used by other processes over the next `seconds` (we are idle meanwhile)."""
    busy = cpu_busy_s(niced)
    time.sleep(seconds)
    return (cpu_busy_s(niced) - busy) / seconds


def wait_quiet(limit, max_wait):
    """Wait (up to max_wait s) until other normal-priority processes use less than `limit` cores."""
    deadline = time.monotonic() + max_wait
    load = others_load(niced=False)
    while load > limit and time.monotonic() < deadline:
        tqdm.write(f'[bench] others use {load:.2f} cores; waiting for a quiet machine')
        time.sleep(10)
        load = others_load(niced=False)
    return load


# --- running jobs ------------------------------------------------------------------

def run_job(python, job, args):
    """Run one caffe_fcn.bench.worker job in a fresh process; its result, with the others' load during it."""
    name = '-'.join(str(job[k]) for k in ('label', 'model', 'size', 'mode') if k in job)
    job = job | {'threads': args.threads, 'seed': 0, 'result': str(args.scratch / 'jobs' / f'{name}.result.json')}
    job_file = args.scratch / 'jobs' / f'{name}.json'
    write_atomic(job_file, json.dumps(job, indent=1))
    Path(job['result']).unlink(missing_ok=True)
    load_before = cpu_load_before(args)
    threads = str(args.threads)
    path = os.pathsep.join(filter(None, [str(HERE.parents[1]), os.environ.get('PYTHONPATH')]))  # the repository
    env = os.environ | {'OMP_NUM_THREADS': threads, 'OPENBLAS_NUM_THREADS': threads, 'MKL_NUM_THREADS': threads,
                        'PYTHONPATH': path}
    busy, niced, own, wall = cpu_busy_s(), cpu_busy_s(niced=True), children_cpu_s(), time.monotonic()
    proc = subprocess.run([python, '-m', 'caffe_fcn.bench.worker', str(job_file)], env=env, cwd=HERE.parents[1],
                          capture_output=True, text=True)
    wall = time.monotonic() - wall
    others = max(0.0, (cpu_busy_s() - busy) - (children_cpu_s() - own)) / wall
    others_niced = (cpu_busy_s(niced=True) - niced) / wall  # the workers run at nice 0: this is others'
    if proc.returncode or not Path(job['result']).exists():
        tail = '\n'.join((proc.stdout + proc.stderr).strip().split('\n')[-15:])
        raise cli.Failure(f'benchmark job {name} failed (exit {proc.returncode}); job in {job_file}:\n{tail}')
    result = json.loads(Path(job['result']).read_text())
    keep = {k: job[k] for k in ('label', 'model', 'size', 'width', 'framework', 'mode', 'gpu', 'tf32') if k in job}
    return keep | result | {'others_load': round(others, 2), 'others_niced_load': round(others_niced, 2),
                            'others_load_before': load_before if load_before is None else round(load_before, 2)}


def cpu_load_before(args):
    """Other processes' CPU use just before a run (after waiting for a quiet machine with --max-wait); on a GPU,
    where the CPU only launches kernels, not measured (None)."""
    if args.gpu is not None:
        return None
    return wait_quiet(args.quiet_load, args.max_wait) if args.max_wait else others_load(1.0)


def write_nets(model, size, width, scratch):
    """The deploy and train prototxts and their graphs (for PyTorch) of one configuration."""
    from caffe_fcn.bench import nets
    stem = scratch / 'nets' / f'{model}-{size}-w{width:g}'
    paths = {}
    for kind, net in (('forward', nets.deploy_net(model, size, width)), ('train', nets.train_net(model, size, width))):
        paths[kind] = stem.with_name(stem.name + f'-{kind}.prototxt')
        write_atomic(paths[kind], text_format.MessageToString(net))
        paths[kind + '_graph'] = write_atomic(stem.with_name(stem.name + f'-{kind}.json'), json.dumps(nets.graph(net)))
    return paths


def torch_variants(args):
    """(label, job settings) of the PyTorch runs: one on the CPU; on a GPU, float32 (TF32 off) and TF32 with
    cudnn.benchmark, its fast setting."""
    if args.no_torch:
        return []
    if args.gpu is None:
        return [('pytorch', {})]
    return [('pytorch', {'tf32': False}), ('pytorch-tf32', {'tf32': True})]


def bench_config(model, size, args, builds):
    """Forward and training runs of every Caffe build and of PyTorch for one net and input size."""
    paths = write_nets(model, size, args.width, args.scratch)
    weights = args.scratch / f'weights-{model}-w{args.width:g}.npz'  # the same at every size (fully convolutional)
    weights.unlink(missing_ok=True)
    runs = []
    for mode in ('forward', 'train'):
        reference = args.scratch / f'reference-{model}-{size}-w{args.width:g}-{mode}.npz'
        reference.unlink(missing_ok=True)
        base = {'model': model, 'size': size, 'width': args.width, 'mode': mode, 'repeat': args.repeat,
                'warmup': args.warmup, 'reference': str(reference), 'weights': str(weights), 'gpu': args.gpu}
        for label, python in builds.items():
            runs.append(run_job(python, base | {'label': label, 'framework': 'caffe', 'net': str(paths[mode])}, args))
            tqdm.write(describe(runs[-1]))
        for label, settings in torch_variants(args):
            runs.append(run_job(sys.executable, base | settings | {'label': label, 'framework': 'torch',
                                                                   'graph': str(paths[mode + '_graph'])}, args))
            tqdm.write(describe(runs[-1]))
    return runs


def data_layer(args, builds):
    """The training data layer alone, on synthetic SBDD images of the benchmark's size."""
    from google.protobuf import text_format as tf

    from caffe_fcn.bench import nets
    from caffe_fcn.datalayers.synth import synthesize
    sbdd = synthesize('sbdd', args.scratch / f'sbdd-{args.size}', count=8, seed=0, size=(args.size, args.size))
    path = args.scratch / 'nets' / f'{SCALING_MODEL}-data.prototxt'
    write_atomic(path, tf.MessageToString(nets.data_layer_net(SCALING_MODEL, sbdd, args.width)))
    label, python = next(iter(builds.items()))
    job = {'label': label, 'model': SCALING_MODEL, 'size': args.size, 'framework': 'caffe', 'mode': 'data',
           'net': str(path), 'repeat': max(args.repeat, 5), 'warmup': 1}
    return run_job(python, job, args)


def describe(run):
    check = run.get('check') or {}
    worst = f'  rel.err {max(check.values()):.1e}' if check else '  (reference)'
    if run.get('gpu') is not None:
        return (f'[bench] {run["label"]:>12} {run["model"]} {run["size"]} {run["mode"]:>7}: '
                f'{run["median_s"] * 1000:.1f} ms on GPU {run["gpu"]}, GPU memory {run["gpu_mb"]:.0f} MB{worst}')
    return (f'[bench] {run["label"]:>10} {run["model"]} {run["size"]} {run["mode"]:>7}: {run["median_s"]:.3f} s, '
            f'peak {run["maxrss_mb"]:.0f} MB{worst}, others used {run["others_load"]:.2f} cores '
            f'({run["others_niced_load"]:.2f} of them niced)')


# --- summarizing -------------------------------------------------------------------

def summarize(runs, ceilings):
    """One row per (model, size, build): times, GFLOP/s, memory, and the ratios."""
    by_key = {(r['model'], r['size'], r['label'], r['mode']): r for r in runs}
    rows = []
    for model, size, label in dict.fromkeys((r['model'], r['size'], r['label']) for r in runs):
        fwd, train = by_key.get((model, size, label, 'forward')), by_key.get((model, size, label, 'train'))
        flops = next(r['flops'] for r in runs if r['model'] == model and r['size'] == size and 'flops' in r)
        row = {'model': model, 'size': size, 'build': label,
               'forward_s': fwd and fwd['median_s'], 'train_s': train and train['median_s'],
               'forward_gflop': flops['forward'] / 1e9, 'train_gflop': flops['train'] / 1e9,
               'forward_peak_mb': fwd and fwd['maxrss_mb'], 'train_peak_mb': train and train['maxrss_mb'],
               'baseline_mb': train and train['baseline_mb'],
               # the criterion: the output of the same net on the same input; the loss and weight gradients
               # (sums over every pixel, in float32 on both sides) are reported beside it
               'output_rel_error': fwd and (fwd.get('check') or {}).get('output'),
               'grad_rel_error': max((train.get('check') or {}).values(), default=None) if train else None,
               'others_load': max(r['others_load'] for r in (fwd, train) if r),
               'others_niced_load': max(r['others_niced_load'] for r in (fwd, train) if r)}
        row['train_gflops'] = train and flops['train'] / train['median_s'] / 1e9
        row['forward_gflops'] = fwd and flops['forward'] / fwd['median_s'] / 1e9
        if not label.startswith('pytorch'):
            row |= speedups(by_key, model, size, fwd, train)
        if label in ceilings and train:
            row['fraction_of_ceiling'] = row['train_gflops'] / ceilings[label]['ceiling']['best']
        if any(r.get('gpu') is not None for r in (fwd, train) if r):
            row |= gpu_columns(model, size, fwd, train)
        rows.append(row)
    return rows


def speedups(by_key, model, size, fwd, train):
    """How many times faster than each PyTorch run of the same net a Caffe build is (train; forward beside)."""
    out = {}
    for torch_label in ('pytorch', 'pytorch-tf32'):
        suffix = torch_label.removeprefix('pytorch').replace('-', '_')
        for mode, own, key in (('train', train, 'speedup_vs_pytorch'), ('forward', fwd, 'forward_speedup_vs_pytorch')):
            theirs = by_key.get((model, size, torch_label, mode))
            if own and theirs:
                out[key + suffix] = theirs['median_s'] / own['median_s']
    return out


def gpu_columns(model, size, fwd, train):
    """Times in ms, peak GPU memory and the paper's K40c forward time (at its 500 x 500 only)."""
    return {'forward_ms': fwd and fwd['median_s'] * 1000, 'train_ms': train and train['median_s'] * 1000,
            'forward_gpu_mb': fwd and fwd.get('gpu_mb'), 'train_gpu_mb': train and train.get('gpu_mb'),
            'paper_k40c_forward_ms': PAPER_K40C_FORWARD_MS.get(model) if size == PAPER_SIZE else None}


def scaling(rows):
    """Time and memory against input pixels for the scaling model, and how far from linear they are."""
    out = {}
    for build in dict.fromkeys(r['build'] for r in rows):
        pts = sorted((r for r in rows if r['model'] == SCALING_MODEL and r['build'] == build and r['train_s']),
                     key=lambda r: r['size'])
        if len(pts) < 2:
            continue
        ref = next((p for p in pts if p['size'] == 500), pts[0])
        ref_mb = ref['train_peak_mb'] - ref['baseline_mb']  # what the net adds to the imported libraries
        out[build] = [{
            'size': p['size'], 'pixels': p['size'] ** 2, 'train_s': p['train_s'], 'train_peak_mb': p['train_peak_mb'],
            'train_gflop': p['train_gflop'],
            # 1.0 = proportional to input pixels (relative to the 500 x 500 run); >1 grows faster than linear
            'time_per_pixel_vs_500': (p['train_s'] / p['size'] ** 2) / (ref['train_s'] / ref['size'] ** 2),
            'flop_per_pixel_vs_500': (p['train_gflop'] / p['size'] ** 2) / (ref['train_gflop'] / ref['size'] ** 2),
            'time_per_flop_vs_500': (p['train_s'] / p['train_gflop']) / (ref['train_s'] / ref['train_gflop']),
            'net_mb': p['train_peak_mb'] - p['baseline_mb'],
            'memory_per_pixel_vs_500': ((p['train_peak_mb'] - p['baseline_mb']) / p['size'] ** 2)
            / (ref_mb / ref['size'] ** 2) if ref_mb > 0 else None,
        } for p in pts]
    return out


def plot(scale, path):
    """Time per training iteration and peak memory against input pixels, with proportional lines."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for build, pts in scale.items():
        px = [p['pixels'] / 1e6 for p in pts]
        line, = ax_t.plot(px, [p['train_s'] for p in pts], 'o-', label=build)
        ax_m.plot(px, [p['train_peak_mb'] / 1024 for p in pts], 'o-', color=line.get_color(), label=build)
        ref = next((p for p in pts if p['size'] == 500), pts[0])
        ax_t.plot(px, [ref['train_s'] / ref['pixels'] * p['pixels'] for p in pts], ':', color=line.get_color())
    ax_t.plot([], [], 'k:', label='proportional to pixels')
    ax_t.set(xlabel='input megapixels', ylabel='s per training iteration', title=f'{SCALING_MODEL}: time')
    ax_m.set(xlabel='input megapixels', ylabel='peak resident GiB', title=f'{SCALING_MODEL}: memory')
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format=Path(path).suffix.lstrip('.') or 'png')
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def print_gpu_table(rows):
    """Milliseconds on the GPU, the paper's K40c forward time beside them, peak GPU memory, ratios and errors."""
    cols = ('model', 'size', 'build', 'fwd ms', 'K40c fwd ms (paper)', 'train ms', 'GPU MB f/t',
            'vs torch fp32 f/t', 'vs torch tf32 f/t', 'err out/grad')
    print('\n' + ' | '.join(cols))

    def f(v, fmt):
        return format(v, fmt) if v is not None else '-'
    for r in rows:
        print(' | '.join([r['model'], str(r['size']), r['build'], f(r.get('forward_ms'), '.1f'),
                          f(r.get('paper_k40c_forward_ms'), 'd'), f(r.get('train_ms'), '.1f'),
                          f'{f(r.get("forward_gpu_mb"), ".0f")}/{f(r.get("train_gpu_mb"), ".0f")}',
                          *(f'{f(r.get("forward_speedup_vs_pytorch" + s), ".2f")}/'
                            f'{f(r.get("speedup_vs_pytorch" + s), ".2f")}' for s in ('', '_tf32')),
                          f'{f(r["output_rel_error"], ".0e")}/{f(r["grad_rel_error"], ".0e")}']))
    print('\nGPU MB: Caffe, device memory the net took (cudaMemGetInfo); PyTorch, torch.cuda.max_memory_allocated. '
          'K40c: the FCN paper, Table 1 (500 x 500; its FCN-VGG16 is FCN-32s).')


def print_table(rows, ceilings):
    cols = ('model', 'size', 'build', 'fwd s', 'train s', 'GFLOP', 'GFLOP/s', 'peak MB f/t', 'vs torch',
            'of ceil', 'err out/grad', 'others')
    print('\n' + ' | '.join(cols))
    for r in rows:
        f = (lambda v, fmt: format(v, fmt) if v is not None else '-')
        print(' | '.join([r['model'], str(r['size']), r['build'], f(r['forward_s'], '.2f'), f(r['train_s'], '.2f'),
                          f(r['train_gflop'], '.0f'), f(r['train_gflops'], '.0f'),
                          f'{f(r["forward_peak_mb"], ".0f")}/{f(r["train_peak_mb"], ".0f")}',
                          f(r.get('speedup_vs_pytorch'), '.2f') + 'x' if r.get('speedup_vs_pytorch') else '-',
                          f(r.get('fraction_of_ceiling'), '.0%'),
                          f'{f(r["output_rel_error"], ".0e")}/{f(r["grad_rel_error"], ".0e")}',
                          f(r['others_load'], '.2f')]))
    print('\nsgemm ceilings (GFLOP/s): ' + ', '.join(f'{k} {v["ceiling"]["best"]:.0f} ({v["blas"]})'
                                                    for k, v in ceilings.items()))


def print_profile(profile, size, top=12):
    for label, layers in profile.items():
        total = sum(r['forward_s'] + r['backward_s'] for r in layers)
        print(f'\nper-layer profile, {label} ({SCALING_MODEL} {size}x{size}, forward+backward {total:.2f} s):')
        by_type = {}
        for r in layers:
            by_type[r['type']] = by_type.get(r['type'], 0) + r['forward_s'] + r['backward_s']
        print('  by type: ' + ', '.join(f'{t} {s:.2f} s' for t, s in sorted(by_type.items(), key=lambda x: -x[1])))
        for r in sorted(layers, key=lambda r: -(r['forward_s'] + r['backward_s']))[:top]:
            flop = r['forward'] + r['backward']
            rate = f'{flop / (r["forward_s"] + r["backward_s"]) / 1e9:6.0f} GFLOP/s' if flop else ' ' * 14
            print(f'  {r["name"]:>14} {r["type"]:>14}  fwd {r["forward_s"]:.3f} s  bwd {r["backward_s"]:.3f} s  {rate}')


# --- main --------------------------------------------------------------------------

def parse_args(argv):
    ap = cli.ArgumentParser(prog='python -m caffe_fcn.bench', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', help=f'models at --size (default: {" ".join(MODELS)}; with --gpu '
                    f'also {" ".join(GPU_MODELS[len(MODELS):])})')
    ap.add_argument('--size', type=int, default=500, help='square input size for --models (default: %(default)s)')
    ap.add_argument('--scaling', type=int, nargs='*',
                    help=f'square input sizes for {SCALING_MODEL} (default: {" ".join(map(str, SCALING_SIZES))}, '
                         'none with --gpu; none to skip)')
    cli.add_width(ap, what='the nets')
    ap.add_argument('--repeat', type=int, default=5, help='timed iterations; the median is reported')
    ap.add_argument('--warmup', type=int, default=1, help='untimed iterations first')
    ap.add_argument('--threads', type=int, default=2, help='threads for every BLAS and for PyTorch')
    ap.add_argument('--caffe', action='append', metavar='LABEL=PYTHON',
                    help='a Caffe build to measure: a label and the Python of a venv that has it (repeatable; '
                         'default: caffe=this Python)')
    ap.add_argument('--sgemm-shapes', nargs='+', default=['x'.join(map(str, s)) for s in SGEMM_SHAPES],
                    metavar='MxNxK', help='sgemm shapes for the ceiling; the best rate counts (default: %(default)s)')
    ap.add_argument('--no-torch', action='store_true', help='skip PyTorch')
    cli.add_device(ap)
    ap.add_argument('--no-profile', action='store_true', help='skip the per-layer Caffe profile')
    ap.add_argument('--quiet-load', type=float, default=0.3,
                    help='with --max-wait: wait until other processes use fewer cores than this')
    ap.add_argument('--max-wait', type=float, default=0, help='seconds to wait for a quiet machine before each run')
    ap.add_argument('--infer', action='store_true', help="instead: fcn-infer's images per second with each engine "
                    '(caffe, onnxruntime) on --images synthetic 500x375 JPEGs, beside the forward passes alone')
    ap.add_argument('--images', type=int, default=100, help='--infer: how many images (default: %(default)s)')
    cli.add_output(ap, '--out', help=f'results file (default: {HERE / "results.json"}, with --infer '
                    f'{HERE / "infer-results.json"})')
    cli.add_output(ap, '--plot', default=HERE / 'scaling.png', help='scaling plot (default: %(default)s)')
    cli.add_output(ap, '--scratch', folder=True, default=OUT,
                    help='for the large raw files: weights, outputs, job files (default: %(default)s)')
    args = ap.parse_args(argv)
    args.out = args.out or cli.Output(HERE / ('infer-results.json' if args.infer else 'results.json'))
    cli.check_outputs(args)  # the default --out beside the others
    if args.infer and (args.images < 1 or args.gpu is not None):
        ap.error('--infer runs on the CPU on one image at least')
    on_gpu = args.gpu is not None
    args.models = args.models or list(GPU_MODELS if on_gpu else MODELS)
    args.scaling = ([] if on_gpu else list(SCALING_SIZES)) if args.scaling is None else args.scaling
    try:
        args.sgemm_shapes = [tuple(int(d) for d in shape.split('x')) for shape in args.sgemm_shapes]
    except ValueError:
        args.sgemm_shapes = [()]
    if any(len(shape) != 3 or min(shape) < 1 for shape in args.sgemm_shapes):
        ap.error('--sgemm-shapes: expected positive shapes like 4096x4096x4096')
    builds = {}
    for item in args.caffe or [f'caffe={sys.executable}']:
        label, sep, python = item.partition('=')
        if not sep or not label or not Path(python).exists():
            ap.error(f'--caffe {item!r}: expected LABEL=PYTHON with an existing interpreter')
        builds[label] = python
    if not args.no_torch and not args.infer:
        try:
            import torch  # noqa: F401
        except ImportError:
            ap.error("PyTorch is not installed: pip install -e '.[bench]' (or pass --no-torch)")
    return args, builds


def check_gpu(args, builds):
    """Before any worker starts: every Caffe build, and PyTorch unless --no-torch, can run on GPU --gpu (else
    BadInput, saying how to get a build that can)."""
    from solvers.device import check_gpu as check_caffe

    for label, python in builds.items():
        try:
            check_caffe(args.gpu, python)
        except cli.BadInput as err:
            raise cli.BadInput(f'{err} [Caffe build {label}: {python}]' if len(builds) > 1 else err) from None
    if args.no_torch:
        return
    import torch
    if torch.version.cuda is None:
        raise cli.BadInput(f'--gpu {args.gpu}: this PyTorch ({torch.__version__}) is a CPU-only build. Install a CUDA '
                           'build of the same version into this venv, or pass --no-torch to measure Caffe alone.')
    if not 0 <= args.gpu < torch.cuda.device_count():
        raise cli.BadInput(f'--gpu {args.gpu}: PyTorch sees {torch.cuda.device_count()} GPU(s); pick another with '
                           '--gpu N, or pass --no-torch')


def machine(args):
    """What the results were measured on: the CPU, and the GPU with --gpu (from nvidia-smi, when there is one)."""
    cpu = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().split('\n')
                if line.startswith('model name')), platform.machine())
    found = {'cpu': cpu, 'cores': os.cpu_count(), 'python': platform.python_version(),
             'date': time.strftime('%Y-%m-%d %H:%M:%S')}
    if args.gpu is not None:
        query = ['nvidia-smi', f'--id={args.gpu}', '--query-gpu=name,driver_version,memory.total',
                 '--format=csv,noheader']
        try:
            found['gpu'] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            found['gpu'] = None
    return found


@cli.tool('python -m caffe_fcn.bench')
def main(argv=None):
    args, builds = parse_args(argv)
    if args.infer:
        from caffe_fcn.bench import infer
        return infer.run(args)
    on_gpu = args.gpu is not None
    if on_gpu:
        check_gpu(args, builds)
    for sub in ('jobs', 'nets'):
        (args.scratch / sub).mkdir(parents=True, exist_ok=True)
    configs = [(m, args.size) for m in args.models]
    configs += [(SCALING_MODEL, s) for s in args.scaling if (SCALING_MODEL, s) not in configs]
    settings = {k: v for k, v in vars(args).items() if k not in ('out', 'plot', 'scratch')}
    results = {'machine': machine(args), 'settings': settings | {'builds': builds}}
    if on_gpu:
        results['paper_k40c_forward_ms'] = PAPER_K40C_FORWARD_MS | {
            'source': 'Long, Shelhamer, Darrell, Fully Convolutional Networks for Semantic Segmentation, CVPR 2015, '
                      'Table 1: 500 x 500 input, NVIDIA Tesla K40c, mean of 20 trials; FCN-VGG16 is FCN-32s'}

    ceilings = {}
    for label, python in [] if on_gpu else [*builds.items(), ('numpy', sys.executable)]:  # a CPU BLAS's ceiling
        job = {'label': label, 'mode': 'ceiling', 'framework': 'numpy' if label == 'numpy' else 'caffe',
               'repeat': args.repeat, 'model': 'sgemm', 'shapes': args.sgemm_shapes}
        ceilings[label] = run_job(python, job, args)
        tqdm.write(f'[bench] sgemm ceiling of {label}: {ceilings[label]["ceiling"]["best"]:.0f} GFLOP/s '
                   f'({ceilings[label]["blas"]}), others used {ceilings[label]["others_load"]:.2f} cores')
    results['ceilings'] = ceilings

    runs = []
    for model, size in tqdm(configs, desc='configurations', unit='net'):
        runs += bench_config(model, size, args, builds)
        results['runs'] = runs
        write_atomic(args.out, json.dumps(results, indent=1))  # partial results survive an interruption, whole

    if not args.no_profile:
        results['profile'] = {}
        for label, python in builds.items():
            paths = write_nets(SCALING_MODEL, args.size, args.width, args.scratch)
            job = {'label': label, 'model': SCALING_MODEL, 'size': args.size, 'width': args.width,
                   'framework': 'caffe', 'mode': 'profile', 'net': str(paths['train']), 'repeat': args.repeat,
                   'gpu': args.gpu}
            results['profile'][label] = run_job(python, job, args)['layers']
        results['data_layer'] = data_layer(args, builds)
        print_profile(results['profile'], args.size)
        print(f'  the Python data layer (SBDD, synthetic {args.size}x{args.size} JPEGs): '
              f'{results["data_layer"]["median_s"]:.3f} s per image')

    rows = summarize(runs, ceilings)
    results['summary'] = rows
    results['scaling'] = scaling(rows)
    if results['scaling']:
        plot(results['scaling'], args.plot)
    write_atomic(args.out, json.dumps(results, indent=1))
    if on_gpu:
        print_gpu_table(rows)
    else:
        print_table(rows, ceilings)
    print(f'\n[bench] wrote {args.out}' + (f' and {args.plot}' if results['scaling'] else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
