"""Where a net runs: the CPU by default, or a GPU that was checked first (training, scoring and inference)."""
import subprocess
import sys

from fcn.cli import BadInput


def use_device(gpu=None):
    """CPU by default; --gpu N is probed in a child process first (a CPU-only Caffe aborts on set_device)."""
    import caffe

    if gpu is None:
        caffe.set_mode_cpu()
        return
    probe = subprocess.run([sys.executable, '-c', f'import caffe; caffe.set_device({int(gpu)}); caffe.set_mode_gpu()'],
                           capture_output=True, text=True)
    if 'CPU-only' in probe.stderr:
        raise BadInput(f'--gpu {gpu}: this pycaffe is a CPU-only build. Rebuild it with CUDA '
                       '(`CUDA=1 make caffe`, needs the CUDA toolkit), or leave out --gpu to run on the CPU.')
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ['no message'])[-1]
        raise BadInput(f'--gpu {gpu}: GPU {gpu} is not usable ({last}); pick another with --gpu N, or leave out '
                       '--gpu to run on the CPU')
    caffe.set_device(int(gpu))
    caffe.set_mode_gpu()
