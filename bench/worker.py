"""One benchmark configuration, run in a fresh process: `python -m bench.worker JOB.json`.

A fresh process per configuration makes its peak resident memory (ru_maxrss) its own, and lets
the thread-count variables take effect before numpy, Caffe or PyTorch start their thread pools.
The job file names the framework, the mode, the net and where the shared arrays live:

- weights: the Caffe weights, written by the first Caffe run and read by PyTorch;
- reference: what the first run of a configuration computed (outputs, loss, gradients), which every
  later run of it (PyTorch, another Caffe build) is checked against.
"""

import json
import resource
import statistics
import sys
import time
import zlib
from pathlib import Path

CHECKED_PARAMS = ('conv1_1', 'score_fr')  # weight gradients compared between runs: first and last learnable


def maxrss_mb():
    """This process's peak resident memory in MB.

    VmHWM, the high-water mark of this process's own memory map.  ru_maxrss would do on a process of
    its own, but Linux carries it over from the parent across fork + exec, so a small child of a
    large parent would report the parent's size.
    """
    for line in Path('/proc/self/status').read_text().split('\n'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step, repeat, warmup):
    times = []
    for i in range(warmup + repeat):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def rel_error(got, want):
    import numpy as np
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ValueError(f'shape {got.shape} differs from the reference {want.shape}')
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def check(observed, reference_path):
    """Write `observed` as the reference if there is none yet, else {name: relative error} against it."""
    import numpy as np
    path = Path(reference_path)
    if not path.exists():
        np.savez(path, **observed)
        return None
    with np.load(path) as ref:
        return {name: rel_error(value, ref[name]) for name, value in observed.items()}


def inputs(shapes, seed):
    """A random image and label map with some void pixels, the same for every run.

    Unit scale, so that with random weights the scores stay far from where Caffe's SoftmaxWithLoss
    clamps probabilities at FLT_MIN (its loss would then differ from an exact cross-entropy).
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shapes['data'], dtype=np.float32)
    feed = {'data': data}
    if 'label' in shapes:
        label = rng.integers(0, 21, shapes['label']).astype(np.float32)
        label[rng.random(shapes['label']) < 0.05] = 255
        feed['label'] = label
    return feed


def init_weights(net, seed):
    """He-scaled Gaussian weights, small biases; per layer from its name, so the same at every input size."""
    import numpy as np
    weights = {}
    for name, blobs in net.params.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        arrays = []
        for i, blob in enumerate(blobs):
            shape = blob.data.shape
            fan_in = max(1, int(np.prod(shape[1:])))
            scale = np.sqrt(2.0 / fan_in) if i == 0 else 0.01
            blob.data[...] = rng.standard_normal(shape, dtype=np.float32) * scale
            arrays.append(blob.data)
        weights[name] = arrays
    return weights


# --- Caffe ---------------------------------------------------------------------

def run_ceiling(job):
    """The sgemm ceiling of the BLAS that libcaffe links ('caffe') or of numpy's ('numpy')."""
    from bench import ceiling
    shapes = [tuple(s) for s in job.get('shapes', ceiling.SHAPES)]
    if job['framework'] == 'numpy':
        return {'blas': 'numpy', 'ceiling': ceiling.ceiling(ceiling.numpy_sgemm, shapes, job['repeat'])}
    import caffe  # noqa: F401  (loads libcaffe and its BLAS)
    blas = ceiling.loaded_blas()
    return {'blas': blas, 'ceiling': ceiling.ceiling(ceiling.cblas_sgemm(blas), shapes, job['repeat'])}


def run_data_layer(job):
    """Seconds per image of the Python data layer (read JPEG + labels, subtract mean, reshape)."""
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(job['net'], caffe.TRAIN)
    times = timed(lambda: net._forward(0, 0), job['repeat'], job['warmup'])
    return {'times': times, 'shape': list(net.blobs[net.outputs[0]].data.shape)}


def run_caffe(job):
    import numpy as np

    import caffe
    from bench import flops
    from bench.ceiling import loaded_blas
    from surgery import read_prototxt
    caffe.set_mode_cpu()
    baseline = maxrss_mb()
    net_param = read_prototxt(job['net'])
    net = caffe.Net(job['net'], caffe.TEST)
    weights = init_weights(net, job['seed'])
    if job.get('weights') and not Path(job['weights']).exists():
        np.savez(job['weights'], **{f'{name}/{i}': a for name, arrays in weights.items() for i, a in enumerate(arrays)})
    del weights
    for name, value in inputs({b: net.blobs[b].data.shape for b in net.inputs}, job['seed']).items():
        net.blobs[name].data[...] = value
    rows = flops.per_layer(net_param, net)  # Caffe's own Split layers (no FLOPs) are not in net_param
    result = {'baseline_mb': baseline, 'blas': loaded_blas(),
              'flops': dict(zip(('forward', 'train'), flops.totals(rows), strict=True))}

    if job['mode'] == 'forward':
        times = timed(net.forward, job['repeat'], job['warmup'])
        out = net.outputs[0]
        observed = {'output': net.blobs[out].data}
    elif job['mode'] == 'train':
        def step():
            net.clear_param_diffs()  # as Solver::Step does
            net.forward()
            net.backward()
        times = timed(step, job['repeat'], job['warmup'])
        observed = {'loss': net.blobs['loss'].data.copy()}
        observed.update({f'grad/{n}': net.params[n][0].diff.copy() for n in CHECKED_PARAMS if n in net.params})
    elif job['mode'] == 'profile':
        return result | {'layers': profile_caffe(net, rows, job['repeat'])}
    else:
        raise ValueError(f'unknown mode {job["mode"]!r}')
    return result | {'times': times, 'check': check(observed, job['reference'])}


def profile_caffe(net, rows, repeat):
    """Median seconds of each layer's forward and backward (Caffe's Split layers included), with its FLOPs."""
    net.forward()
    net.backward()
    n = len(net.layers)
    fwd = [timed(lambda i=i: net._forward(i, i), repeat, 0) for i in range(n)]
    bwd = [timed(lambda i=i: net._backward(i, i), repeat, 0) for i in reversed(range(n))][::-1]
    by_name = {r['name']: r for r in rows}
    return [by_name.get(name, {'name': name, 'type': layer.type, 'forward': 0, 'backward': 0})
            | {'forward_s': statistics.median(f), 'backward_s': statistics.median(b)}
            for name, layer, f, b in zip(net._layer_names, net.layers, fwd, bwd, strict=True)]


# --- PyTorch -------------------------------------------------------------------

def run_torch(job):
    import numpy as np
    import torch

    from bench import torchnet
    torch.set_num_threads(job['threads'])
    baseline = maxrss_mb()
    layers = json.loads(Path(job['graph']).read_text())
    with np.load(job['weights']) as npz:
        weights = {}
        for key in sorted(npz.files):
            name, _ = key.rsplit('/', 1)
            weights.setdefault(name, []).append(npz[key])
    model = torchnet.build(layers, weights)
    del weights
    shapes = {spec['top'][0]: tuple(spec['shape'][0]) for spec in layers if spec['type'] == 'Input'}
    feed = {k: torch.from_numpy(v) for k, v in inputs(shapes, job['seed']).items()}
    out = layers[-1]['top'][0]

    if job['mode'] == 'forward':
        result = {}

        def step():
            with torch.no_grad():
                result['blobs'] = model(**feed)
        times = timed(step, job['repeat'], job['warmup'])
        observed = {'output': result['blobs'][out].numpy()}
    elif job['mode'] == 'train':
        result = {}

        def step():
            for p in model.parameters():
                p.grad = None
            blobs = model(**feed)
            blobs[out].backward()
            result['loss'] = blobs[out].detach()
        times = timed(step, job['repeat'], job['warmup'])
        observed = {'loss': result['loss'].numpy().reshape(())}
        observed.update({f'grad/{n}': model.param(n, 0).grad.numpy()
                         for n in CHECKED_PARAMS if model.param(n, 0) is not None})
    else:
        raise ValueError(f'unknown mode {job["mode"]!r} for torch')
    return {'baseline_mb': baseline, 'times': times, 'check': check(observed, job['reference'])}


def main(argv=None):
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    result = {'framework': job['framework'], 'mode': job['mode']}
    run = {'ceiling': run_ceiling, 'data': run_data_layer}.get(job['mode']) \
        or {'caffe': run_caffe, 'torch': run_torch}[job['framework']]
    result |= run(job)
    result['maxrss_mb'] = maxrss_mb()
    if 'times' in result:
        result['median_s'] = statistics.median(result['times'])
    Path(job['result']).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
