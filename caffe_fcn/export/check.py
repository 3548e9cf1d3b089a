"""An export checked against Caffe: the same inputs through both, the scores' relative error and the argmax
agreement per output."""
import importlib.util
import sys
from dataclasses import dataclass

import numpy as np

MAX_RELATIVE_ERROR = 1e-4
MIN_AGREEMENT = 0.999


@dataclass
class Comparison:
    """One output of one check input: relative L2 error of the scores and the fraction of pixels whose argmax
    (the predicted class) agrees."""
    input: str
    output: str
    relative_error: float
    agreement: float
    constant: bool  # Caffe's scores do not vary: the comparison says little

    @property
    def passed(self):
        return self.relative_error <= MAX_RELATIVE_ERROR and self.agreement >= MIN_AGREEMENT


def rel_error(got, want):
    """Relative L2 error of `got` against `want`, in float64 (a float32 sum over millions of values drifts)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ValueError(f'shape {got.shape} differs from the reference {want.shape}')
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def random_inputs(channels, h, w, seed):
    """{input: 1 x C x H x W float32} spread like mean-subtracted pixels."""
    rng = np.random.default_rng(seed)
    return {blob: rng.uniform(-128, 128, (1, c, h, w)).astype(np.float32) for blob, c in channels.items()}


CHEAP_SIDES = (32, 64, 128, 256)  # a cached export's agreement check: the smallest the net takes


def smallest_case(proto, channels, seed=0):
    """(label, {input: 1 x C x H x W}): random inputs of the smallest square side in CHEAP_SIDES at which no blob
    of the deploy net `proto` comes out empty, for a check that costs little."""
    from netgen.geometry import blob_shapes

    side = next((s for s in CHEAP_SIDES if all(min(shape) > 0 for shape in blob_shapes(proto, s, s).values())),
                CHEAP_SIDES[-1])
    return f'{side}x{side} random', random_inputs(channels, side, side, seed)


def caffe_outputs(net, inputs):
    """{output: scores} of the Caffe net for {input: 1 x C x H x W}."""
    from solvers.deploy import forward

    forward(net, {blob: array[0] for blob, array in inputs.items()})
    return {out: net.blobs[out].data.copy() for out in net.outputs}


def compare(label, expected, got):
    """A Comparison per output of the Caffe `expected` and the export's `got` ({output: scores})."""
    rows = []
    for out, reference in expected.items():
        scores = got[out]
        if scores.shape != reference.shape:
            raise ValueError(f'{label}: output {out} is {scores.shape} in the export, {reference.shape} in Caffe')
        error = rel_error(scores, reference)
        agreement = float(np.mean(scores.argmax(1) == reference.argmax(1)))
        rows.append(Comparison(label, out, error if np.isfinite(error) else float('inf'), agreement,
                               bool(np.ptp(reference) == 0)))
    return rows


def onnx_runner(path):
    """A function {input: array} -> {output: array} running the ONNX file on onnxruntime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return lambda inputs: dict(zip(names, session.run(names, inputs), strict=True))


def load_module(path, name='fcn_export_check'):
    """Import a generated module file by path, as its user would, without touching sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(name, None)
    spec.loader.exec_module(module)
    return module


def torch_runner(module_path, weights_path, class_name):
    """A function {input: array} -> {output: array} running the generated module with its state_dict."""
    import torch

    module = load_module(module_path)
    net = module.load(weights_path)
    cls = getattr(module, class_name)

    def run(inputs):
        with torch.no_grad():
            result = net(*(torch.from_numpy(inputs[blob]) for blob in cls.inputs))
        result = result if isinstance(result, tuple) else (result,)
        return {out: r.numpy() for out, r in zip(cls.outputs, result, strict=True)}
    return run


def check(net, run, cases):
    """Comparisons of Caffe's `net` and the export's `run` on each case (label, {input: array})."""
    rows = []
    for label, inputs in cases:
        rows += compare(label, caffe_outputs(net, inputs), run(inputs))
    return rows


def report(rows):
    """The comparison table, one line per input and output."""
    lines = [f'{"input":<28} {"output":<12} {"rel. error":>10}  {"argmax agrees":>13}']
    for r in rows:
        note = '  (Caffe\'s scores are constant here: a weak check)' if r.constant else ''
        mark = '' if r.passed else '  FAIL'
        lines.append(f'{r.input:<28} {r.output:<12} {r.relative_error:>10.2e}  {100 * r.agreement:>12.3f}%{mark}{note}')
    return '\n'.join(lines)
