"""One benchmark configuration, run in a fresh process: `python -m caffe_fcn.bench.worker JOB.json`.

A fresh process per configuration makes its peak resident memory (ru_maxrss) its own, and lets
the thread-count variables take effect before numpy, Caffe or PyTorch start their thread pools.
The job file names the framework, the mode, the net and where the shared arrays live:

- weights: the Caffe weights, written by the first Caffe run and read by PyTorch;
- reference: what the first run of a configuration computed (outputs, loss, gradients), which every
  later run of it (PyTorch, another Caffe build) is checked against;
- gpu: the GPU to run on (none: the CPU), and for PyTorch tf32: TensorFloat-32 and cudnn.benchmark on
  (else both off: the same float32 arithmetic as Caffe's cuBLAS calls).
"""

import json
import resource
import statistics
import sys
import time
import zlib
from pathlib import Path

from caffe_fcn.export.check import rel_error
from caffe_fcn.files import write_atomic
from caffe_fcn.export.graph import inputs as graph_inputs

LEARNED_TYPES = ('Convolution', 'Deconvolution')


def checked_params(layers):
    """The weight gradients compared between runs: the first learned layer's and score_fr's (or the last learned
    layer's), from (name, type, lr_mults) in the net's order: conv1_1 and score_fr in the VGG16 FCNs."""
    learned = [name for name, kind, mults in layers if kind in LEARNED_TYPES and not (mults and mults[0] == 0)]
    if not learned:
        return []
    return list(dict.fromkeys([learned[0], 'score_fr' if 'score_fr' in learned else learned[-1]]))


class Host:
    """The CPU as the device: nothing to wait for, no device memory."""

    def synchronize(self):
        pass

    def used_mb(self):
        return None


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
    from caffe_fcn.bench import ceiling
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


def caffe_device(caffe, gpu):
    """Select Caffe's device; the object that waits for it and reads its memory."""
    if gpu is None:
        caffe.set_mode_cpu()
        return Host()
    from caffe_fcn.bench.cuda import Runtime
    caffe.set_device(gpu)
    caffe.set_mode_gpu()  # creates the context and the cuBLAS handle: they are not the net's memory
    return Runtime()


def run_caffe(job):
    import numpy as np

    import caffe
    from caffe_fcn.bench import flops
    from caffe_fcn.bench.ceiling import loaded_blas
    from surgery import read_prototxt
    device = caffe_device(caffe, job.get('gpu'))
    baseline, gpu_baseline = maxrss_mb(), device.used_mb()
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

    last = len(net.layers) - 1

    def forward():
        net._forward(0, last)
        device.synchronize()  # a GPU runs the kernels asynchronously

    if job['mode'] == 'forward':
        times = timed(forward, job['repeat'], job['warmup'])
        out = net.outputs[0]
        observed = {'output': net.blobs[out].data}
    elif job['mode'] == 'train':
        def step():
            net.clear_param_diffs()  # as Solver::Step does
            net._forward(0, last)
            net._backward(last, 0)
            device.synchronize()
        times = timed(step, job['repeat'], job['warmup'])
        observed = {'loss': net.blobs['loss'].data.copy()}
        layers = [(layer.name, layer.type, [p.lr_mult for p in layer.param]) for layer in net_param.layer]
        observed.update({f'grad/{n}': net.params[n][0].diff.copy() for n in checked_params(layers)})
    elif job['mode'] == 'profile':
        return result | {'layers': profile_caffe(net, rows, job['repeat'], device)}
    else:
        raise ValueError(f'unknown mode {job["mode"]!r}')
    if gpu_baseline is not None:  # Caffe frees nothing during a run: what it holds now is its peak
        result |= {'gpu_mb': device.used_mb() - gpu_baseline, 'gpu_used_before_mb': gpu_baseline}
    return result | {'times': times, 'check': check(observed, job['reference'])}


def profile_caffe(net, rows, repeat, device):
    """Median seconds of each layer's forward and backward (Caffe's Split layers included), with its FLOPs."""
    net.forward()
    net.backward()
    n = len(net.layers)

    def layer_time(run, i):
        def step():
            run(i, i)
            device.synchronize()
        return timed(step, repeat, 0)
    fwd = [layer_time(net._forward, i) for i in range(n)]
    bwd = [layer_time(net._backward, i) for i in reversed(range(n))][::-1]
    by_name = {r['name']: r for r in rows}
    return [by_name.get(name, {'name': name, 'type': layer.type, 'forward': 0, 'backward': 0})
            | {'forward_s': statistics.median(f), 'backward_s': statistics.median(b)}
            for name, layer, f, b in zip(net._layer_names, net.layers, fwd, bwd, strict=True)]


# --- PyTorch -------------------------------------------------------------------

def torch_device(torch, job):
    """PyTorch's device for the job: the CPU, or the GPU with TF32 and cudnn.benchmark both on or both off."""
    if job.get('gpu') is None:
        return torch.device('cpu')
    tf32 = bool(job.get('tf32'))
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32  # on by default: off, convolutions compute in float32 as Caffe's do
    torch.backends.cudnn.benchmark = tf32
    device = torch.device('cuda', job['gpu'])
    torch.cuda.set_device(device)
    torch.zeros(1, device=device)  # the context first: it is not the net's memory
    return device


def run_torch(job):
    import numpy as np
    import torch

    from caffe_fcn.bench import torchnet
    torch.set_num_threads(job['threads'])
    device = torch_device(torch, job)
    on_gpu = device.type == 'cuda'
    synchronize = torch.cuda.synchronize if on_gpu else (lambda: None)
    baseline = maxrss_mb()
    gpu_baseline = torch.cuda.mem_get_info(device) if on_gpu else None
    layers = json.loads(Path(job['graph']).read_text())
    with np.load(job['weights']) as npz:
        weights = {}
        for key in sorted(npz.files):
            name, _ = key.rsplit('/', 1)
            weights.setdefault(name, []).append(npz[key])
    model = torchnet.build(layers, weights).to(device)
    del weights
    shapes = {blob: tuple(shape) for blob, shape in graph_inputs(layers).items()}
    feed = {k: torch.from_numpy(v).to(device) for k, v in inputs(shapes, job['seed']).items()}
    out = layers[-1]['top'][0]
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)

    if job['mode'] == 'forward':
        result = {}

        def step():
            with torch.no_grad():
                result['blobs'] = model(**feed)
            synchronize()
        times = timed(step, job['repeat'], job['warmup'])
        observed = {'output': result['blobs'][out].cpu().numpy()}
    elif job['mode'] == 'train':
        result = {}

        def step():
            for p in model.parameters():
                p.grad = None
            blobs = model(**feed)
            blobs[out].backward()
            result['loss'] = blobs[out].detach()
            synchronize()
        times = timed(step, job['repeat'], job['warmup'])
        observed = {'loss': result['loss'].cpu().numpy().reshape(())}
        names = checked_params([(spec['name'], spec['type'], spec.get('lr_mult', [])) for spec in layers])
        observed.update({f'grad/{n}': model.param(n, 0).grad.cpu().numpy() for n in names})
    else:
        raise ValueError(f'unknown mode {job["mode"]!r} for torch')
    result = {'baseline_mb': baseline, 'times': times, 'check': check(observed, job['reference'])}
    return result | (torch_gpu_memory(torch, device, gpu_baseline) if on_gpu else {})


def torch_gpu_memory(torch, device, baseline):
    """Peak memory of PyTorch's tensors (its caching allocator), what it reserved, and the device memory the
    process took beyond its context (cudaMemGetInfo, as for Caffe: cuBLAS and cuDNN workspaces included)."""
    free_before, _ = baseline
    free_after, _ = torch.cuda.mem_get_info(device)
    return {'gpu_mb': torch.cuda.max_memory_allocated(device) / 2**20,
            'gpu_reserved_mb': torch.cuda.max_memory_reserved(device) / 2**20,
            'gpu_device_mb': (free_before - free_after) / 2**20,
            'gpu_name': torch.cuda.get_device_name(device), 'torch': torch.__version__, 'cuda': torch.version.cuda,
            'cudnn': torch.backends.cudnn.version(),  # and the settings as PyTorch reports them back:
            'allow_tf32': {'matmul': torch.backends.cuda.matmul.allow_tf32, 'cudnn': torch.backends.cudnn.allow_tf32},
            'cudnn_benchmark': torch.backends.cudnn.benchmark}


def main(argv=None):
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    result = {'framework': job['framework'], 'mode': job['mode']}
    run = {'ceiling': run_ceiling, 'data': run_data_layer}.get(job['mode']) \
        or {'caffe': run_caffe, 'torch': run_torch}[job['framework']]
    result |= run(job)
    result['maxrss_mb'] = maxrss_mb()
    if 'times' in result:
        result['median_s'] = statistics.median(result['times'])
    write_atomic(job['result'], json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
