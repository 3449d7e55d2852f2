"""Metrics of a batch evaluation: scikit-learn where it has the metric, the rest written once here.

Classification: accuracy, macro precision / recall / F1, one-vs-rest ROC-AUC, the confusion matrix
(scikit-learn) and the expected calibration error (15 equal-width confidence bins, as in Guo et al.
2017). Scores: MAE, Pearson r and the multiclass accuracies of the MMSA benchmark code
(`MMSA/utils/metricsTop.py`): for [-3, 3] (CMU-MOSI/MOSEI) Acc-2 in both conventions (negative vs
non-negative; negative vs positive with zero labels left out) with their weighted F1, Acc-5 and Acc-7
(clip, round, compare); for [-1, 1] (CH-SIMS) Acc-2/3/5 by MMSA's interval boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 15
# CH-SIMS class boundaries from MMSA (`__eval_sims_regression`): right-closed intervals over [-1, 1].
SIMS_BOUNDARIES = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of (bin share of items) x |accuracy - mean confidence|."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if not len(confidence):
        return 0.0
    # bin i holds (i/bins, (i+1)/bins]; confidence 0 falls in the first bin
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def reliability_bins(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per non-empty bin: its range, item count, mean confidence and accuracy (the reliability diagram)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "count": int((index == b).sum()),
            "confidence": float(confidence[index == b].mean()),
            "accuracy": float(correct[index == b].mean()),
        }
        for b in range(bins)
        if (index == b).any()
    ]


def classification_metrics(
    expected: Sequence[str], predicted: Sequence[str], labels: Sequence[str], probabilities: Sequence[Mapping] = ()
) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, per-class P/R/F1/support, confusion matrix (rows expected, columns predicted in
    `labels` order); with every item's label probabilities also ROC-AUC (one-vs-rest, macro), ECE and the
    reliability bins of the top label."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        expected, predicted, labels=labels, zero_division=0
    )
    present = support > 0  # macro averages over the classes that occur, as the scenario eval always did
    majority = max((list(expected).count(label) for label in labels), default=0)
    report: dict[str, Any] = {
        "items": len(expected),
        "accuracy": float(accuracy_score(expected, predicted)),
        "majority_baseline": majority / len(expected) if len(expected) else None,
        "macro_precision": float(precision[present].mean()) if present.any() else None,
        "macro_recall": float(recall[present].mean()) if present.any() else None,
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "labels": labels,
        "confusion": confusion_matrix(expected, predicted, labels=labels).tolist(),
    }
    if probabilities:
        report |= probability_metrics(expected, labels, probabilities)
    return report


def probability_metrics(
    expected: Sequence[str], labels: Sequence[str], probabilities: Sequence[Mapping]
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    matrix = np.array([[float(p.get(label, 0.0)) for label in labels] for p in probabilities])
    top = matrix.argmax(1)
    correct = [labels[i] == e for i, e in zip(top, expected, strict=True)]
    classes = sorted(set(expected), key=list(labels).index)
    roc_auc = None
    if len(classes) >= 2:
        if len(labels) == 2:
            roc_auc = roc_auc_score([e == labels[1] for e in expected], matrix[:, 1])
        elif len(classes) == len(labels):
            rows = matrix / np.clip(matrix.sum(1, keepdims=True), 1e-12, None)
            roc_auc = roc_auc_score(expected, rows, multi_class="ovr", average="macro", labels=list(labels))
    return {
        "roc_auc": None if roc_auc is None else float(roc_auc),
        "ece": expected_calibration_error(matrix.max(1), correct),
        "reliability": reliability_bins(matrix.max(1), correct),
    }


def _multiclass_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.round(predicted) == np.round(truth)))


def _bucket(values: np.ndarray, boundaries: Sequence[float]) -> np.ndarray:
    out = np.zeros_like(values)
    for i in range(len(boundaries) - 1):
        out[(values > boundaries[i]) & (values <= boundaries[i + 1])] = i
    return out


def score_metrics(truth: Sequence[float], predicted: Sequence[float], score_range: float) -> dict[str, Any]:
    """MMSA's regression metrics for scores in [-score_range, score_range] (3: MOSI/MOSEI, 1: CH-SIMS)."""
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

    truth = np.asarray(truth, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    report: dict[str, Any] = {"items": len(truth), "mae": float(mean_absolute_error(truth, predicted))}
    report["pearson_r"] = (
        float(np.corrcoef(predicted, truth)[0, 1]) if len(truth) > 1 and truth.std() and predicted.std() else None
    )
    if score_range == 1:
        truth, predicted = np.clip(truth, -1, 1), np.clip(predicted, -1, 1)
        for classes, boundaries in SIMS_BOUNDARIES.items():
            t, p = _bucket(truth, boundaries), _bucket(predicted, boundaries)
            report[f"acc_{classes}"] = float(accuracy_score(t, p))
        t, p = _bucket(truth, SIMS_BOUNDARIES[2]), _bucket(predicted, SIMS_BOUNDARIES[2])
        report["f1"] = float(f1_score(t, p, average="weighted"))
        return report
    report["acc_2_has0"] = float(accuracy_score(truth >= 0, predicted >= 0))
    report["f1_has0"] = float(f1_score(truth >= 0, predicted >= 0, average="weighted"))
    nonzero = truth != 0
    if nonzero.any():
        report["acc_2_non0"] = float(accuracy_score(truth[nonzero] > 0, predicted[nonzero] > 0))
        report["f1_non0"] = float(f1_score(truth[nonzero] > 0, predicted[nonzero] > 0, average="weighted"))
    report["acc_5"] = _multiclass_accuracy(np.clip(predicted, -2, 2), np.clip(truth, -2, 2))
    report["acc_7"] = _multiclass_accuracy(np.clip(predicted, -3, 3), np.clip(truth, -3, 3))
    return report


# ---------------------------------------------------------------- paired bootstrap (run comparison)


@dataclass(frozen=True)
class Delta:
    """Metric B minus metric A on the items both runs scored, with a paired bootstrap interval."""

    metric: str
    a: float
    b: float
    delta: float
    low: float  # 2.5th percentile of the resampled deltas
    high: float  # 97.5th percentile
    items: int


def paired_bootstrap(
    value_a: Callable[[np.ndarray], Mapping[str, float | None]],
    value_b: Callable[[np.ndarray], Mapping[str, float | None]],
    items: int,
    resamples: int = 1000,
    seed: int = 0,
) -> list[Delta]:
    """`value_a(indices)` / `value_b(indices)`: each run's metrics on those paired item indices (None where a
    metric is undefined). Both runs are resampled with the same indices, so each interval is that of the
    paired difference, narrower than two separate intervals would suggest."""
    if items == 0:
        return []
    everything = np.arange(items)
    full_a, full_b = value_a(everything), value_b(everything)
    names = [k for k in full_a if isinstance(full_a[k], int | float) and isinstance(full_b.get(k), int | float)]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(resamples):
        sample = rng.integers(0, items, items)
        sample_a, sample_b = value_a(sample), value_b(sample)
        for name in names:
            if isinstance(sample_a.get(name), int | float) and isinstance(sample_b.get(name), int | float):
                samples[name].append(sample_b[name] - sample_a[name])
    deltas = []
    for name in names:
        a, b = float(full_a[name]), float(full_b[name])
        low, high = np.percentile(samples[name], [2.5, 97.5]) if samples[name] else (b - a, b - a)
        deltas.append(Delta(metric=name, a=a, b=b, delta=b - a, low=float(low), high=float(high), items=items))
    return deltas
