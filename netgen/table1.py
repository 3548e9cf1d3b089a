"""CVPR 2015 Table 1, complete: the columns computed from the nets, a forward pass timed here, and the paper's.

Conv layers, parameters, receptive field and stride come from the deploy nets (netgen.geometry); the forward
time is measured on this machine's Caffe at SIZE x SIZE, beside the paper's K40c times and mean IU.
"""
import statistics
import time

from caffe_fcn import registry

from . import geometry


def paper_models():
    """The models with a column in Table 1 (their `paper`), in the paper's order: shallow to deep."""
    return sorted((m for m in registry.MODELS.values() if m.paper), key=lambda m: m.paper.depth)

RF_NOTE = ('the paper\'s 907 for GoogLeNet includes its final 7x7 average pooling, which FCN-GoogLeNet drops: '
           'its score layer sees 907 - 6 x 32 = 715 pixels')


def forward_ms(net, size, repeat):
    """Median wall time of one forward pass at size x size, after one untimed pass."""
    net.blobs['data'].reshape(1, 3, size, size)
    net.reshape()
    net.forward()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        net.forward()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def rows(instantiate, size=500, repeat=3):
    """{model: (its totals, forward ms here, Paper)} for the three FCNs of Table 1; `instantiate` makes a Caffe
    net of a NetParameter (surgery.instantiate)."""
    import netgen

    found = {}
    for model in paper_models():
        proto = netgen.net(model, 'deploy')
        net = instantiate(proto)
        found[model.name] = (geometry.totals(proto), forward_ms(net, size, repeat), model.paper)
        del net
    return found


def render(found, size):
    lines = [f'{"":<26}' + ''.join(f'{paper.title:>24}' for _, _, paper in found.values()),
             f'{"(here | paper)":<26}']

    def line(label, here, paper):
        lines.append(f'{label:<26}' + ''.join(f'{f"{h} | {p}":>24}' for h, p in zip(here, paper, strict=True)))

    totals = [t for t, _, _ in found.values()]
    papers = [p for _, _, p in found.values()]
    line('conv layers', [t['depth'] for t in totals], [p.depth for p in papers])
    line('parameters (M)', [f'{t["parameters"] / 1e6:.1f}' for t in totals], [p.millions for p in papers])
    line('receptive field', [t['receptive_field'] for t in totals], [p.receptive_field for p in papers])
    line('max stride', [t['stride'] for t in totals], [p.stride for p in papers])
    line(f'forward ms ({size}x{size})', [f'{ms:.0f}' for _, ms, _ in found.values()],
         [f'{p.forward_ms} K40c' for p in papers])
    lines.append(f'{"mean IU (paper)":<26}' + ''.join(f'{p.mean_iu:>24}' for p in papers))
    lines.append(f'note: {RF_NOTE}; the time here is Caffe on this machine\'s CPU (see caffe_fcn/bench/README.md).')
    return '\n'.join(lines)
