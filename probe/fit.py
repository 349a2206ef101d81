"""Fit one head on features in memory: its grid on train, the choice on val, test scored once.

`fit_probe` speaks numpy only (no files); `probe.run.run_probe` feeds it the cached features of
every matching entry and writes the records.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from medprobe.data import MULTI_LABEL
from medprobe.data.validate import check_trainable
from medprobe.device import torch_threads
from medprobe.metrics import LOWER_IS_BETTER, collapse_of, evaluate, log_loss, selection_metric
from probe.base import Sweep
from probe.heads import head_class, head_device, head_threads
from probe.options import REFITS


@dataclass(kw_only=True)
class ProbeFit:
    """One fitted head: what was chosen, on which val score, how it scored, how long it took."""

    head: object
    params: dict
    val: dict  # the selected head's metrics on val (before any refit)
    test: dict
    val_scores: list[tuple[dict, float]]  # every grid point and its val score, as selected on
    test_scores: np.ndarray
    selected_on: str
    selection_note: str | None = None
    refit: str | None = None  # "train+val": the chosen hyper-parameters refitted on both
    collapse: dict | None = None  # how the predictions collapsed (`collapse_of`), or None
    sweep_seconds: float = 0.0  # every grid point fitted on train and scored on val
    refit_seconds: float = 0.0
    bootstrap_seconds: float = 0.0  # test metrics with their bootstrap intervals
    device: str = "cpu"  # where the sweep ran (`probe.heads.head_device`)


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    head: str = "logreg",
    task: str,
    n_classes: int,
    select: str = "loss",
    refit: str = "none",
    bootstrap: int = 0,
    seed: int = 0,
    where: str = "train",
) -> ProbeFit:
    """Sweep a head's grid on train, choose on val, score test once.

    Args:
        train, val, test: (features (n, D), labels (n, L)) per split.
        head: a key of `probe.heads.HEADS`.
        select: what picks the hyper-parameters: "loss", the val log-loss (lower wins), or a val
            metric, acc, auc, f1 (macro) or bacc; one undefined on this val split falls back to
            acc (`selection_metric`), and says so.
        refit: "train+val" refits the chosen hyper-parameters on train and val together before
            test is scored (val then no longer measures the refitted head: its val metrics are the
            selected head's).
        bootstrap: resamples for 95% intervals on the test metrics.
        seed: seeds torch (the linear head's shuffling) and the bootstrap.
        where: what the train split is, for the message when it has a single class.
    """
    if refit not in REFITS:
        raise ValueError(f"unknown --refit {refit!r}; choose one of {', '.join(REFITS)}")
    check_trainable(train[1], task=task, where=where)
    metric, note = selection_metric(val[1], task=task, n_classes=n_classes, select=select)
    torch.manual_seed(seed)
    score = make_scorer(val[1], task=task, metric=metric)
    fitted = _fit(head, train, val, test, score=score, task=task, n_classes=n_classes, refit=refit)
    clock = time.perf_counter()
    test_metrics = evaluate(test[1], fitted.test_scores, task=task, bootstrap=bootstrap, seed=seed)
    bootstrap_seconds = time.perf_counter() - clock
    val_metrics = evaluate(val[1], fitted.val_scores, task=task)
    splits = {
        "val": (val[1], fitted.val_scores, val_metrics),
        "test": (test[1], fitted.test_scores, test_metrics),
    }
    return ProbeFit(
        head=fitted.head,
        params=fitted.sweep.params,
        val=val_metrics,
        test=test_metrics,
        val_scores=[(params, _natural(value, metric)) for params, value in fitted.sweep.val_scores],
        test_scores=fitted.test_scores,
        selected_on=metric,
        selection_note=note,
        refit=None if refit == "none" else refit,
        collapse=collapse_of(splits, task=task),
        sweep_seconds=fitted.sweep_seconds,
        refit_seconds=fitted.refit_seconds,
        bootstrap_seconds=bootstrap_seconds,
        device=fitted.device,
    )


@dataclass(kw_only=True)
class _Fitted:
    """What `_fit` made: the sweep, the head test is scored with, both splits' scores, its times."""

    sweep: Sweep
    head: object
    val_scores: np.ndarray
    test_scores: np.ndarray
    sweep_seconds: float
    refit_seconds: float
    device: str


def _fit(
    head: str, train, val, test, *, score: Callable, task: str, n_classes: int, refit: str
) -> _Fitted:
    """The head's sweep (choice on val by `score`), the optional refit, both splits' predictions.

    On the device (`head_device`) and as many torch threads as the problem's size pays for
    (`head_threads`).
    """
    device = head_device(*train[0].shape)
    with torch_threads(head_threads(*train[0].shape)):
        clock = time.perf_counter()
        sweep = head_class(head).sweep(
            train[0], train[1], val[0], score, task=task, n_classes=n_classes, device=device
        )
        sweep_seconds, clock = time.perf_counter() - clock, time.perf_counter()
        chosen = _refitted(sweep.best, train, val) if refit == "train+val" else sweep.best
        refit_seconds = time.perf_counter() - clock
        return _Fitted(
            sweep=sweep,
            head=chosen,
            val_scores=sweep.best.predict_proba(val[0]),
            test_scores=chosen.predict_proba(test[0]),
            sweep_seconds=sweep_seconds,
            refit_seconds=refit_seconds,
            device=device,
        )


def _refitted(head, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]):
    """The selected head's hyper-parameters fitted again, on train and val together."""
    return copy.deepcopy(head).fit(
        np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])
    )


def make_scorer(y_val: np.ndarray, *, task: str, metric: str) -> Callable[[np.ndarray], float]:
    """Proba (n_val, n_classes) -> the chosen val score, higher is better (a loss is negated)."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    if metric == "log_loss":  # computed alone: `evaluate` would compute every metric per grid point
        return lambda proba: sign * log_loss(y_val, proba, task=task)
    return lambda proba: sign * evaluate(y_val, proba, task=task)[metric]


def _natural(value: float, metric: str) -> float:
    """A scorer's value as the metric reads (a loss back to positive)."""
    return -value if metric in LOWER_IS_BETTER else value


def subsample(
    y: np.ndarray, *, task: str, seed: int, fraction: float | None = None, shots: int | None = None
) -> np.ndarray:
    """Row indices of a label-efficiency subset.

    A random `fraction` (in (0, 1], as `ProbeOptions.train_fraction` declares), or `shots` per
    class.
    """
    rng = np.random.default_rng(seed)
    if fraction is not None:
        return np.sort(rng.permutation(len(y))[: max(1, round(fraction * len(y)))])
    if shots is not None:
        if task == MULTI_LABEL:
            raise ValueError(
                "--shots needs single-label classes; use --train-fraction for multi-label data"
            )
        classes = y.reshape(len(y))
        picks = [rng.permutation(np.flatnonzero(classes == c))[:shots] for c in np.unique(classes)]
        return np.sort(np.concatenate(picks))
    return np.arange(len(y))


def select_features(features: dict[str, np.ndarray], kinds: tuple[str, ...]) -> np.ndarray:
    """Concatenate the requested kinds (e.g. cls+mean) into one (n, D) matrix."""
    return np.concatenate([features[k] for k in kinds], axis=1)
