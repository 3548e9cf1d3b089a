"""The reference FCN's own Python code (../shared/reference-code), run beside this project's in tests.

`reference_code(dest)` copies it into a temporary folder with the one mechanical change Python 3 needs (its
`print` statements become calls) and returns that folder; a child process with that folder first on its path
then runs the reference's data layers (same module names as this project's: voc_layers, nyud_layers, ...),
surgery.py, score.py and solve.py (the functions below, run by `common.child(..., path_first=that folder)`: this
module imports none of this project's packages, whose names the reference's modules share). Tests skip, saying why,
where the folder is absent.
"""
import importlib
import json
import re
import runpy
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


def run_script(script, *argv):
    """`python SCRIPT ARGV` (the reference's solve.py, its infer.py), run from the child's working directory."""
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name='__main__')


def forward_data_layers(cases, out, *modules):
    """Run by both sides, each with its own modules first on the path: every case (of the JSON file `cases`)'s
    data layer, alone in a net, forwarded case['forwards'] times; the tops of every pass and the id it read go into
    one OUT/NAME.npz per case. It proves which modules it ran: its first line is {module: file} of `modules`."""
    import caffe
    import numpy as np

    print(json.dumps({m: importlib.import_module(m).__file__ for m in modules}))
    for case in json.loads(Path(cases).read_text()):
        net = caffe.Net(case['prototxt'], caffe.TRAIN)
        layer = net.layers[0]
        arrays, ids = {}, []
        for i in range(case['forwards']):
            ids.append(layer.indices[layer.idx] if hasattr(layer, 'indices') else layer.ids[layer.index])
            net.forward()
            for top in net.top_names[net._layer_names[0]]:
                arrays[f'{top}_{i}'] = net.blobs[top].data.copy()
        np.savez(f"{out}/{case['name']}.npz", ids=np.array(ids), **arrays)
