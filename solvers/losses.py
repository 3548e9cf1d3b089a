"""Class balancing (CVPR 2015 sec. 4.3): a softmax loss weighted per class, as a Caffe Python loss layer.

Caffe's SoftmaxWithLoss takes no class weights. WeightedSoftmaxWithLoss computes, over the pixels whose label is
not `ignore_label`, -sum w[label] log softmax(score)[label], divided as Caffe divides: by the batch size for
normalize False (the reference's: one image per batch, so the sum), by the summed weights of those pixels for
normalize True. With every weight 1 it is SoftmaxWithLoss.
param_str: {'weights': [w_0, ..., w_K-1], 'ignore_label': 255, 'normalize': False}.
"""
import ast

import caffe
import numpy as np


def class_weights(counts):
    """Median frequency balancing: w_c = median(f) / f_c over the classes present; an absent class gets 1."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError('the training split has no labelled pixel: nothing to balance')
    freq = counts / counts.sum()
    weights = np.ones_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return [round(float(w), 6) for w in weights]


class WeightedSoftmaxWithLoss(caffe.Layer):
    def setup(self, bottom, top):
        params = ast.literal_eval(self.param_str)
        self.weights = np.asarray(params['weights'], dtype=np.float64)
        self.ignore = params.get('ignore_label', 255)
        self.normalize = params.get('normalize', False)
        if len(bottom) != 2 or bottom[0].channels != len(self.weights):
            raise ValueError(f'WeightedSoftmaxWithLoss takes a score with {len(self.weights)} channels (one per '
                             f'weight) and a label; got {len(bottom)} bottoms, {bottom[0].channels} channels')

    def reshape(self, bottom, top):
        if bottom[1].count * bottom[0].channels != bottom[0].count:
            raise ValueError(f'score {bottom[0].data.shape} and label {bottom[1].data.shape} do not match')
        top[0].reshape(1)

    def forward(self, bottom, top):
        score = bottom[0].data.astype(np.float64)
        label = bottom[1].data[:, 0].astype(np.int64)  # N x H x W
        prob = np.exp(score - score.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        self.valid = (label != self.ignore) & (label >= 0) & (label < len(self.weights))
        self.safe = np.where(self.valid, label, 0)
        self.pixel_weight = np.where(self.valid, self.weights[self.safe], 0.0)
        picked = np.take_along_axis(prob, self.safe[:, None], axis=1)[:, 0]
        self.norm = max(self.pixel_weight.sum(), 1e-12) if self.normalize else len(label)
        top[0].data[0] = -(self.pixel_weight * np.log(np.maximum(picked, np.finfo(np.float32).tiny))).sum() / self.norm
        self.prob = prob

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        grad = self.prob.copy()
        np.put_along_axis(grad, self.safe[:, None], np.take_along_axis(grad, self.safe[:, None], axis=1) - 1, axis=1)
        grad *= self.pixel_weight[:, None] * (top[0].diff[0] / self.norm)
        bottom[0].diff[...] = grad
