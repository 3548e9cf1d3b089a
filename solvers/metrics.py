"""Segmentation metrics with the reference FCN score.py semantics.

A confusion matrix is accumulated by bincount over valid pixels (labels in [0, n); the void label 255 and
anything else out of range is skipped). Rows are ground truth, columns prediction. Classes that are absent
from both the ground truth and the prediction have an undefined IU (0 / 0) and are left out of the means,
as are classes absent from the ground truth in the mean accuracy.
"""
import numpy as np

METRICS = ('overall_acc', 'mean_acc', 'mean_iu', 'fwavacc')


def valid(gt, n):
    """The pixels that count: ground truth in [0, n) (void 255 and anything else out of range do not)."""
    return (gt >= 0) & (gt < n)


def valid_pixels(gt, n):
    return int(valid(gt, n).sum())


def fast_hist(gt, pred, n):
    """n x n confusion matrix of integer label arrays gt and pred (any shape); pixels with gt outside [0, n) skip."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f'ground truth has {gt.size} pixels but prediction has {pred.size}: they must match')
    keep = valid(gt, n)
    return np.bincount(n * gt[keep] + pred[keep], minlength=n ** 2).reshape(n, n)


def per_class_iu(hist):
    """IU of each class: nan where the class is absent from both ground truth and prediction."""
    hist = np.asarray(hist, dtype=np.float64)
    tp = np.diag(hist)
    union = hist.sum(1) + hist.sum(0) - tp
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, tp / union, np.nan)


def per_class_acc(hist):
    """Recall of each class: nan where the class is absent from the ground truth."""
    hist = np.asarray(hist, dtype=np.float64)
    gt_count = hist.sum(1)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(gt_count > 0, np.diag(hist) / gt_count, np.nan)


def _nanmean(values):
    """np.nanmean, as the reference's score.py takes it (its summation order, so the same bits); nan when empty."""
    if np.isnan(values).all():
        return float('nan')
    return float(np.nanmean(values))


def scores(hist):
    """The paper's four metrics (section 5) and the per-class IU of a confusion matrix.

    Returns a dict: overall_acc, mean_acc, mean_iu, fwavacc (floats; nan when the matrix is empty) and
    per_class_iu (list with None for classes left out of the means).
    """
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    iu = per_class_iu(hist)
    freq = hist.sum(1) / total if total else np.zeros(len(hist))
    present = freq > 0
    return {
        'overall_acc': float(np.diag(hist).sum() / total) if total else float('nan'),
        'mean_acc': _nanmean(per_class_acc(hist)),
        'mean_iu': _nanmean(iu),
        'fwavacc': float((freq[present] * iu[present]).sum()) if total else float('nan'),
        'per_class_iu': [None if np.isnan(v) else float(v) for v in iu],
    }


def format_scores(result, name=''):
    """One line with the four metrics (and the losses when present), for logs and the terminal."""
    parts = [f'{m} {result[m]:.4f}' for m in METRICS]
    if 'loss' in result:
        parts = [f'loss {result["loss"]:.4g} (per pixel {result["loss_per_pixel"]:.4f})'] + parts
    return (f'{name}: ' if name else '') + ', '.join(parts)


COLLAPSED = 0.95  # the share of the pixels one predicted class must exceed to call the predictions collapsed


def collapse_warning(hist, names=()):
    """A one-line warning when the predictions collapsed to one class (on more than 95% of the labelled pixels)
    while the labels hold several, with what to try; else None."""
    predicted, labelled = hist.sum(0), hist.sum(1)
    total = predicted.sum()
    if not total or (labelled > 0.01 * total).sum() < 2:
        return None
    top = int(predicted.argmax())
    if predicted[top] <= COLLAPSED * total:
        return None
    name = names[top] if top < len(names) else f'class {top}'
    return (f'warning: the net predicts {name!r} on {100 * predicted[top] / total:.1f}% of the pixels while the '
            f'labels hold {(labelled > 0).sum()} classes: early in training this is normal; if it lasts, check the '
            'starting weights and the labels (fcn-data check), try --base-lr 10x lower or higher, or --class-balance')
