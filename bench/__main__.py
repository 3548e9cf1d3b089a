"""python -m bench: Caffe CPU speed and memory for the FCNs, beside PyTorch and the sgemm ceiling.

Every configuration runs in a fresh subprocess (bench.worker): peak resident memory is its own, and
the thread counts (OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads) are set before any pool
starts.  Other processes' CPU use during each run is measured from /proc/stat and recorded with it,
so a timing taken on a busy machine says so.  Several Caffe builds can be compared in one run:
--caffe LABEL=PYTHON, once per build (a venv with that build of pycaffe installed).
"""

import argparse
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

from bench.ceiling import SHAPES as SGEMM_SHAPES
from fcn import cli

HERE = Path(__file__).resolve().parent
OUT = HERE / 'out'
MODELS = ('voc-fcn32s', 'voc-fcn16s', 'voc-fcn8s')
SCALING_MODEL = 'voc-fcn8s'


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
    """Run one bench.worker job in a fresh process; its result, with the others' load during it."""
    name = '-'.join(str(job[k]) for k in ('label', 'model', 'size', 'mode') if k in job)
    job = job | {'threads': args.threads, 'seed': 0, 'result': str(args.scratch / 'jobs' / f'{name}.result.json')}
    job_file = args.scratch / 'jobs' / f'{name}.json'
    job_file.write_text(json.dumps(job, indent=1))
    Path(job['result']).unlink(missing_ok=True)
    load_before = wait_quiet(args.quiet_load, args.max_wait) if args.max_wait else others_load(1.0)
    threads = str(args.threads)
    env = os.environ | {'OMP_NUM_THREADS': threads, 'OPENBLAS_NUM_THREADS': threads, 'MKL_NUM_THREADS': threads,
                        'PYTHONPATH': os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get('PYTHONPATH')]))}
    busy, niced, own, wall = cpu_busy_s(), cpu_busy_s(niced=True), children_cpu_s(), time.monotonic()
    proc = subprocess.run([python, '-m', 'bench.worker', str(job_file)], env=env, cwd=HERE.parent,
                          capture_output=True, text=True)
    wall = time.monotonic() - wall
    others = max(0.0, (cpu_busy_s() - busy) - (children_cpu_s() - own)) / wall
    others_niced = (cpu_busy_s(niced=True) - niced) / wall  # the workers run at nice 0: this is others'
    if proc.returncode or not Path(job['result']).exists():
        tail = '\n'.join((proc.stdout + proc.stderr).strip().split('\n')[-15:])
        raise RuntimeError(f'benchmark job {name} failed (exit {proc.returncode}); job in {job_file}:\n{tail}')
    result = json.loads(Path(job['result']).read_text())
    keep = {k: job[k] for k in ('label', 'model', 'size', 'width', 'framework', 'mode') if k in job}
    return keep | result | {'others_load': round(others, 2), 'others_niced_load': round(others_niced, 2),
                            'others_load_before': round(load_before, 2)}


def write_nets(model, size, width, scratch):
    """The deploy and train prototxts and their graphs (for PyTorch) of one configuration."""
    from bench import nets
    stem = scratch / 'nets' / f'{model}-{size}-w{width:g}'
    paths = {}
    for kind, net in (('forward', nets.deploy_net(model, size, width)), ('train', nets.train_net(model, size, width))):
        paths[kind] = stem.with_name(stem.name + f'-{kind}.prototxt')
        paths[kind].write_text(text_format.MessageToString(net))
        paths[kind + '_graph'] = stem.with_name(stem.name + f'-{kind}.json')
        paths[kind + '_graph'].write_text(json.dumps(nets.graph(net)))
    return paths


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
                'warmup': args.warmup, 'reference': str(reference), 'weights': str(weights)}
        for label, python in builds.items():
            runs.append(run_job(python, base | {'label': label, 'framework': 'caffe', 'net': str(paths[mode])}, args))
            tqdm.write(describe(runs[-1]))
        if not args.no_torch:
            runs.append(run_job(sys.executable, base | {'label': 'pytorch', 'framework': 'torch',
                                                        'graph': str(paths[mode + '_graph'])}, args))
            tqdm.write(describe(runs[-1]))
    return runs


def data_layer(args, builds):
    """The training data layer alone, on synthetic SBDD images of the benchmark's size."""
    from google.protobuf import text_format as tf

    from bench import nets
    from datalayers.synth import synthesize
    sbdd = synthesize('sbdd', args.scratch / f'sbdd-{args.size}', count=8, seed=0, size=(args.size, args.size))
    path = args.scratch / 'nets' / f'{SCALING_MODEL}-data.prototxt'
    path.write_text(tf.MessageToString(nets.data_layer_net(SCALING_MODEL, sbdd, args.width)))
    label, python = next(iter(builds.items()))
    job = {'label': label, 'model': SCALING_MODEL, 'size': args.size, 'framework': 'caffe', 'mode': 'data',
           'net': str(path), 'repeat': max(args.repeat, 5), 'warmup': 1}
    return run_job(python, job, args)


def describe(run):
    check = run.get('check') or {}
    worst = f'  rel.err {max(check.values()):.1e}' if check else '  (reference)'
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
        torch_train = by_key.get((model, size, 'pytorch', 'train'))
        if label != 'pytorch' and torch_train and train:
            row['speedup_vs_pytorch'] = torch_train['median_s'] / train['median_s']
        if label in ceilings and train:
            row['fraction_of_ceiling'] = row['train_gflops'] / ceilings[label]['ceiling']['best']
        rows.append(row)
    return rows


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
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    ap = argparse.ArgumentParser(prog='python -m bench', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', default=list(MODELS), help='models at --size (default: %(default)s)')
    ap.add_argument('--size', type=int, default=500, help='square input size for --models (default: %(default)s)')
    ap.add_argument('--scaling', type=int, nargs='*', default=[250, 500, 750, 1000],
                    help=f'square input sizes for {SCALING_MODEL} (default: %(default)s; none to skip)')
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
    ap.add_argument('--no-profile', action='store_true', help='skip the per-layer Caffe profile')
    ap.add_argument('--quiet-load', type=float, default=0.3,
                    help='with --max-wait: wait until other processes use fewer cores than this')
    ap.add_argument('--max-wait', type=float, default=0, help='seconds to wait for a quiet machine before each run')
    ap.add_argument('--out', type=Path, default=HERE / 'results.json', help='results file (default: %(default)s)')
    ap.add_argument('--plot', type=Path, default=HERE / 'scaling.png', help='scaling plot (default: %(default)s)')
    ap.add_argument('--scratch', type=Path, default=OUT,
                    help='for the large raw files: weights, outputs, job files (default: %(default)s)')
    args = ap.parse_args(argv)
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
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            ap.error("PyTorch is not installed: pip install -e '.[bench]' (or pass --no-torch)")
    return args, builds


def main(argv=None):
    args, builds = parse_args(argv)
    for sub in ('jobs', 'nets'):
        (args.scratch / sub).mkdir(parents=True, exist_ok=True)
    configs = [(m, args.size) for m in args.models]
    configs += [(SCALING_MODEL, s) for s in args.scaling if (SCALING_MODEL, s) not in configs]
    cpu = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().split('\n')
                if line.startswith('model name')), platform.machine())
    settings = {k: v for k, v in vars(args).items() if k not in ('out', 'plot', 'scratch')}
    results = {'machine': {'cpu': cpu, 'cores': os.cpu_count(), 'python': platform.python_version(),
                           'date': time.strftime('%Y-%m-%d %H:%M:%S')},
               'settings': settings | {'builds': builds}}

    ceilings = {}
    for label, python in [*builds.items(), ('numpy', sys.executable)]:
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
        args.out.write_text(json.dumps(results, indent=1))  # partial results survive an interruption

    if not args.no_profile:
        results['profile'] = {}
        for label, python in builds.items():
            paths = write_nets(SCALING_MODEL, args.size, args.width, args.scratch)
            job = {'label': label, 'model': SCALING_MODEL, 'size': args.size, 'width': args.width,
                   'framework': 'caffe', 'mode': 'profile', 'net': str(paths['train']), 'repeat': args.repeat}
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
    args.out.write_text(json.dumps(results, indent=1))
    print_table(rows, ceilings)
    print(f'\n[bench] wrote {args.out}' + (f' and {args.plot}' if results['scaling'] else ''))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (RuntimeError, ValueError, NotImplementedError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
