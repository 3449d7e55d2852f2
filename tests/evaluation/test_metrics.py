"""Metrics of `polyglm eval` against worked examples (numbers computed by hand in the comments)."""

import numpy as np
import pytest
from scipy.stats import pearsonr

from polyglm.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    paired_bootstrap,
    score_metrics,
)


def test_classification_metrics_match_a_worked_example():
    expected = ["negative", "negative", "positive", "neutral"]
    predicted = ["negative", "positive", "positive", "positive"]
    report = classification_metrics(expected, predicted, ["positive", "neutral", "negative"])
    assert report["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]  # rows expected, columns predicted
    assert report["accuracy"] == 0.5 and report["majority_baseline"] == 0.5
    # F1: positive P 1/3 R 1 -> 0.5; neutral 0; negative P 1 R 1/2 -> 2/3
    assert report["macro_f1"] == pytest.approx((0.5 + 0 + 2 / 3) / 3)
    negative = report["per_class"]["negative"]
    assert negative == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_ece_is_the_support_weighted_gap_between_confidence_and_accuracy():
    # bin of 0.9: two items, one right -> |0.5 - 0.9| x 2/4; bin of 0.6: two right -> |1 - 0.6| x 2/4
    assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True]) == pytest.approx(0.4)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0
    assert expected_calibration_error([0.0], [False]) == 0.0  # a zero confidence lands in the first bin


def test_probabilities_add_roc_auc_ece_and_reliability_bins():
    expected = ["pos", "neg", "pos", "neg"]
    probs = [{"pos": 0.9, "neg": 0.1}, {"pos": 0.2, "neg": 0.8}, {"pos": 0.4, "neg": 0.6}, {"pos": 0.7, "neg": 0.3}]
    report = classification_metrics(expected, ["pos", "neg", "neg", "pos"], ["neg", "pos"], probs)
    # positives scored 0.9, 0.4; negatives 0.2, 0.7: 3 of 4 pairs ranked right
    assert report["roc_auc"] == pytest.approx(0.75)
    assert sum(b["count"] for b in report["reliability"]) == 4
    # top-label confidences 0.9, 0.8, 0.6, 0.7 with right, right, wrong, wrong
    assert report["ece"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.7) / 4)


def test_mosi_scores_follow_the_mmsa_rules():
    truth = [-2.4, -0.3, 0.0, 1.2, 2.8]
    predicted = [-1.6, 0.4, 0.2, 1.6, 3.5]
    report = score_metrics(truth, predicted, score_range=3)
    assert report["mae"] == pytest.approx((0.8 + 0.7 + 0.2 + 0.4 + 0.7) / 5)
    assert report["pearson_r"] == pytest.approx(pearsonr(truth, predicted).statistic)
    assert report["acc_2_has0"] == pytest.approx(4 / 5)  # negative vs non-negative: -0.3 called 0.4 is the miss
    assert report["acc_2_non0"] == pytest.approx(3 / 4)  # the zero label is left out
    assert report["acc_7"] == pytest.approx(4 / 5)  # rounded: 1.2 -> 1 but 1.6 -> 2; 3.5 clips to 3
    assert report["acc_5"] == pytest.approx(4 / 5)


def test_sims_scores_use_the_mmsa_interval_boundaries():
    truth = [-0.8, -0.2, 0.0, 0.05, 0.6]
    predicted = [-0.6, 0.1, -0.05, 0.2, 0.9]
    report = score_metrics(truth, predicted, score_range=1)
    assert report["acc_2"] == pytest.approx(4 / 5)  # (-1, 0] vs (0, 1]
    assert report["acc_3"] == pytest.approx(3 / 5)  # 0.1 is still in (-0.1, 0.1]
    assert report["acc_5"] == pytest.approx(1 / 5)


def test_paired_bootstrap_interval_is_zero_for_equal_runs_and_excludes_zero_for_a_clear_win():
    rights_a = np.array([1, 0, 1, 0, 1, 0, 1, 0] * 10, dtype=float)

    def accuracy(values):
        return lambda idx: {"accuracy": float(values[idx].mean())}

    same = paired_bootstrap(accuracy(rights_a), accuracy(rights_a), len(rights_a), resamples=200)
    assert (same[0].delta, same[0].low, same[0].high) == (0.0, 0.0, 0.0)
    better = paired_bootstrap(accuracy(rights_a), accuracy(np.ones_like(rights_a)), len(rights_a), resamples=200)
    assert better[0].delta == pytest.approx(0.5) and better[0].low > 0.3
