"""A few hundred mutated caffemodels, prototxts, solverstates and images through the loaders that guard Caffe:
each loads or is refused with the project's own error; none aborts the process (exit >= 128) or raises anything
else (which would reach a user as a traceback). Seeded, so a failure repeats."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FUZZ = """
    import json, random, sys, traceback
    from pathlib import Path
    import caffe, numpy as np
    from PIL import Image
    import netgen, surgery
    from datalayers import DatasetError, io
    from fcn import registry
    from fcn.cli import BadInput
    from solvers import driver, infer, runs

    random.seed(0)
    work, data = Path(sys.argv[1]), Path(sys.argv[2])
    model = registry.get('voc-fcn32s')
    proto = netgen.net(model, 'deploy', width=1 / 32)
    net = surgery.instantiate(proto)
    surgery.stand_in_trunk(net, seed=0)
    surgery.interp(net)
    net.save(str(work / 'good.caffemodel'))
    prepared = runs.prepare(model, work / 'run', 1 / 32, data)
    solver = caffe.SGDSolver(str(prepared.solver))
    surgery.load_weights(solver.net, str(work / 'good.caffemodel'))
    solver.step(1)
    state_path = driver.snapshot(solver, work / 'run').with_suffix('.solverstate')  # where prepare aims Caffe
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8)).save(work / 'good.png')
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 32, 3), np.uint8)).save(work / 'good.jpg')
    small = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\\n'
             'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 '
             'kernel_size: 3 pad: 1 } }\\nlayer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { '
             'pool: MAX kernel_size: 2 stride: 2 } }\\n')

    def mutate(data):
        data = bytearray(data)
        for _ in range(random.randint(1, 4)):
            kind, at = random.random(), random.randrange(max(len(data), 1))
            if kind < 0.4 and data:
                data[at] = random.randrange(256)
            elif kind < 0.6:
                data = data[:at]
            elif kind < 0.8:
                data[at:at] = data[at:at + random.randint(1, 64)]
            else:
                data[at:at + random.randint(1, 16)] = b''
        return bytes(data)

    def text_mutate(text):
        lines = text.splitlines()
        for _ in range(random.randint(1, 3)):
            i = random.randrange(len(lines))
            kind = random.random()
            if kind < 0.3:
                del lines[i]
            elif kind < 0.6:
                lines[i] = ''.join(c if not c.isdigit() else str(random.choice([0, 1, 9, 99, 12345])) for c in lines[i])
            elif kind < 0.8:
                lines[i] = lines[i].replace(random.choice(['"c"', '"p"', '"data"', 'Convolution', 'MAX']),
                                            random.choice(['"zz"', '"c"', 'Pooling', 'Nope', '-1']))
            else:
                lines.insert(i, lines[random.randrange(len(lines))])
        return '\\n'.join(lines)

    ours = (surgery.WeightsError, DatasetError, BadInput, ValueError)
    counts = {'loaded': 0, 'refused': 0, 'unexpected': []}

    def attempt(kind, i, load):
        print(kind, i, flush=True)  # the last line names the case if Caffe aborts the process
        try:
            load()
            counts['loaded'] += 1
        except ours:
            counts['refused'] += 1
        except Exception:
            counts['unexpected'].append(f'{kind} {i}: ' + traceback.format_exc().splitlines()[-1])

    good_model = (work / 'good.caffemodel').read_bytes()
    for i in range(100):
        path = work / f'm{i}.caffemodel'
        path.write_bytes(mutate(good_model))
        attempt('caffemodel', i, lambda: surgery.load_weights(net, str(path)))
    for i in range(40):
        path = work / f'n{i}.prototxt'
        path.write_text(text_mutate(small))
        attempt('prototxt', i, lambda: surgery.instantiate(str(path)))
    good_state = state_path.read_bytes()
    for i in range(100):
        path = state_path.parent / f's{i}.solverstate'
        path.write_bytes(mutate(good_state))
        attempt('solverstate', i, lambda: driver.resume(solver, path))
    for i in range(100):
        suffix = ('.png', '.jpg')[i % 2]
        path = work / f'i{i}{suffix}'
        path.write_bytes(mutate((work / f'good{suffix}').read_bytes()))
        attempt('image', i, lambda: (infer.read_image(path), io.read_rgb(path)))
    print(json.dumps(counts))
"""


@pytest.mark.slow
def test_mutated_inputs_never_abort_or_escape(tmp_path):
    from datalayers.synth import synthesize

    data = tmp_path / 'data'
    synthesize('sbdd', data / 'sbdd', count=4, seed=0, size=(32, 32))
    synthesize('voc', data / 'pascal', count=4, seed=0, size=(32, 32))
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'GLOG_minloglevel': '2'}
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(FUZZ), str(tmp_path), str(data)],
                            capture_output=True, text=True, env=env, cwd='/', timeout=900)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else '(nothing)'
    assert result.returncode == 0, f'exit {result.returncode} at {last}: {result.stderr[-2000:]}'
    counts = json.loads(last)
    assert counts['unexpected'] == []
    assert counts['refused'] > 150 and counts['loaded'] > 10  # the mutations reach both outcomes
