"""Child programs that must start bare, run by common.child_command / common.child: this module imports nothing but
the standard library, so that a child importing it has loaded nothing of this project (nor of its export extra)
before the program hides a module or checks what was imported."""
import sys
from pathlib import Path


def use_the_torch_module(rgb, out):
    """The exported siftflow_fcn8s module used as its users would, from the folder first on the child's path (run
    isolated, `python -I`, with no project on the path): load() and preprocess() on the RGB image of the .npy `rgb`,
    the two scores saved as OUT/sem.npy and OUT/geo.npy; prints its outputs and the class counts."""
    import numpy as np
    import torch

    import siftflow_fcn8s as m  # the exported file, beside its weights

    assert not any(name.split('.')[0] in ('netgen', 'caffe', 'caffe_fcn', 'surgery', 'solvers') for name in sys.modules)
    net = m.load()
    with torch.no_grad():
        sem, geo = net(m.preprocess(np.load(rgb)))
    np.save(Path(out) / 'sem.npy', sem.numpy())
    np.save(Path(out) / 'geo.npy', geo.numpy())
    print(m.SiftflowFcn8s.outputs, len(m.CLASSES['score_sem']), len(m.CLASSES['score_geo']))


def export_without_onnxruntime(out):
    """fcn-export's main (voc-fcn8s to the ONNX file `out`), its status the exit status, with onnxruntime hidden
    first (None in sys.modules makes its import fail as it does where the export extra is not installed)."""
    assert 'onnxruntime' not in sys.modules, 'onnxruntime was loaded before it could be hidden'
    sys.modules['onnxruntime'] = None
    from caffe_fcn.export.cli import main
    sys.exit(main(['voc-fcn8s', '--weights', 'w', '--out', out]))
