"""The metrics against an independent computation (scikit-learn) on random label maps."""
import numpy as np
import pytest

from solvers.metrics import fast_hist, format_scores, per_class_iu, scores

sklearn_metrics = pytest.importorskip('sklearn.metrics', reason='scikit-learn (the [test] extra) is not installed')

VOID = 255


def random_maps(seed, n, absent=(), void_fraction=0.1, shape=(37, 41)):
    """Ground truth and prediction with `absent` classes missing from both, and some void pixels."""
    rng = np.random.default_rng(seed)
    classes = np.array([c for c in range(n) if c not in absent])
    gt = rng.choice(classes, size=shape)
    pred = np.where(rng.random(shape) < 0.6, gt, rng.choice(classes, size=shape))
    gt[rng.random(shape) < void_fraction] = VOID
    return gt.astype(np.uint8), pred.astype(np.uint8)


def sklearn_scores(gt, pred, n):
    """The same quantities from scikit-learn, over valid pixels and classes seen in gt or prediction."""
    keep = gt != VOID
    y_true, y_pred = gt[keep].astype(int), pred[keep].astype(int)
    seen = np.union1d(y_true, y_pred)
    iu = sklearn_metrics.jaccard_score(y_true, y_pred, labels=seen, average=None)
    return {
        'hist': sklearn_metrics.confusion_matrix(y_true, y_pred, labels=range(n)),
        'overall_acc': sklearn_metrics.accuracy_score(y_true, y_pred),
        'mean_acc': sklearn_metrics.balanced_accuracy_score(y_true, y_pred),
        'mean_iu': iu.mean(),
        'fwavacc': sklearn_metrics.jaccard_score(y_true, y_pred, labels=seen, average='weighted'),
        'iu': dict(zip(seen.tolist(), iu, strict=True)),
    }


@pytest.mark.filterwarnings('ignore:y_pred contains classes not in y_true')
@pytest.mark.parametrize('seed, n, absent', [(0, 21, ()), (1, 21, (3, 7, 20)), (2, 33, tuple(range(20, 33))),
                                             (3, 3, (0,)), (4, 60, (1, 2, 59))])
def test_metrics_match_sklearn(seed, n, absent):
    gt, pred = random_maps(seed, n, absent)
    ours, ref = scores(fast_hist(gt, pred, n)), sklearn_scores(gt, pred, n)
    np.testing.assert_array_equal(fast_hist(gt, pred, n), ref['hist'])
    for metric in ('overall_acc', 'mean_acc', 'mean_iu', 'fwavacc'):
        assert ours[metric] == pytest.approx(ref[metric], abs=1e-12), metric
    for c in range(n):
        if c in absent:
            assert ours['per_class_iu'][c] is None  # left out of the means, not counted as 0
        else:
            assert ours['per_class_iu'][c] == pytest.approx(ref['iu'][c])


def test_class_predicted_but_absent_from_ground_truth_counts_zero_iu():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 never in the ground truth: its IU is 0 and it is in the mean
    result = scores(fast_hist(gt, pred, 4))
    assert result['per_class_iu'] == [0.5, 1.0, 0.0, None]
    assert result['mean_iu'] == pytest.approx(0.5)
    assert result['mean_acc'] == pytest.approx(0.75)  # recall over classes present in the ground truth only
    assert result['overall_acc'] == pytest.approx(0.75)


def test_void_and_out_of_range_pixels_are_skipped():
    gt = np.array([[0, 255], [1, 7]])
    pred = np.array([[0, 1], [1, 0]])
    hist = fast_hist(gt, pred, 2)
    assert hist.sum() == 2 and hist[0, 0] == 1 and hist[1, 1] == 1


def test_accumulating_image_by_image_equals_the_whole():
    maps = [random_maps(s, 21, (5,)) for s in range(3)]
    total = sum(fast_hist(g, p, 21) for g, p in maps)
    whole = fast_hist(np.concatenate([g.ravel() for g, _ in maps]), np.concatenate([p.ravel() for _, p in maps]), 21)
    np.testing.assert_array_equal(total, whole)


def test_empty_matrix_gives_nan_not_an_error():
    result = scores(np.zeros((3, 3)))
    assert np.isnan(result['mean_iu']) and np.isnan(result['overall_acc'])
    assert np.isnan(per_class_iu(np.zeros((2, 2)))).all()


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match='must match'):
        fast_hist(np.zeros((2, 2)), np.zeros((3, 3)), 2)


def test_format_scores_names_the_four_metrics():
    line = format_scores({'overall_acc': 0.9, 'mean_acc': 0.8, 'mean_iu': 0.7, 'fwavacc': 0.85,
                          'loss': 1234.5, 'loss_per_pixel': 0.5}, 'score')
    assert line.startswith('score: loss 1234') and 'mean_iu 0.7000' in line and 'fwavacc 0.8500' in line


def test_siftflow_is_scored_on_both_outputs_and_losses_know_their_normalization():
    import netgen
    from solvers.score import Output, outputs

    assert outputs(netgen.net('siftflow-fcn16s', 'test', width=0.0625)) == [
        Output('score_sem', 'sem', 'loss', True), Output('score_geo', 'geo', 'loss_geo', True)]
    assert outputs(netgen.net('voc-fcn-alexnet', 'val', width=0.0625)) == [Output('score', 'label', 'loss', False)]


def test_loss_is_reported_summed_per_image_and_per_pixel():
    from solvers.score import Accumulator

    gt = np.array([[0, 1, 255], [1, 1, 0]])  # 5 valid pixels
    summed, averaged = Accumulator(2), Accumulator(2)
    summed.add(gt, gt, 10.0, summed=True)
    averaged.add(gt, gt, 2.0, summed=False)  # normalize: true reports the mean over valid pixels
    for acc in (summed, averaged):
        result = acc.result()
        assert result['loss'] == pytest.approx(10.0) and result['loss_per_pixel'] == pytest.approx(2.0)
        assert result['mean_iu'] == 1.0
