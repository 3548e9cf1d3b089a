"""python -m caffe_fcn.bench --infer: fcn-infer's throughput on a folder of synthetic 500x375 JPEGs with each
engine, run the way a user runs it (a child process per engine, the images read ahead, label maps and overlays written),
beside the forward passes alone, so the overhead of reading and writing shows; peak memory from the child's
rusage. The onnxruntime export is made (and checked against Caffe) before anything is timed."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from caffe_fcn.files import write_atomic

MODEL = 'voc-fcn8s'
SIZE = (375, 500)  # height x width: PASCAL's most common image size
ENGINES = ('caffe', 'onnxruntime')
BIN = Path(sys.executable).parent


def child(command, env, log):
    """(exit status, peak resident MB) of one child process, its stderr into `log`."""
    with open(log, 'w') as err:
        proc = subprocess.Popen([str(c) for c in command], env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def he_weights(model, width, path, seed=0):
    """A caffemodel of He-scaled random weights for every layer of the model's deploy net (the stand-in weights
    of fcn-surgery init leave the score layers at zero, which would make every score map constant)."""
    import netgen
    import surgery
    from caffe_fcn.bench.worker import init_weights

    net = surgery.instantiate(netgen.net(model, 'deploy', width))
    init_weights(net, seed)
    return surgery.save_net(net, path, model=model)


def run(args):
    from caffe_fcn.datalayers.synth import synthesize

    scratch = args.scratch / 'infer'
    shutil.rmtree(scratch, ignore_errors=True)
    images = synthesize('folder', scratch / 'data', count=args.images, seed=0, size=SIZE) / 'images'
    weights = scratch / 'weights.caffemodel'
    threads = str(args.threads)
    env = {**os.environ, 'FCN_CACHE': str(scratch / 'cache'), 'OMP_NUM_THREADS': threads,
           'MKL_NUM_THREADS': threads, 'OPENBLAS_NUM_THREADS': threads, 'GLOG_minloglevel': '2'}
    he_weights(MODEL, args.width, weights)
    infer = [BIN / 'fcn-infer', MODEL, '--weights', weights, '--width', str(args.width)]
    warm = [*infer, '--engine', 'onnxruntime', sorted(images.iterdir())[0], '--out', scratch / 'warm']
    if child(warm, env, scratch / 'export.log')[0]:
        raise SystemExit(f'[bench] the onnxruntime export failed: see {scratch / "export.log"}')
    results = {'model': MODEL, 'width': args.width, 'images': args.images, 'size': f'{SIZE[1]}x{SIZE[0]}',
               'threads': args.threads, 'engines': {}}
    for engine in ENGINES:
        report = scratch / f'{engine}.json'
        status, peak = child([*infer, '--engine', engine, images, '--out', scratch / f'out-{engine}', '--report',
                              report], env, scratch / f'{engine}.log')
        if status:
            raise SystemExit(f'[bench] fcn-infer --engine {engine} failed: see {scratch / f"{engine}.log"}')
        got = json.loads(report.read_text())
        results['engines'][engine] = {
            'images_per_second': got['images_per_second'], 'seconds': got['seconds'],
            'forward_seconds': got['forward_seconds'], 'forward_images_per_second':
                round(got['images'] / got['forward_seconds'], 3),
            'overhead': round(got['seconds'] / got['forward_seconds'] - 1, 4), 'peak_rss_mb': round(peak)}
        write_atomic(args.out, json.dumps(results, indent=1))  # partial results survive an interruption
    caffe, ort = (results['engines'][e]['images_per_second'] for e in ENGINES)
    results['onnxruntime_over_caffe'] = round(ort / caffe, 3)
    write_atomic(args.out, json.dumps(results, indent=1))
    print(table(results))
    print(f'\n[bench] wrote {args.out}')
    return 0


def table(results):
    lines = [f'fcn-infer {results["model"]} (width {results["width"]:g}) on {results["images"]} synthetic '
             f'{results["size"]} JPEGs, {results["threads"]} threads',
             f'{"engine":<12} {"images/s":>9} {"forward only":>13} {"overhead":>9} {"peak RSS":>9}']
    for engine, r in results['engines'].items():
        lines.append(f'{engine:<12} {r["images_per_second"]:>9.3f} {r["forward_images_per_second"]:>11.3f}/s '
                     f'{100 * r["overhead"]:>8.1f}% {r["peak_rss_mb"]:>6} MB')
    lines.append(f'onnxruntime / caffe images per second: {results["onnxruntime_over_caffe"]:.2f}x')
    return '\n'.join(lines)
