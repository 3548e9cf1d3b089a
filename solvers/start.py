"""Where a new run starts: the weights it loads (the previous stage's, the converted ILSVRC trunk, --weights or the
published ones), checked, and the net they make, as the reference's solve.py (copy_from, then bilinear
upsampling by surgery.interp)."""
from pathlib import Path

import netgen
from caffe_fcn import registry
from solvers import runs
from solvers.runs import SetupError


def trunk_weights(trunk):
    """Where `fcn-surgery convert` is asked to write the converted ILSVRC trunk (the reference's ilsvrc-nets/)."""
    return registry.REPO / 'ilsvrc-nets' / f'{trunk}-fcn.caffemodel'


def default_weights(model):
    """The previous stage's trained weights, or the converted ILSVRC trunk, as the reference solve.py uses."""
    if model.init_from is None:
        return trunk_weights(model.trunk)
    if not model.data.builtin:  # the previous stage's run on this dataset (fcn-train --stages makes them in turn)
        previous = registry.for_dataset(model.init_from, model.data)
        best = runs.default_out(previous) / 'best.caffemodel'
        if not best.is_file():
            raise SetupError(f'{model.name} starts from the trained {previous.name}, but {best} does not exist: train '
                             f'it first, pass --stages to train every stage in turn, or pass --weights')
        return best
    prev = registry.REPO / model.init_from
    final = prev / f'{model.init_from}.caffemodel'
    found = final if final.is_file() else runs.latest_snapshot(prev / 'snapshot')
    if found is None:
        raise SetupError(f'{model.name} starts from the trained {model.init_from}, but neither {final} nor a '
                         f'snapshot in {prev / "snapshot"} exists: train it first (python {model.init_from}/solve.py)'
                         ' or pass --weights')
    return found


def check_weights(model, weights):
    weights = Path(weights)
    if not weights.is_file():
        convert = f'fcn-surgery convert {model.trunk} --weights ILSVRC.caffemodel --out {trunk_weights(model.trunk)}'
        hint = f'make the converted ILSVRC trunk with `{convert}`' if model.init_from is None \
            else 'train the previous stage first'
        raise SetupError(f'weights {weights} not found: {hint}, or pass --weights W')
    return weights


def start_weights(args):
    """The checked file a new run starts from: --weights, the published weights (--from published) or the
    model's default (the previous stage's, or the converted ILSVRC trunk)."""
    model = args.model
    if args.start == 'published':
        from surgery import published

        declared = registry.get(model.name)
        if declared.published is None:
            raise SetupError(f'--from published: {model.name} has no published weights (fcn-weights list shows '
                             'those that do)')
        if args.width != declared.published.width:
            raise SetupError(f'--from published: the published {model.name} weights are for width '
                             f'{declared.published.width:g}, not --width {args.width:g}')
        return published.fetch(declared.published, args.mirror)
    return check_weights(model, args.weights or default_weights(model))


def initialize(solver, model, weights, width=1.0):
    """Load the checked starting weights, as the reference solve.py does, and make the upsampling bilinear. A
    trunk start is checked to be trained; the NYUDv2 fusion nets are built from the trunk by surgery."""
    import surgery

    if model.surgery in (None, 'load'):  # a start is partial by nature: the new layers are not in the file
        report = surgery.load_weights(solver.net, str(weights), partial=True)
        absent = sorted(previous_stage_layers(model, width) & set(report.missing))
        if absent:
            raise surgery.WeightsError(f'{weights} lacks {", ".join(absent)} of the trained {model.init_from}: the '
                                       'file is truncated or comes from another net')
        if report.missing:
            print(f'{model.name}: starting from {weights}; left at initialization: {", ".join(report.missing)}')
    else:  # a net holding the converted VGG16 trunk, from which surgery builds the fused first layers
        trunk_net = netgen.net(registry.conversion_target('vgg16'), 'deploy', width=width)
        getattr(surgery, model.surgery)(solver.net, surgery.instantiate(trunk_net, str(weights), partial=True))
    if model.init_from is None:
        surgery.check_trained_trunk(solver.net)  # every trunk layer trained: none missing, none at a filler
    surgery.interp(solver.net)


def previous_stage_layers(model, width):
    """The weighted layers that a model's trained previous stage provides (none for a trunk start)."""
    if model.init_from is None:
        return set()
    weighted = ('Convolution', 'Deconvolution', 'InnerProduct', 'Scale')
    return {layer.name for layer in netgen.net(model.init_from, 'deploy', width).layer if layer.type in weighted}


def from_published(solver, model, weights):
    """Start from the declared model's published weights: every layer that fits as it is, and in the score layers
    the rows of the classes whose names the dataset shares with it; the rest as initialized, the upsampling
    bilinear."""
    import surgery

    declared = registry.get(model.name)
    source = surgery.instantiate(netgen.net(declared, 'deploy', declared.published.width), weights=str(weights))
    kept = surgery.transfer_classes(solver.net, source, declared.tasks[0].names, model.tasks[0].names)
    surgery.interp(solver.net)
    print(f'{model.name}: started from the published {weights.name}; classes kept from it: '
          f'{", ".join(kept) if kept else "none (no class name matches)"}; the others start at zero')
