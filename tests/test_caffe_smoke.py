"""The foundation: pycaffe built from source imports, trains with a Python layer, crops, saves and loads."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.coord_map import crop

PY_LAYER = textwrap.dedent('''
    import numpy as np
    import caffe

    class BlobsLayer(caffe.Layer):
        """Two separable classes of 8x8 images: class 1 is brighter in its left half."""

        def setup(self, bottom, top):
            self.rng = np.random.RandomState(0)

        def reshape(self, bottom, top):
            top[0].reshape(16, 1, 8, 8)
            top[1].reshape(16)

        def forward(self, bottom, top):
            label = self.rng.randint(0, 2, 16)
            data = self.rng.randn(16, 1, 8, 8) * 0.3
            data[label == 1, :, :, :4] += 1.0
            top[0].data[...] = data
            top[1].data[...] = label

        def backward(self, top, propagate_down, bottom):
            pass
''')


def test_pycaffe_imports_from_the_venv():
    assert sys.prefix != sys.base_prefix, 'tests run inside the project venv'
    assert caffe.__file__.startswith(sys.prefix)
    assert 'Python' in caffe.layer_type_list()
    for layer in ('Crop', 'Deconvolution', 'Scale', 'SoftmaxWithLoss', 'Eltwise', 'Dropout'):
        assert layer in caffe.layer_type_list()


def test_import_needs_no_environment_variables():
    env = {k: v for k, v in os.environ.items() if k not in ('LD_LIBRARY_PATH', 'PYTHONPATH')}
    out = subprocess.run([sys.executable, '-c', 'import caffe; caffe.set_mode_cpu(); print(caffe.__version__)'],
                         env=env, cwd='/', capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_python_data_layer_trains_and_loss_falls(tmp_path, monkeypatch):
    _write(tmp_path, 'smoke_blobs.py', PY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    n = caffe.NetSpec()
    n.data, n.label = L.Python(module='smoke_blobs', layer='BlobsLayer', ntop=2)
    n.fc = L.InnerProduct(n.data, num_output=2, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.fc, n.label)
    net_path = _write(tmp_path, 'train.prototxt', str(n.to_proto()))
    solver_path = _write(tmp_path, 'solver.prototxt', f'train_net: "{net_path}"\nbase_lr: 0.1\nmomentum: 0.9\n'
                         'lr_policy: "fixed"\nmax_iter: 100\ndisplay: 0\nrandom_seed: 1\n')
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(solver_path)
    losses = []
    for _ in range(30):
        solver.step(1)
        losses.append(float(solver.net.blobs['loss'].data))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert solver.iter == 30


def test_coord_map_crop_computes_the_fcn_offset(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 64, 64]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3, pad=100)
    n.pool = L.Pooling(n.conv, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.up = L.Deconvolution(n.pool, convolution_param=dict(num_output=2, kernel_size=4, stride=2, bias_term=False))
    n.score = crop(n.up, n.data)
    crop_param = n.to_proto().layer[-1].crop_param
    # derived from the graph: pad 100, less the 3x3 kernel reach, plus the deconvolution overhang.
    assert crop_param.axis == 2
    assert crop_param.offset == [100]
    net = caffe.Net(_write(tmp_path, 'net.prototxt', str(n.to_proto())), caffe.TEST)
    net.forward()
    assert net.blobs['score'].data.shape == (1, 2, 64, 64)


def test_weights_save_and_load(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, weight_filler=dict(type='gaussian', std=1),
                           bias_filler=dict(type='gaussian', std=1))
    path = _write(tmp_path, 'net.prototxt', str(n.to_proto()))
    a = caffe.Net(path, caffe.TEST)
    weights = str(tmp_path / 'w.caffemodel')
    a.save(weights)
    b = caffe.Net(path, caffe.TEST, weights=weights)
    for i in range(2):
        assert np.any(a.params['conv'][i].data != 0)
        np.testing.assert_array_equal(a.params['conv'][i].data, b.params['conv'][i].data)
    a.blobs['data'].data[...] = np.random.RandomState(0).randn(1, 3, 8, 8)
    b.blobs['data'].data[...] = a.blobs['data'].data
    np.testing.assert_array_equal(a.forward()['conv'], b.forward()['conv'])


def test_pycaffe_modules_are_the_builds_own_and_work():
    """net_spec, coord_map and the regenerated caffe_pb2 come from the installed build and do their jobs: a
    padded convolution undone by a deconvolution is cropped by its padding, and the message reads back."""
    import caffe.coord_map
    import caffe.net_spec
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    package = Path(caffe.__file__).parent
    for module in (caffe.net_spec, caffe.coord_map, caffe_pb2):
        assert Path(module.__file__).parent in (package, package / 'proto'), module.__file__
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv = L.Convolution(n.data, kernel_size=3, pad=2, num_output=1)
    n.up = L.Deconvolution(n.conv, convolution_param=dict(kernel_size=3, num_output=1))
    n.crop = crop(n.up, n.data)
    text = str(n.to_proto())
    layer = text_format.Parse(text, caffe_pb2.NetParameter()).layer[-1]
    assert (layer.type, list(layer.crop_param.offset)) == ('Crop', [2])
