"""Fit heads on cached features: hyper-parameters chosen on val, test scored once with the choice.

`fit_probe` speaks numpy only (no files); `run_probe` resolves the cache entries built from the
file the user names (`probe.entries`), fits every requested (head, seed), and writes one result
record per configuration.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.extract import extract as extract_features
from cache.options import EntryFilter, ExtractOptions
from cache.store import CacheKey, read_attrs, read_key, read_split
from medprobe.backbones.registry import default_kinds
from medprobe.data import (
    DEFAULT_DATASET,
    DEFAULT_SIZE,
    SPLITS,
    DatasetSpec,
    dataset_path,
    file_md5,
    get_dataset,
    load_labels,
)
from medprobe.data.validate import MULTI_LABEL, check_trainable
from medprobe.device import torch_threads
from medprobe.metrics import LOWER_IS_BETTER, collapse_of, evaluate, log_loss, selection_metric
from medprobe.results import RunResult, named_class
from medprobe.tracking import open_tracker, split_scalars
from probe.entries import matching_entries
from probe.heads import HEADS, head_class, head_threads
from probe.options import REFITS, ProbeOptions
from probe.settings import FitSettings, seeds_for

log = logging.getLogger(__name__)


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
    with torch_threads(head_threads(*train[0].shape)):
        clock = time.perf_counter()
        score = make_scorer(val[1], task=task, metric=metric)
        sweep = head_class(head).sweep(train[0], train[1], val[0], score, task=task, n_classes=n_classes)
        sweep_seconds, clock = time.perf_counter() - clock, time.perf_counter()
        val_scores = sweep.best.predict_proba(val[0])
        chosen = _refitted(sweep.best, train, val) if refit == "train+val" else sweep.best
        refit_seconds, clock = time.perf_counter() - clock, time.perf_counter()
        test_scores = chosen.predict_proba(test[0])
    test_metrics = evaluate(test[1], test_scores, task=task, bootstrap=bootstrap, seed=seed)
    bootstrap_seconds = time.perf_counter() - clock
    val_metrics = evaluate(val[1], val_scores, task=task)
    return ProbeFit(
        head=chosen,
        params=sweep.params,
        val=val_metrics,
        test=test_metrics,
        val_scores=[(params, _natural(value, metric)) for params, value in sweep.val_scores],
        test_scores=test_scores,
        selected_on=metric,
        selection_note=note,
        refit=None if refit == "none" else refit,
        collapse=collapse_of(
            {"val": (val[1], val_scores, val_metrics), "test": (test[1], test_scores, test_metrics)},
            task=task,
        ),
        sweep_seconds=sweep_seconds,
        refit_seconds=refit_seconds,
        bootstrap_seconds=bootstrap_seconds,
    )


def _refitted(head, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]):
    """The selected head's hyper-parameters fitted again, on train and val together."""
    return copy.deepcopy(head).fit(np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]))


def make_scorer(y_val: np.ndarray, *, task: str, metric: str) -> Callable[[np.ndarray], float]:
    """proba (n_val, n_classes) -> the chosen val score, higher is better (a loss enters negated)."""
    if metric == "log_loss":
        return lambda proba: -log_loss(y_val, proba, task=task)
    return lambda proba: evaluate(y_val, proba, task=task)[metric]


def _natural(value: float, metric: str) -> float:
    """A scorer's value as the metric reads (a loss back to positive)."""
    return -value if metric in LOWER_IS_BETTER else value


def subsample(
    y: np.ndarray, *, task: str, seed: int, fraction: float | None = None, shots: int | None = None
) -> np.ndarray:
    """Row indices of a label-efficiency subset: a random `fraction` (in (0, 1], as
    `ProbeOptions.train_fraction` declares), or `shots` per class."""
    rng = np.random.default_rng(seed)
    if fraction is not None:
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
    dataset: str = DEFAULT_DATASET,
    *,
    size: int = DEFAULT_SIZE,
    backbone: str | None = None,
    options: ProbeOptions | None = None,
    task: str | None = None,
    cache_root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs",
    extract: ExtractOptions | None = None,
    where: EntryFilter | None = None,
    skip_existing: bool = False,
    **option_values,
) -> list[RunResult]:
    """Fit heads on the cached features of every matching entry; one record per configuration.

    Args:
        backbone: only this backbone's entries; None fits every backbone cached for the data.
        options: heads, features, selection, seeds, subsets (`ProbeOptions`), or its fields as
            `option_values`.
        extract: extract the backbone's features first (instant when cached) as these options
            say, and fit that entry.
        where: without `extract`, fit only the entries built as asked (weights, resize, ...).
        skip_existing: leave configurations whose record exists in `out` alone (`probe suite`).
    """
    options = options or ProbeOptions(**option_values)
    spec = get_dataset(dataset, task=task)
    if extract is not None:
        if backbone is None:
            raise ValueError("extracting first (--extract) needs --backbone")
        path = extract_features(
            backbone,
            dataset,
            size=size,
            task=task,
            data_root=data_root,
            cache_root=cache_root,
            options=extract,
        ).path
        entries = [(path, read_key(path))]
    else:
        entries = _matching(spec, size, data_root, cache_root, backbone, where or EntryFilter())
    npz = dataset_path(spec, size=size, root=data_root, download=False)
    results = []
    for path, key in entries:
        todo = _todo(options, key, spec, out, skip_existing)
        splits = _read_entry(path, npz, spec) if todo else None
        for settings in todo:
            result = _one_run(splits, key, path, spec, settings)
            result.save(out)
            _track(result, options.tracker, out)
            results.append(result)
    return results


def _todo(options: ProbeOptions, key: CacheKey, spec: DatasetSpec, out, skip_existing) -> list[FitSettings]:
    """The (head, seed) configurations to fit on one entry, less those whose record exists."""
    kinds = options.kinds or default_kinds(key.features)
    missing = [k for k in kinds if k not in key.features]
    if missing:
        raise ValueError(f"{key.backbone} has no feature kind {missing}; it has {'+'.join(key.features)}")
    subsampled = options.train_fraction is not None or options.shots is not None
    todo = []
    for head in options.heads:
        for seed in seeds_for(head, options.seeds, subsampled=subsampled):
            settings = FitSettings(
                head=head,
                kinds=kinds,
                select=options.select,
                refit=options.refit,
                fraction=options.train_fraction,
                shots=options.shots,
                bootstrap=options.bootstrap,
                seed=seed,
            )
            record = Path(out) / f"{settings.run_name(spec, key)}.json"
            if skip_existing and record.exists():
                log.info("skip %s: the record exists", record.name)
            else:
                todo.append(settings)
    return todo


def _read_entry(path: Path, npz: Path, spec: DatasetSpec) -> dict[str, tuple[dict, np.ndarray]]:
    """Every split of an entry, whose labels must be those of the data file it is used for."""
    expected = {s: load_labels(npz, s, task=spec.task, n_classes=spec.n_classes) for s in SPLITS}
    return {split: read_split(path, split, labels=expected[split]) for split in SPLITS}


def _matching(spec, size, data_root, cache_root, backbone, where) -> list[tuple[Path, CacheKey]]:
    """(path, key) of the complete entries built from the file the user names, as `where` asks."""
    npz = dataset_path(spec, size=size, root=data_root, download=False)
    return matching_entries(
        cache_root,
        dataset=spec.flag,
        size=size,
        data_md5=file_md5(npz),
        npz=npz,
        backbone=backbone,
        where=where,
    )


def _one_run(splits, key: CacheKey, path: Path, spec: DatasetSpec, settings: FitSettings) -> RunResult:
    (train_feats, y_train), val, test = splits["train"], splits["val"], splits["test"]
    rows = subsample(
        y_train, task=spec.task, seed=settings.seed, fraction=settings.fraction, shots=settings.shots
    )
    subset = f" after {settings.subset_flag} ({len(rows)} of {len(y_train)} images)"
    fit = fit_probe(
        (select_features(train_feats, settings.kinds)[rows], y_train[rows]),
        (select_features(val[0], settings.kinds), val[1]),
        (select_features(test[0], settings.kinds), test[1]),
        head=settings.head,
        task=spec.task,
        n_classes=spec.n_classes,
        select=settings.select,
        refit=settings.refit,
        bootstrap=settings.bootstrap,
        seed=settings.seed,
        where=f"{spec.flag}_{key.size} train{subset if settings.subset_flag else ''}",
    )
    return _record(fit, key, path, spec, settings, n_train=(len(rows), len(y_train)), y_test=test[1])


def _track(result: RunResult, tracker: str | None, out) -> None:
    """The selection sweep (val score of every grid point, in grid order) and the test metrics."""
    if tracker is None:
        return
    logger = open_tracker(tracker, out, result.run_name)
    logger.params(result.config)
    metric = result.hparams["selected_on"]
    for step, (params, score) in enumerate(result.hparams["val_sweep"]):
        logger.scalars({f"sweep/val_{metric}": score} | {f"sweep/{k}": v for k, v in params.items()}, step)
    test = split_scalars(result.metrics["test"], "test")
    logger.scalars(test | split_scalars(result.metrics["val"], "val"), 0)
    logger.finish({k: v for k, v in result.hparams.items() if k != "val_sweep"}, test)


def _record(fit: ProbeFit, key, path, spec, settings: FitSettings, *, n_train, y_test) -> RunResult:
    """The result record of one fit: metrics, chosen hyper-parameters, provenance, timings."""
    n_used, n_all = n_train
    extraction = read_attrs(path).get("extraction", {})
    collapse = fit.collapse and named_class(fit.collapse, spec.labels)
    return RunResult(
        dataset=spec.flag,
        size=key.size,
        model=key.backbone,
        method=settings.head,
        seed=settings.seed,
        metrics={"val": fit.val, "test": fit.test},
        config=settings.config(key),
        task=spec.task,
        class_names=list(spec.labels),
        hparams=fit.params
        | {
            "features": "+".join(settings.kinds),
            "select": settings.select,
            "selected_on": fit.selected_on,
            "selection_note": fit.selection_note,
            "refit": fit.refit,
            "deterministic": HEADS[settings.head].deterministic and n_used == n_all,
            "n_train": n_used,
            "train_fraction": settings.fraction,
            "shots": settings.shots,
            "weights": key.weights,
            "val_sweep": [[params, score] for params, score in fit.val_scores],
        },
        timings={
            "fit_s": round(fit.sweep_seconds + fit.refit_seconds, 3),
            "sweep_s": round(fit.sweep_seconds, 3),
            "refit_s": round(fit.refit_seconds, 3),
            "bootstrap_s": round(fit.bootstrap_seconds, 3),
            "extract_s": extraction.get("seconds"),
            "extract_images_per_s": extraction.get("images_per_second"),
        },
        cache_key=key.digest,
        tag=settings.tag(key.features),
        collapsed=collapse is not None,
        collapse=collapse,
        predictions={"test_score": fit.test_scores.astype(np.float32), "test_true": y_test},
    )
