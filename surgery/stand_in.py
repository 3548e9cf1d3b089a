"""Seeded stand-in weights for smoke tests and the demo, where no trained ILSVRC classifier is at hand."""
import numpy as np

from .bilinear import upsampling_layers

# Mean-subtracted pixels spread over about +-60: the first layer divides by this so activations start near 1.
PIXEL_SCALE = 64.0
NOISE = 0.1  # of the He standard deviation, on top of the identity


def stand_in_trunk(net, seed):
    """A stand-in for the converted ILSVRC trunk (the demo's, smoke tests'): a trunk that starts by passing the
    image through. It is not the paper's initialization, which is `fcn-surgery convert` of a trained classifier.

    A randomly initialized plain 16-layer net learns far too slowly for a demo, so every trunk layer starts as
    the identity on its first channels (the centre tap; the first layer keeps +x and -x of each color so the
    ReLUs lose nothing) plus a little He-normal noise, and the remaining channels He-normal. The score layers
    start at zero as the reference's do; the upsampling layers are left to surgery.interp.
    """
    rng = np.random.default_rng(seed)
    fixed = set(upsampling_layers(net))
    # convolutions and fully connected layers (a classifier's); Scale layers (at-once training) keep their factors
    trunk = [name for name in net.params if name not in fixed and not name.startswith('score')
             and net.params[name][0].data.ndim in (2, 4)]
    for index, name in enumerate(trunk):
        blobs = net.params[name]
        kernel = blobs[0].data
        if kernel.ndim == 2:  # fully connected: the kernel of a 1 x 1 convolution (a view: writes go through)
            kernel = kernel.reshape(*kernel.shape, 1, 1)
        out_ch, in_ch, kh, kw = kernel.shape
        he = np.sqrt(2 / (in_ch * kh * kw))
        kernel[...] = rng.normal(0, he, kernel.shape)
        if index == 0:
            signs = [(c, sign) for c in range(in_ch) for sign in (1, -1)][:out_ch]
            for o, (c, sign) in enumerate(signs):
                kernel[o] *= NOISE
                kernel[o, c, kh // 2, kw // 2] += sign / PIXEL_SCALE
        else:
            for c in range(min(in_ch, out_ch)):
                kernel[c] *= NOISE
                kernel[c, c, kh // 2, kw // 2] += 1.0
        if len(blobs) > 1:
            blobs[1].data[...] = 0
