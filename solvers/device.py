"""Where a net runs: the CPU by default, or a GPU that was checked first (training, scoring and inference)."""
import subprocess
import sys

from caffe_fcn.cli import BadInput

REBUILD = 'Rebuild it with CUDA (`CUDA=1 make caffe`, needs the CUDA toolkit)'


def check_gpu(gpu, python=sys.executable):
    """BadInput unless the pycaffe of `python` can run on GPU `gpu`.

    Probed in a child process: a CPU-only Caffe aborts the whole process on set_device.
    """
    probe = subprocess.run([python, '-c', f'import caffe; caffe.set_device({int(gpu)}); caffe.set_mode_gpu()'],
                           capture_output=True, text=True)
    if 'CPU-only' in probe.stderr:
        raise BadInput(f'--gpu {gpu}: this pycaffe is a CPU-only build. {REBUILD}, or leave out --gpu to run on the '
                       'CPU.')
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ['no message'])[-1]
        raise BadInput(f'--gpu {gpu}: GPU {gpu} is not usable ({last}); pick another with --gpu N, or leave out '
                       '--gpu to run on the CPU')


def use_device(gpu=None):
    """CPU by default; --gpu N only after check_gpu found it usable."""
    import caffe

    if gpu is None:
        caffe.set_mode_cpu()
        return
    check_gpu(gpu)
    caffe.set_device(int(gpu))
    caffe.set_mode_gpu()
