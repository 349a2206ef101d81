"""What a run's test numbers say beside another run's (paired bootstrap) or chance (collapse)."""

from __future__ import annotations

import numpy as np

from medprobe.data.validate import MULTI_LABEL
from medprobe.metrics.scores import (
    check_resamples,
    interval,
    resample_counts,
    validate,
    weighted_scores,
)

# A split's predictions have collapsed when this share of them is one class (one label set).
COLLAPSED_SHARE = 0.95


def paired_bootstrap(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    task: str,
    metric: str = "acc",
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference `metric(a) - metric(b)` on one test set, with a paired 95% bootstrap interval.

    Both score matrices are resampled with the same rows, so the interval reflects the difference
    between the two models, not the test set's own variance. An interval that contains 0 means
    the two are statistically indistinguishable at this level.

    Returns:
        (difference, lower, upper).
    """
    y_true, score_a = validate(y_true, score_a, task)
    _, score_b = validate(y_true, score_b, task)
    check_resamples(n_resamples)
    point = weighted_scores(y_true, score_a, task, np.ones((1, len(y_true))), 0.5)[metric][0]
    point -= weighted_scores(y_true, score_b, task, np.ones((1, len(y_true))), 0.5)[metric][0]
    counts = resample_counts(len(y_true), n_resamples, seed).astype(np.float32)
    diff = (
        weighted_scores(y_true, score_a, task, counts, 0.5)[metric]
        - weighted_scores(y_true, score_b, task, counts, 0.5)[metric]
    )
    lower, upper = interval(diff)
    return float(point), lower, upper


def collapse_of(
    splits: dict[str, tuple[np.ndarray, np.ndarray, dict]], *, task: str
) -> dict | None:
    """The first split whose predictions collapsed (`collapse`), with how, or None.

    Args:
        splits: split -> (y_true, y_score, its `evaluate` metrics).
    """
    for split, (y_true, y_score, metrics) in splits.items():
        found = collapse(y_true, y_score, task=task, metrics=metrics)
        if found:
            return {"split": split} | found
    return None


def collapse(y_true: np.ndarray, y_score: np.ndarray, *, task: str, metrics: dict) -> dict | None:
    """How a split's predictions collapsed, or None.

    (nearly) all in one class, or a balanced accuracy whose bootstrap interval holds chance (1/K;
    0.5 per label for multi-label tasks).

    Args:
        y_true, y_score: as for `evaluate`.
        metrics: `evaluate`'s result for them (its `ci95`, when present, is used).

    Returns:
        {"share": top share, "class": its index (single-label tasks), "chance": bool} or None.
    """
    y_true, y_score = validate(y_true, y_score, task)
    if task == MULTI_LABEL:
        predicted = (y_score > 0.5).astype(np.int64)
    elif task == "binary-class":
        predicted = (y_score[:, -1] > 0.5).astype(np.int64)[:, None]
    else:
        predicted = y_score.argmax(axis=1)[:, None]
    rows, counts = np.unique(predicted, axis=0, return_counts=True)
    share = float(counts.max() / len(predicted))
    chance = 0.5 if task == MULTI_LABEL else 1 / y_score.shape[1]
    low, high = (metrics.get("ci95") or {}).get("balanced_acc") or (None, None)
    at_chance = low is not None and high is not None and low <= chance <= high
    if share < COLLAPSED_SHARE and not at_chance:
        return None
    found = {"share": round(share, 4), "chance": bool(at_chance)}
    return found | ({} if task == MULTI_LABEL else {"class": int(rows[counts.argmax(), 0])})


def named_class(collapse: dict, class_names) -> dict:
    """A collapse (`medprobe.metrics.collapse_of`) with the name of the class it fell into."""
    if "class" not in collapse:
        return collapse
    return collapse | {"class_name": list(class_names)[collapse["class"]]}


def describe_collapse(collapse: dict | None) -> str:
    """One line on how a run's predictions collapsed, for a warning or a report's note."""
    if not collapse:
        return ""
    split, parts = collapse.get("split", "?"), []
    if collapse.get("share", 0) >= COLLAPSED_SHARE:
        what = (
            f"class {collapse.get('class_name', collapse.get('class'))}"
            if "class" in collapse
            else None
        )
        parts.append(f"predicts {what or 'one label set'} for {collapse['share']:.0%} of {split}")
    if collapse.get("chance"):
        parts.append(f"its {split} balanced accuracy is within its 95% interval of chance")
    return (
        f"collapsed: {' and '.join(parts)}; its decisions tell the classes apart no better than "
        "chance"
    )
