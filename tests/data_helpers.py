"""Shared by the tests/test_data*.py files: synthetic datasets, a tiny Caffe net around a data layer,
and an independent read of the files (PIL / scipy.io directly, not through datalayers)."""
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from common import SHARED

REFERENCE_DATA = SHARED / 'reference-data'


def python_layer_net(tmp_path, module, layer, params, tops, extra=''):
    """Write and load a net made of one Python data layer (plus `extra` prototxt text)."""
    import caffe
    top_lines = ' '.join(f'top: "{t}"' for t in tops)
    text = (f'layer {{ name: "{tops[0]}" type: "Python" {top_lines} '
            f'python_param {{ module: "{module}" layer: "{layer}" param_str: "{params}" }} }}\n{extra}')
    path = Path(tmp_path) / f'{layer}.prototxt'
    path.write_text(text)
    return caffe.Net(str(path), caffe.TRAIN)


def expected_image(path, mean):
    """The reference preprocessing, written out independently: RGB -> BGR, minus mean, channel-first."""
    rgb = np.array(Image.open(path), dtype=np.float32)
    return (rgb[:, :, ::-1] - np.array(mean, dtype=np.float32)).transpose(2, 0, 1)


def png(path):
    return np.array(Image.open(path))


def mat(path, variable):
    return scipy.io.loadmat(path)[variable]


def split_ids(path):
    return Path(path).read_text().split()


def voc_data(root, count=16, size=(64, 64)):
    """A data root laid out as the reference's ../data: sbdd/dataset (train) and pascal/VOC2011 (seg11valid)."""
    from caffe_fcn.datalayers.synth import synthesize

    synthesize('sbdd', root / 'sbdd', count=count, seed=0, size=size)
    synthesize('voc', root / 'pascal', count=count, seed=0, size=size)
    return root
