"""The device comparison harness of tests/test_gpu.py: run nets forward and backward on one device, in a child.

    python tests/compare_devices.py JOB.json

JOB: {"gpu": null or N, "seed": S, "out": DIR, "cases": [{"name": ..., "net": PROTOTXT, "blobs": null or [...]}]}.
Each net is built in the TEST phase and filled the same way on every device: weights He-scaled per layer name
(caffe_fcn.bench.worker.init_weights), inputs standard normal, an input named `label` integer classes 0-3 with some 255s
(the ignore label), then a forward pass, a random diff on every output and a backward pass.  DIR/NAME.npz gets
what both devices are compared on: every blob's data and diff (or only the blobs listed) and every parameter's
diff.  A child process, because a CPU-only Caffe aborts the process on set_device and because
CAFFE_COL_TILE_MB (the im2col tile size of the CPU build) is read once per process.
"""
import json
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LABEL_CLASSES, IGNORE = 4, 255
MOST = 2 ** 20  # elements kept of one array: a full-width FCN's fc6 gradient alone is 100M floats


def sample(array):
    """The array itself, or a fixed strided subset of at most MOST elements (the same on every device)."""
    flat = np.asarray(array).ravel()
    step = -(-flat.size // MOST)  # rounded up
    return flat[::step].copy() if step > 1 else np.array(array)


def fill_inputs(net, rng):
    for name in net.inputs:
        blob = net.blobs[name].data
        if name == 'label':
            labels = rng.integers(0, LABEL_CLASSES, blob.shape).astype(np.float32)
            labels[rng.random(blob.shape) < 0.1] = IGNORE
            blob[...] = labels
        else:
            blob[...] = rng.standard_normal(blob.shape, dtype=np.float32)


def run_case(caffe, case, seed):
    """Forward and backward of one net; {key: array} of what is compared."""
    from caffe_fcn.bench.worker import init_weights

    net = caffe.Net(case['net'], caffe.TEST)
    init_weights(net, seed)
    rng = np.random.default_rng([seed, zlib.crc32(case['name'].encode())])
    fill_inputs(net, rng)
    net.forward()
    for name in net.outputs:  # a loss's diff is its weight in the backward pass: random too
        net.blobs[name].diff[...] = rng.standard_normal(net.blobs[name].diff.shape, dtype=np.float32)
    net.backward()
    blobs = case.get('blobs') or list(net.blobs)
    kept = {f'data/{b}': sample(net.blobs[b].data) for b in blobs}
    kept |= {f'diff/{b}': sample(net.blobs[b].diff) for b in blobs}
    kept |= {f'param/{name}/{i}': sample(blob.diff) for name, params in net.params.items()
             for i, blob in enumerate(params)}
    return kept


def main(job_path):
    job = json.loads(Path(job_path).read_text())
    sys.path.insert(0, str(REPO))
    import caffe

    if job['gpu'] is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(job['gpu'])
        caffe.set_mode_gpu()
    for case in job['cases']:
        arrays = run_case(caffe, case, job['seed'])
        np.savez(Path(job['out']) / f'{case["name"]}.npz', **{k.replace('/', '|'): v for k, v in arrays.items()})


if __name__ == '__main__':
    main(sys.argv[1])
