"""The scores of one split's predictions.

MedMNIST ACC/AUC plus macro-F1, balanced accuracy, kappa, log-loss, with bootstrap intervals.

Every metric is computed from sample weights, so the point estimate (all weights 1) and the
bootstrap (weights = resample counts, one row per resample) share one vectorized code path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medprobe.data.validate import MULTI_LABEL, TASKS

SCALARS = ("acc", "auc", "macro_f1", "balanced_acc", "qwk", "log_loss")
PROBABILITY_FLOOR = 1e-15  # log-loss clips probabilities here (scikit-learn's eps), so 0 is finite
# Bootstrap resamples at most: 10,000 puts a 95% percentile bound within ~0.1% of its limit, and
# the resamples are held as (resamples, n) counts, so this bounds the memory an option can ask for.
MAX_RESAMPLES = 10_000


def evaluate(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    task: str,
    bootstrap: int = 0,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict:
    """Score predictions the way MedMNIST does, and then some.

    Args:
        y_true: (n,) or (n, 1) integer classes; (n, L) 0/1 for multi-label tasks.
        y_score: (n, n_classes) probabilities (softmax rows), or (n, L) sigmoid outputs
            for multi-label tasks.
        task: one of `medprobe.data.validate.TASKS`.
        bootstrap: number of resamples for 95% percentile intervals (0: none).
        seed: seed of the bootstrap resampling.
        threshold: decision threshold for binary and multi-label tasks (MedMNIST uses 0.5).

    Returns:
        acc, auc (identical to medmnist.evaluator.getACC / getAUC), macro_f1, balanced_acc,
        log_loss (mean cross-entropy of the probabilities; mean binary cross-entropy per label for
        multi-label tasks), per_class_recall, confusion_matrix, n, qwk for ordinal tasks, and
        `ci95` ({metric: [lo, hi]}) when `bootstrap` > 0.
    """
    y_true, y_score = validate(y_true, y_score, task)
    check_resamples(bootstrap)
    weights = np.ones((1, len(y_true)))
    scores = weighted_scores(y_true, y_score, task, weights, threshold)
    result: dict[str, Any] = {
        name: float(values[0]) for name, values in scores.items() if name in SCALARS
    }
    result["per_class_recall"] = scores["recall"][0].tolist()
    result["confusion_matrix"] = scores["confusion"][0].astype(int).tolist()
    result["n"] = len(y_true)
    if bootstrap:
        counts = resample_counts(len(y_true), bootstrap, seed).astype(np.float32)
        boot = weighted_scores(y_true, y_score, task, counts, threshold)
        result["ci95"] = {
            name: interval(values) for name, values in boot.items() if name in SCALARS
        }
    return result


def check_resamples(n_resamples: int) -> None:
    """Refuse a bootstrap resample count outside [0, MAX_RESAMPLES]."""
    if not 0 <= n_resamples <= MAX_RESAMPLES:
        raise ValueError(
            f"bootstrap resamples {n_resamples}: must be an integer in [0, {MAX_RESAMPLES}]"
        )


def interval(values: np.ndarray) -> list[float]:
    """95% percentile interval over the resamples where the metric is defined."""
    values = values[np.isfinite(values)]
    return np.percentile(values, [2.5, 97.5]).tolist() if len(values) else [math.nan, math.nan]


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) counts of how often each sample is drawn, with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


def weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC under sample weights (Mann-Whitney with ties counted half), one per weight row.

    Args:
        positive: (n,) bool.
        score: (n,) scores.
        weights: (B, n) non-negative sample weights.

    Returns:
        (B,) AUC; NaN where a row has no positive or no negative weight.
    """
    negatives, positives = np.flatnonzero(~positive), np.flatnonzero(positive)
    negatives = negatives[np.argsort(score[negatives], kind="stable")]
    neg_scores = score[negatives]
    neg_cumulative = np.zeros((len(weights), len(negatives) + 1), dtype=weights.dtype)
    np.cumsum(weights[:, negatives], axis=1, out=neg_cumulative[:, 1:])
    below = neg_cumulative[:, np.searchsorted(neg_scores, score[positives], side="left")]
    up_to = neg_cumulative[:, np.searchsorted(neg_scores, score[positives], side="right")]
    pos_weights = weights[:, positives]
    wins = (pos_weights * (below + up_to)).sum(axis=1) / 2  # ties count half
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins / (pos_weights.sum(axis=1) * neg_cumulative[:, -1])


def weighted_scores(y_true, y_score, task, weights, threshold) -> dict[str, np.ndarray]:
    """Every metric under per-sample `weights` (B, N): one value per weighting."""
    if task == MULTI_LABEL:
        scores = _multi_label_scores(y_true, y_score, weights, threshold)
    else:
        scores = _single_label_scores(y_true, y_score, task, weights, threshold)
    losses = sample_log_loss(y_true, y_score, task=task)
    return scores | {"log_loss": (weights @ losses) / weights.sum(axis=1)}


def sample_log_loss(y_true: np.ndarray, y_score: np.ndarray, *, task: str) -> np.ndarray:
    """(n,) each sample's cross-entropy.

    -log p(true class), or the mean binary cross-entropy over its labels for multi-label tasks;
    probabilities clipped to [1e-15, 1 - 1e-15].

    Args:
        y_true: (n,) classes, or (n, L) 0/1 for multi-label tasks (as `_validate` returns them).
        y_score: (n, n_classes) probabilities.
    """
    p = np.clip(y_score, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if task == MULTI_LABEL:
        return -(y_true * np.log(p) + (1 - y_true) * np.log1p(-p)).mean(axis=1)
    return -np.log(p[np.arange(len(y_true)), y_true])


def log_loss(y_true: np.ndarray, y_score: np.ndarray, *, task: str) -> float:
    """Mean cross-entropy of probabilities (a proper score: lower is better).

    See `sample_log_loss`.
    """
    y_true, y_score = validate(y_true, y_score, task)
    return float(sample_log_loss(y_true, y_score, task=task).mean())


def _single_label_scores(y, score, task, weights, threshold) -> dict[str, np.ndarray]:
    n_classes = score.shape[1]
    if task == "binary-class":
        pred = (score[:, -1] > threshold).astype(np.int64)
        auc = weighted_auc(y == 1, score[:, -1], weights)
    else:
        pred = score.argmax(axis=1)
        auc = np.mean([weighted_auc(y == c, score[:, c], weights) for c in range(n_classes)], 0)
    confusion = _weighted_confusion(y, pred, n_classes, weights)  # (B, true, pred)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / support
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    scores = {
        "acc": tp.sum(axis=1) / weights.sum(axis=1),
        "auc": auc,
        "macro_f1": np.nanmean(f1, axis=1),
        "balanced_acc": np.nanmean(recall, axis=1),
        "recall": recall,
        "confusion": confusion,
    }
    if task == "ordinal-regression":
        scores["qwk"] = _quadratic_kappa(confusion)
    return scores


def _multi_label_scores(y, score, weights, threshold) -> dict[str, np.ndarray]:
    n_labels = y.shape[1]
    pred = (score > threshold).astype(np.int64)
    confusion = np.stack(
        [_weighted_confusion(y[:, j], pred[:, j], 2, weights) for j in range(n_labels)], axis=1
    )  # (B, L, true, pred)
    tn, fp = confusion[..., 0, 0], confusion[..., 0, 1]
    fn, tp = confusion[..., 1, 0], confusion[..., 1, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall, specificity = tp / (tp + fn), tn / (tn + fp)
        f1 = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    auc = [weighted_auc(y[:, j] == 1, score[:, j], weights) for j in range(n_labels)]
    return {
        "acc": ((tp + tn) / weights.sum(axis=1, keepdims=True)).mean(axis=1),
        "auc": np.mean(auc, axis=0),
        "macro_f1": f1.mean(axis=1),
        "balanced_acc": np.nanmean((recall + specificity) / 2, axis=1),
        "recall": recall,
        "confusion": confusion,
    }


def _weighted_confusion(y, pred, n_classes, weights) -> np.ndarray:
    """(B, n_classes, n_classes) weighted counts of (true, predicted) pairs."""
    cell = np.eye(n_classes * n_classes)[y * n_classes + pred]  # (n, C*C) one-hot
    return (weights @ cell).reshape(len(weights), n_classes, n_classes)


def _quadratic_kappa(confusion: np.ndarray) -> np.ndarray:
    """Cohen's kappa with quadratic weights from (B, C, C) confusion matrices."""
    n_classes = confusion.shape[-1]
    grid = np.arange(n_classes)
    penalty = (grid[:, None] - grid[None, :]) ** 2 / (n_classes - 1) ** 2
    total = confusion.sum(axis=(1, 2), keepdims=True)
    expected = confusion.sum(axis=2, keepdims=True) * confusion.sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (penalty * confusion).sum(axis=(1, 2)) / (penalty * expected).sum(axis=(1, 2))


def validate(y_true, y_score, task) -> tuple[np.ndarray, np.ndarray]:
    """Check a task's labels and probabilities (shapes, range); returns them as arrays."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    n = len(y_true)
    if y_score.ndim != 2 or len(y_score) != n or n == 0:
        raise ValueError(
            f"y_score must be (n, n_classes) = ({n}, n_classes) probabilities, got {y_score.shape}"
        )
    if not np.all(np.isfinite(y_score)) or y_score.min() < 0 or y_score.max() > 1:
        raise ValueError("y_score must hold probabilities in [0, 1] (softmax or sigmoid outputs)")
    if task == MULTI_LABEL:
        if y_true.shape != y_score.shape or not np.isin(y_true, (0, 1)).all():
            raise ValueError(f"multi-label y_true must be 0/1 of shape {y_score.shape}")
        return y_true.astype(np.int64), y_score
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    n_classes = y_score.shape[1]
    if y_true.ndim != 1 or n_classes < 2:
        raise ValueError(
            f"y_true must be ({n},) or ({n}, 1) classes and y_score ({n}, n_classes >= 2); "
            f"got {y_true.shape} and {y_score.shape}"
        )
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(
            f"y_true holds classes outside 0..{n_classes - 1} (y_score has {n_classes})"
        )
    if not np.allclose(y_score.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(f"y_score rows must be softmax probabilities summing to 1 for {task!r}")
    return y_true.astype(np.int64), y_score
