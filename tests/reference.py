"""The reference FCN's own Python code (../shared/reference-code), run beside this project's in tests.

`reference_code(dest)` copies it into a temporary folder with the one mechanical change Python 3 needs (its
`print` statements become calls) and returns that folder; a child process with that folder first on its path
then runs the reference's data layers (same module names as this project's: voc_layers, nyud_layers, ...),
surgery.py, score.py and solve.py. Tests skip, saying why, where the folder is absent.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from common import REPO

REFERENCE_CODE = REPO.parent / 'shared' / 'reference-code'
MODULES = ('voc_layers', 'nyud_layers', 'siftflow_layers', 'pascalcontext_layers', 'surgery', 'score')


def py3(source):
    """Python 2 source with its print statements (and the lines they continue with a backslash) as calls."""
    joined = source.replace('\\\n', ' ')
    return re.sub(r'^(\s*)print (.*)$', r'\1print(\2)', joined, flags=re.M)


def reference_code(dest):
    """The reference's modules (and its solve.py files, as `voc-fcn32s-solve.py`, ...) made runnable in `dest`."""
    if not REFERENCE_CODE.is_dir():
        pytest.skip(f'the reference code is not at {REFERENCE_CODE} (../shared/reference-code beside the project)')
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in REFERENCE_CODE.glob('*.py'):
        (dest / path.name).write_text(py3(path.read_text()))
    return dest


def run_python(code, path_first, *args, cwd='/', timeout=600):
    """`python -c code args` with `path_first` alone on PYTHONPATH (the reference's folder or this project's)."""
    env = {**os.environ, 'GLOG_minloglevel': '2', 'PYTHONPATH': str(path_first)}
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


# Run in a child process by both sides: each case's data layer, alone in a net, forwarded N times; the tops of
# every pass and the id it read go into one .npz per case. It proves which modules it ran.
FORWARD = r'''
import importlib, json, sys
import numpy as np
import caffe
cases, out = json.loads(open(sys.argv[1]).read()), sys.argv[2]
print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[3:]}))
for case in cases:
    net = caffe.Net(case['prototxt'], caffe.TRAIN)
    layer = net.layers[0]
    arrays, ids = {}, []
    for i in range(case['forwards']):
        ids.append(layer.indices[layer.idx] if hasattr(layer, 'indices') else layer.ids[layer.index])
        net.forward()
        for top in net.top_names[net._layer_names[0]]:
            arrays[f'{top}_{i}'] = net.blobs[top].data.copy()
    np.savez(f"{out}/{case['name']}.npz", ids=np.array(ids), **arrays)
'''
