"""Fit heads on cached features: hyper-parameters chosen on val, test scored once with the choice.

`fit_probe` speaks numpy only (no files); `run_probe` reads cache entries, fits every requested
(head, seed), and writes one result record per run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.extract import extract as extract_features
from cache.store import CacheError, CacheKey, find_entries, read_attrs, read_key, read_split
from medprobe.data import get_dataset
from medprobe.metrics import MULTI_LABEL, evaluate
from medprobe.results import RunResult
from probe.heads import HEADS

log = logging.getLogger(__name__)

SELECT_METRICS = {"acc": "acc", "auc": "auc", "f1": "macro_f1"}


@dataclass
class ProbeFit:
    """One fitted head: what was chosen, how it scored, how long it took."""

    head: object
    params: dict
    val: dict
    test: dict
    val_scores: list[tuple[dict, float]]
    seconds: float
    test_scores: np.ndarray


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    head: str = "logreg",
    task: str,
    n_classes: int,
    select: str = "acc",
    bootstrap: int = 0,
    seed: int = 0,
) -> ProbeFit:
    """Sweep a head's grid on train, choose on val, score test once.

    Args:
        train, val, test: (features (n, D), labels (n, L)) per split.
        head: a key of `probe.heads.HEADS`.
        select: val metric that picks the hyper-parameters: acc, auc or f1 (macro).
        bootstrap: resamples for 95% intervals on the test metrics.
        seed: seeds torch (the linear head's shuffling) and the bootstrap.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if select not in SELECT_METRICS:
        raise ValueError(f"unknown selection metric {select!r}; choose one of {', '.join(SELECT_METRICS)}")
    torch.manual_seed(seed)
    start = time.perf_counter()
    score = make_scorer(val[1], task=task, metric=SELECT_METRICS[select])
    sweep = HEADS[head].sweep(train[0], train[1], val[0], score, task=task, n_classes=n_classes)
    seconds = time.perf_counter() - start
    val_metrics = evaluate(val[1], sweep.best.predict_proba(val[0]), task=task)
    test_scores = sweep.best.predict_proba(test[0])
    test_metrics = evaluate(test[1], test_scores, task=task, bootstrap=bootstrap, seed=seed)
    return ProbeFit(
        sweep.best, sweep.params, val_metrics, test_metrics, sweep.val_scores, seconds, test_scores
    )


def make_scorer(y_val: np.ndarray, *, task: str, metric: str) -> Callable[[np.ndarray], float]:
    """proba (n_val, n_classes) -> the chosen val metric (higher is better)."""
    return lambda proba: evaluate(y_val, proba, task=task)[metric]


def subsample(
    y: np.ndarray, *, task: str, seed: int, fraction: float | None = None, shots: int | None = None
) -> np.ndarray:
    """Row indices of a label-efficiency subset: a random `fraction`, or `shots` per class."""
    rng = np.random.default_rng(seed)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}")
        return np.sort(rng.permutation(len(y))[: max(1, round(fraction * len(y)))])
    if shots is not None:
        if task == MULTI_LABEL:
            raise ValueError("--shots needs single-label classes; use --train-fraction for multi-label data")
        classes = y.reshape(len(y))
        picks = [rng.permutation(np.flatnonzero(classes == c))[:shots] for c in np.unique(classes)]
        return np.sort(np.concatenate(picks))
    return np.arange(len(y))


def select_features(features: dict[str, np.ndarray], kinds: tuple[str, ...]) -> np.ndarray:
    """Concatenate the requested kinds (e.g. cls+mean) into one (n, D) matrix."""
    return np.concatenate([features[k] for k in kinds], axis=1)


def run_probe(
    dataset: str = "bloodmnist",
    *,
    size: int = 28,
    backbone: str | None = None,
    heads: tuple[str, ...] = ("logreg",),
    features: str | None = None,
    select: str = "acc",
    seeds: tuple[int, ...] = (0,),
    train_fraction: float | None = None,
    shots: int | None = None,
    bootstrap: int = 1000,
    task: str | None = None,
    cache_root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs",
    extract: dict | None = None,
) -> list[RunResult]:
    """Fit `heads` on the cached features of every matching entry; one record per (entry, head, seed).

    Args:
        backbone: only this backbone's entry; None fits every complete entry of the dataset/size.
        features: "cls", "mean", "cls+mean", "pool"; None takes every kind the entry holds.
        extract: extract the backbone's features first (instant when cached) with these options
            of `cache.extract.extract` (weights, pretrained, precision, ...), and fit that entry.
    """
    if train_fraction is not None and shots is not None:
        raise ValueError("give --train-fraction or --shots, not both")
    spec = get_dataset(dataset, task=task)
    if extract is not None:
        if backbone is None:
            raise ValueError("extracting first (--extract) needs --backbone")
        path = extract_features(
            backbone, dataset, size=size, task=task, data_root=data_root, cache_root=cache_root, **extract
        ).path
        entries = [(path, read_key(path))]
    else:
        entries = find_entries(cache_root, dataset=spec.flag, size=size, backbone=backbone)
    if not entries:
        which = f"--backbone {backbone}" if backbone else "--backbone B"
        raise CacheError(
            f"no cached features for {backbone or 'any backbone'} on {spec.flag}_{size}; create them with "
            f"`probe extract {which} --dataset {dataset} --size {size}` (or pass --extract)"
        )
    results = []
    for path, key in _newest_per_backbone(entries):
        splits = {split: read_split(path, split) for split in ("train", "val", "test")}
        kinds = tuple(features.split("+")) if features else key.features
        for head in heads:
            for seed in seeds:
                result = _one_run(
                    splits,
                    key,
                    path,
                    spec,
                    kinds,
                    head=head,
                    seed=seed,
                    select=select,
                    fraction=train_fraction,
                    shots=shots,
                    bootstrap=bootstrap,
                )
                result.save(out)
                results.append(result)
    return results


def _one_run(splits, key, path, spec, kinds, *, head, seed, select, fraction, shots, bootstrap) -> RunResult:
    missing = [k for k in kinds if k not in splits["train"][0]]
    if missing:
        raise ValueError(f"{key.backbone} has no feature kind {missing}; it has {'+'.join(key.features)}")
    (train_feats, y_train), val, test = splits["train"], splits["val"], splits["test"]
    rows = subsample(y_train, task=spec.task, seed=seed, fraction=fraction, shots=shots)
    fit = fit_probe(
        (select_features(train_feats, kinds)[rows], y_train[rows]),
        (select_features(val[0], kinds), val[1]),
        (select_features(test[0], kinds), test[1]),
        head=head,
        task=spec.task,
        n_classes=spec.n_classes,
        select=select,
        bootstrap=bootstrap,
        seed=seed,
    )
    extraction = read_attrs(path).get("extraction", {})
    return RunResult(
        dataset=spec.flag,
        size=key.size,
        model=key.backbone,
        method=head,
        seed=seed,
        metrics={"val": fit.val, "test": fit.test},
        hparams=fit.params
        | {
            "features": "+".join(kinds),
            "select": select,
            "n_train": len(rows),
            "train_fraction": fraction,
            "shots": shots,
        },
        timings={
            "fit_s": round(fit.seconds, 3),
            "extract_s": extraction.get("seconds"),
            "extract_images_per_s": extraction.get("images_per_second"),
        },
        cache_key=key.digest,
        tag=run_tag(kinds, key.features, fraction, shots),
        predictions={"test_score": fit.test_scores.astype(np.float32), "test_true": test[1]},
    )


def run_tag(
    kinds: tuple[str, ...], all_kinds: tuple[str, ...], fraction: float | None, shots: int | None
) -> str:
    """What tells a run's variant apart in its name: non-default features, label efficiency."""
    parts = [] if tuple(kinds) == tuple(all_kinds) else ["+".join(kinds)]
    parts += [f"frac{fraction:g}"] if fraction is not None else []
    parts += [f"shots{shots}"] if shots is not None else []
    return "-".join(parts)


def _newest_per_backbone(entries: list[tuple[Path, CacheKey]]) -> list[tuple[Path, CacheKey]]:
    newest: dict[str, tuple[Path, CacheKey]] = {}
    for path, key in sorted(entries, key=lambda e: e[0].stat().st_mtime):
        if key.backbone in newest:
            log.info("several entries for %s; using the newest, %s", key.backbone, path.name)
        newest[key.backbone] = (path, key)
    return list(newest.values())
