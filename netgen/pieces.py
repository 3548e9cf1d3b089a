"""Shared pieces of the FCN nets, as small functions on a caffe.NetSpec.

Every builder names its layers in the NetSpec it is given (NetSpec names a layer after its first top), takes a
`width` factor that scales channel counts (never the number of classes), and returns the tops the next piece
needs. Nothing here knows about a particular model: models.py composes these pieces.
"""
import numpy as np
from caffe import coord_map
from caffe import layers as L
from caffe import params as P

LEARNED = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
FIXED = [dict(lr_mult=0)]
LEARNED_UPSAMPLING = [dict(lr_mult=1, decay_mult=1)]  # CVPR 2015 sec. 4.3: learned from a bilinear start

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (width, convs) per stage, then a pool

# GoogLeNet inception widths: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection (Szegedy et al., Table 1)
INCEPTIONS = {
    '3a': (64, 96, 128, 16, 32, 32), '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64), '4b': (160, 112, 224, 24, 64, 64), '4c': (128, 128, 256, 24, 64, 64),
    '4d': (112, 144, 288, 32, 64, 64), '4e': (256, 160, 320, 32, 128, 128),
    '5a': (256, 160, 320, 32, 128, 128), '5b': (384, 192, 384, 48, 128, 128),
}
LRN = dict(local_size=5, alpha=1e-4, beta=0.75)


def scaled(channels, width, multiple=1):
    """`channels` times `width`, rounded to a positive multiple of `multiple` (grouped convs need even widths)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


def conv(bottom, nout, ks, pad=0, stride=1, group=None, param=LEARNED):
    extra = {} if stride is None else {'stride': stride}
    if group is not None:
        extra['group'] = group
    if param:
        extra['param'] = param
    return L.Convolution(bottom, num_output=nout, kernel_size=ks, pad=pad, **extra)


def conv_relu(n, name, relu, bottom, nout, ks, **kwargs):
    n[name] = conv(bottom, nout, ks, **kwargs)
    n[relu] = L.ReLU(n[name], in_place=True)
    return n[relu]


def max_pool(bottom, ks=2, stride=2, pad=0):
    extra = {'pad': pad} if pad else {}
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride, **extra)


def dropout(n, name, bottom, ratio, train):
    """In-place dropout; deploy nets leave it out (as the reference deploy net does)."""
    if not train:
        return bottom
    n[name] = L.Dropout(bottom, dropout_ratio=ratio, in_place=True)
    return n[name]


IDENTITY = (None, 1, 0)  # coord_map's map of a pointwise layer


def layer_map(fn):
    """coord_map's coordinate map of one layer; a channel Concat (inception joining branches of one geometry)
    maps coordinates as the pointwise layers do, which coord_map does not list."""
    return IDENTITY if fn.type_name == 'Concat' else coord_map.coord_map(fn)


def maps_up(top):
    """{`top` and every ancestor the walk reaches: the composed coordinate map between them}, through the layers
    that have a map (a Crop only through the top it crops, not the one giving the size)."""
    maps, frontier = {top: IDENTITY}, [top]
    while frontier:
        current = frontier.pop()
        try:
            step = layer_map(current.fn)
        except coord_map.UndefinedMapException:
            continue
        for bottom in current.fn.inputs[:1] if current.fn.type_name == 'Crop' else current.fn.inputs:
            if bottom not in maps:  # once: inception's branches meet again, and the maps agree
                maps[bottom] = coord_map.compose(maps[current], step)
                frontier.append(bottom)
    return maps


def map_between(top, reference):
    """(axis, scale, shift) from `top`'s coordinates to `reference`'s, through an ancestor they share (as
    coord_map.coord_map_from_to, with layer_map's Concat)."""
    ups, reference_ups = maps_up(top), maps_up(reference)
    common = next((t for t in reference_ups if t in ups), None)
    if common is None:
        raise ValueError('no coordinate map between the two tops: no spatial path joins them')
    return coord_map.compose(reference_ups[common], coord_map.inverse(ups[common]))


def crop(top, reference):
    """A Crop of `top` to `reference`, its offset computed from the graph (coord_map's rule: the same scale, a
    whole non-negative number of pixels)."""
    axis, scale, shift = map_between(top, reference)
    if not (np.all(scale == 1) and np.all(shift <= 0) and np.all(np.round(shift) == shift)):
        raise ValueError(f'cannot crop: scale {scale}, shift {shift} (a crop needs scale 1 and a whole offset >= 0)')
    return L.Crop(top, reference, crop_param=dict(axis=axis + 1, offset=list(-np.round(shift).astype(int))))


def shift_between(top, reference):
    """The coordinate shift from `top` to `reference`, in reference pixels."""
    return map_between(top, reference)[2]


# --- trunks: each returns {'pool3': top, 'pool4': top, 'fc7' / final feature: top} -------------------------

def vgg16(n, bottom, width=1.0, suffix='', first_pad=100, first_conv='conv1_1'):
    """VGG16 conv1_1 .. pool5. FCNs pad conv1_1 by 100 so that any input survives fc6's 7x7."""
    features = {}
    for stage, (channels, convs) in enumerate(VGG16_STAGES, start=1):
        for i in range(1, convs + 1):
            first = stage == 1 and i == 1
            name = first_conv if first else f'conv{stage}_{i}'
            bottom = conv_relu(n, name + suffix, f'relu{stage}_{i}' + suffix, bottom, scaled(channels, width), 3,
                               pad=first_pad if first else 1)
        n[f'pool{stage}' + suffix] = max_pool(bottom)
        bottom = features[f'pool{stage}'] = n[f'pool{stage}' + suffix]
    return features


def fully_connected(n, bottom, kernel, width=1.0, suffix='', convolutional=True, train=True, param=LEARNED,
                    multiple=1):
    """fc6, fc7 (4096 each) with ReLU and dropout: as convolutions in an FCN, as InnerProduct in a classifier."""
    for i, ks in ((6, kernel), (7, 1)):
        nout = scaled(4096, width, multiple)
        if convolutional:
            n[f'fc{i}' + suffix] = conv(bottom, nout, ks, param=param)
        else:
            n[f'fc{i}' + suffix] = L.InnerProduct(bottom, num_output=nout)
        n[f'relu{i}' + suffix] = L.ReLU(n[f'fc{i}' + suffix], in_place=True)
        bottom = dropout(n, f'drop{i}' + suffix, n[f'relu{i}' + suffix], 0.5, train)
    return bottom


def vgg16_fcn(n, bottom, width=1.0, suffix='', train=True, first_conv='conv1_1'):
    features = vgg16(n, bottom, width, suffix, first_conv=first_conv)
    features['fc7'] = fully_connected(n, features['pool5'], 7, width, suffix, train=train)
    return features


def caffenet(n, bottom, width=1.0, first_pad=100):
    """CaffeNet conv1 .. pool5, without param multipliers and with explicit group/stride (as the reference)."""
    def w(c):
        return scaled(c, width, multiple=2)  # grouped convs split channels in two
    bottom = conv_relu(n, 'conv1', 'relu1', bottom, w(96), 11, pad=first_pad, stride=4, group=1, param=None)
    n.pool1 = max_pool(bottom, 3, 2)
    n.norm1 = L.LRN(n.pool1, **LRN)
    bottom = conv_relu(n, 'conv2', 'relu2', n.norm1, w(256), 5, pad=2, group=2, param=None)
    n.pool2 = max_pool(bottom, 3, 2)
    n.norm2 = L.LRN(n.pool2, **LRN)
    bottom = conv_relu(n, 'conv3', 'relu3', n.norm2, w(384), 3, pad=1, group=1, param=None)
    bottom = conv_relu(n, 'conv4', 'relu4', bottom, w(384), 3, pad=1, group=2, param=None)
    bottom = conv_relu(n, 'conv5', 'relu5', bottom, w(256), 3, pad=1, group=2, param=None)
    n.pool5 = max_pool(bottom, 3, 2)
    return {'pool5': n.pool5}


def caffenet_fcn(n, bottom, width=1.0, train=True):
    """FCN-AlexNet's trunk: CaffeNet with fc6/fc7 as convolutions."""
    features = caffenet(n, bottom, width)
    features['fc7'] = fully_connected(n, features['pool5'], 6, width, train=train, param=None, multiple=2)
    return features


def inception(n, bottom, stage, width):
    """One inception module, named as in bvlc_googlenet (inception_3a/1x1 ...)."""
    c1, c3r, c3, c5r, c5, proj = (scaled(c, width) for c in INCEPTIONS[stage])
    p = f'inception_{stage}/'
    branches = [conv_relu(n, p + '1x1', p + 'relu_1x1', bottom, c1, 1)]
    reduced = conv_relu(n, p + '3x3_reduce', p + 'relu_3x3_reduce', bottom, c3r, 1)
    branches.append(conv_relu(n, p + '3x3', p + 'relu_3x3', reduced, c3, 3, pad=1))
    reduced = conv_relu(n, p + '5x5_reduce', p + 'relu_5x5_reduce', bottom, c5r, 1)
    branches.append(conv_relu(n, p + '5x5', p + 'relu_5x5', reduced, c5, 5, pad=2))
    n[p + 'pool'] = max_pool(bottom, 3, 1, pad=1)
    branches.append(conv_relu(n, p + 'pool_proj', p + 'relu_pool_proj', n[p + 'pool'], proj, 1))
    n[p + 'output'] = L.Concat(*branches)
    return n[p + 'output']


def googlenet(n, bottom, width=1.0):
    """GoogLeNet conv1 .. inception_5b, without the auxiliary classifiers."""
    bottom = conv_relu(n, 'conv1/7x7_s2', 'conv1/relu_7x7', bottom, scaled(64, width), 7, pad=3, stride=2)
    n['pool1/3x3_s2'] = max_pool(bottom, 3, 2)
    n['pool1/norm1'] = L.LRN(n['pool1/3x3_s2'], **LRN)
    bottom = conv_relu(n, 'conv2/3x3_reduce', 'conv2/relu_3x3_reduce', n['pool1/norm1'], scaled(64, width), 1)
    bottom = conv_relu(n, 'conv2/3x3', 'conv2/relu_3x3', bottom, scaled(192, width), 3, pad=1)
    n['conv2/norm2'] = L.LRN(bottom, **LRN)
    bottom = n['pool2/3x3_s2'] = max_pool(n['conv2/norm2'], 3, 2)
    features = {}
    for stage in INCEPTIONS:
        if stage in ('4a', '5a'):  # a pool between inception groups
            pool = f'pool{stage[0]}/3x3_s2'
            n[pool] = max_pool(bottom, 3, 2)
            bottom = features[f'pool{int(stage[0]) - 1}'] = n[pool]
        bottom = inception(n, bottom, stage, width)
    features['inception_5b'] = bottom
    return features


def googlenet_fcn(n, bottom, width=1.0, train=True):
    """FCN-GoogLeNet's trunk: GoogLeNet up to inception_5b and its dropout."""
    # no extra padding: without fc layers the classifier's own pad 3 already yields an output covering any input
    # size (Caffe's pooling rounds up); the final average pooling and the auxiliary classifiers are discarded
    features = googlenet(n, bottom, width)
    features['fc7'] = dropout(n, 'inception_5b/drop', features['inception_5b'], 0.4, train)
    return features


TRUNKS = {'vgg16': vgg16_fcn, 'caffenet': caffenet_fcn, 'googlenet': googlenet_fcn}


# --- score heads ---------------------------------------------------------------------------------------

def score(bottom, nclass):
    """1x1 classifier convolution (score_fr, score_poolN); stride left implicit, as in the reference."""
    return conv(bottom, nclass, 1, stride=None)


def upsample(bottom, nclass, factor, kernel=None, param=FIXED):
    """Deconvolution filled with bilinear kernels by surgery before training; fixed (lr_mult 0) unless learned."""
    return L.Deconvolution(bottom, param=param, convolution_param=dict(
        num_output=nclass, bias_term=False, kernel_size=kernel or 2 * factor, stride=factor))


def upsample_onto(bottom, reference, nclass, factor):
    """The final upsampling: the bilinear 2*factor kernel, or 2*factor - 1 where the trunk's geometry would put
    the even kernel's output half a pixel off the input (CaffeNet, GoogLeNet)."""
    for kernel in (2 * factor, 2 * factor - 1):
        up = upsample(bottom, nclass, factor, kernel)
        if np.all(np.round(shift_between(up, reference)) == shift_between(up, reference)):
            return up
    raise ValueError(f'no {factor}x upsampling kernel aligns with the input; check the trunk padding')


SKIPS = {32: (), 16: ('pool4',), 8: ('pool4', 'pool3')}


def fcn_head(n, score_of, reference, nclass, stride, suffix='', learned_upsampling=False):
    """The 32s / 16s / 8s head on a coarse score: 2x upsample, add the scored pool skip cropped onto it, repeat;
    finally upsample to the input and crop onto `reference`. `score_of(layer, name)` makes the score top of a
    trunk feature ('fc7' -> score_fr, 'pool4' -> score_pool4) under `name`. `learned_upsampling` gives the 2x
    upsamplings a learning rate, as the CVPR models had (the reference fixed them)."""
    top = score_of('fc7', 'score_fr' + suffix)
    previous = None
    for pool in SKIPS[stride]:
        up = 'upscore2' if previous is None else f'upscore_{previous}'
        n[up + suffix] = upsample(top, nclass, 2, param=LEARNED_UPSAMPLING if learned_upsampling else FIXED)
        skip = score_of(pool, f'score_{pool}' + suffix)
        n[f'score_{pool}{suffix}c'] = crop(skip, n[up + suffix])
        n[f'fuse_{pool}' + suffix] = L.Eltwise(n[up + suffix], n[f'score_{pool}{suffix}c'],
                                               operation=P.Eltwise.SUM)
        top, previous = n[f'fuse_{pool}' + suffix], pool
    final = 'upscore' if stride == 32 else f'upscore{stride}'
    n[final + suffix] = upsample_onto(top, reference, nclass, stride)
    n['score' + suffix] = crop(n[final + suffix], reference)
    return n['score' + suffix]


def average(*tops):
    """Late fusion: the mean of per-stream scores."""
    return L.Eltwise(*tops, operation=P.Eltwise.SUM, coeff=[1.0 / len(tops)] * len(tops))


def softmax_loss(score, label, normalize=False, weights=None):
    """The reference's loss; with class `weights`, solvers.losses' weighted one (CVPR 2015 sec. 4.3)."""
    if weights is None:
        return L.SoftmaxWithLoss(score, label, loss_param=dict(normalize=normalize, ignore_label=255))
    params = dict(weights=[float(w) for w in weights], ignore_label=255, normalize=normalize)
    return L.Python(score, label, module='solvers.losses', layer='WeightedSoftmaxWithLoss', param_str=str(params),
                    loss_weight=1)
