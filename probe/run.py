"""`probe fit` end to end.

The cache entries built from the file the user names (`probe.entries`), every requested (head, seed)
fitted on them (`probe.fit.fit_probe`), one result record each.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from cache.extract import extract as extract_features
from cache.key import CacheKey
from cache.options import EntryFilter, ExtractOptions
from cache.slices import AXES, LEARNED
from cache.store import read_attrs, read_key, read_split
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
from medprobe.errors import UserError
from medprobe.metrics import named_class
from medprobe.results import RunResult
from medprobe.tracking import open_tracker, split_scalars
from probe.entries import matching_entries
from probe.fit import ProbeFit, fit_probe, select_features, subsample
from probe.heads import HEADS
from probe.options import ProbeOptions
from probe.settings import FitSettings, seeds_for
from probe.volumes import volume_rows, volume_side

log = logging.getLogger(__name__)


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
    baseline: str | None = None,
) -> list[RunResult]:
    """Fit heads on the cached features of every matching entry; one record per configuration.

    Args:
        backbone: only this backbone's entries; None fits every backbone cached for the data.
        options: heads, features, selection, seeds, subsets (`ProbeOptions`; None: its defaults).
        extract: extract the backbone's features first (instant when cached) as these options
            say, and fit that entry.
        where: without `extract`, fit only the entries built as asked (weights, resize, ...).
        skip_existing: leave configurations whose record exists in `out` alone (`probe suite`).
        baseline: the records are this null baseline's (`probe.baselines`), not a method's.
    """
    options, where = options or ProbeOptions(), where or EntryFilter()
    dspec = get_dataset(dataset, task=task)
    if not dspec.volumetric and (options.axes, options.slices) != ("all", "mean"):
        raise UserError(
            f"--axes / --slices aggregate a 3D dataset's slices; {dspec.flag} is 2D, drop them"
        )
    if extract is None:
        entries = _matching(dspec, size, data_root, cache_root, backbone, where, task)
    else:
        where_data = {"size": size, "task": task, "data_root": data_root, "cache_root": cache_root}
        entries = [_extracted(backbone, dataset, extract, where_data)]
    npz = dataset_path(dspec, size=size, root=data_root, download=False)
    results = []
    for path, key in entries:
        todo = _todo(options, key, dspec, out, skip_existing, baseline)
        splits = _read_entry(path, npz, dspec, key) if todo else {}
        for settings in todo:
            rows, pooling = volume_rows(splits, key, settings, npz, dspec)
            result = _one_run(rows, key, path, dspec, settings, pooling)
            result.save(out)
            _track(result, options.tracker, out)
            results.append(result)
    if options.baselines and baseline is None:
        from probe.baselines import run_baselines  # it fits the random-init twin through run_probe

        results += run_baselines(
            dataset,
            size=size,
            backbone=backbone,
            options=dataclasses.replace(options, baselines=False),
            extract=extract or where.to_extract(),
            task=task,
            data_root=data_root,
            cache_root=cache_root,
            out=out,
            skip_existing=skip_existing,
        )
    return results


def _extracted(backbone, dataset, options: ExtractOptions, where: dict) -> tuple[Path, CacheKey]:
    """(path, key) of the entry `options` build (extracting it unless it is cached)."""
    if backbone is None:
        raise ValueError("extracting first (--extract) needs --backbone")
    path = extract_features(backbone, dataset, options=options, **where).path
    return path, read_key(path)


def _todo(
    options: ProbeOptions, key: CacheKey, dspec: DatasetSpec, out, skip_existing, baseline=None
) -> list[FitSettings]:
    """The (head, seed) configurations to fit on one entry, less those whose record exists."""
    kinds = options.kinds or default_kinds(key.features)
    missing = [k for k in kinds if k not in key.features]
    if missing:
        raise ValueError(
            f"{key.backbone} has no feature kind {missing}; it has {'+'.join(key.features)}"
        )
    subsampled = options.train_fraction is not None or options.shots is not None
    volume = (options.axes, options.slices) if key.slices is not None else None
    random = subsampled or (volume is not None and options.slices in LEARNED)  # seeds matter
    todo = []
    for head in options.heads:
        for seed in seeds_for(head, options.seeds, subsampled=random):
            settings = FitSettings(
                head=head,
                kinds=kinds,
                select=options.select,
                refit=options.refit,
                fraction=options.train_fraction,
                shots=options.shots,
                bootstrap=options.bootstrap,
                seed=seed,
                baseline=baseline,
                volume=volume,
            )
            record = Path(out) / f"{settings.run_name(dspec, key)}.json"
            if skip_existing and record.exists():
                log.info("skip %s: the record exists", record.name)
            else:
                todo.append(settings)
    return todo


def _read_entry(
    path: Path, npz: Path, dspec: DatasetSpec, key: CacheKey
) -> dict[str, tuple[dict, np.ndarray]]:
    """Every split of an entry, whose labels must be those of the data file it is used for.

    A 3D entry's rows are slices, each labelled as its volume (`cache.slices`).
    """
    expected = {s: load_labels(npz, s, task=dspec.task, n_classes=dspec.n_classes) for s in SPLITS}
    if key.slices is not None:
        per = len(AXES[key.slices]) * volume_side(npz)
        expected = {s: np.repeat(y, per, axis=0) for s, y in expected.items()}
    return {split: read_split(path, split, labels=expected[split]) for split in SPLITS}


def _matching(
    dspec, size, data_root, cache_root, backbone, where, task=None
) -> list[tuple[Path, CacheKey]]:
    """(path, key) of the complete entries built from the file the user names, as `where` asks."""
    npz = dataset_path(dspec, size=size, root=data_root, download=False)
    return matching_entries(
        cache_root,
        dataset=dspec.flag,
        size=size,
        data_md5=file_md5(npz),
        npz=npz,
        backbone=backbone,
        where=where,
        data_root=data_root,
        task=task if dspec.path else None,
    )


def _one_run(
    splits, key: CacheKey, path: Path, dspec: DatasetSpec, settings: FitSettings, pooling: dict
) -> RunResult:
    """One (head, seed) fitted on an entry's rows; `pooling`: how a 3D entry's were learned."""
    (train_feats, y_train), val, test = splits["train"], splits["val"], splits["test"]
    rows = subsample(
        y_train,
        task=dspec.task,
        seed=settings.seed,
        fraction=settings.fraction,
        shots=settings.shots,
    )
    subset = f" after {settings.subset_flag} ({len(rows)} of {len(y_train)} images)"
    fit = fit_probe(
        (select_features(train_feats, settings.kinds)[rows], y_train[rows]),
        (select_features(val[0], settings.kinds), val[1]),
        (select_features(test[0], settings.kinds), test[1]),
        head=settings.head,
        task=dspec.task,
        n_classes=dspec.n_classes,
        select=settings.select,
        refit=settings.refit,
        bootstrap=settings.bootstrap,
        seed=settings.seed,
        where=f"{dspec.flag}_{key.size} train{subset if settings.subset_flag else ''}",
    )
    n_train = (len(rows), len(y_train))
    return _record(fit, key, path, dspec, settings, n_train=n_train, y_test=test[1], more=pooling)


def _track(result: RunResult, tracker: str | None, out) -> None:
    """The selection sweep (val score of every grid point, in grid order) and the test metrics."""
    if tracker is None:
        return
    logger = open_tracker(tracker, out, result.run_name)
    logger.params(result.config)
    metric = result.hparams["selected_on"]
    for step, (params, score) in enumerate(result.hparams["val_sweep"]):
        logger.scalars(
            {f"sweep/val_{metric}": score} | {f"sweep/{k}": v for k, v in params.items()}, step
        )
    test = split_scalars(result.metrics["test"], "test")
    logger.scalars(test | split_scalars(result.metrics["val"], "val"), 0)
    logger.finish({k: v for k, v in result.hparams.items() if k != "val_sweep"}, test)


def _record(
    fit: ProbeFit, key, path, dspec, settings: FitSettings, *, n_train, y_test, more: dict
) -> RunResult:
    """The result record of one fit: metrics, chosen hyper-parameters, provenance, timings."""
    n_used, n_all = n_train
    extraction = read_attrs(path).get("extraction", {})
    collapse = fit.collapse and named_class(fit.collapse, dspec.labels)
    return RunResult(
        dataset=dspec.flag,
        size=key.size,
        model=key.backbone,
        method=settings.head,
        seed=settings.seed,
        metrics={"val": fit.val, "test": fit.test},
        config=settings.config(key),
        task=dspec.task,
        class_names=list(dspec.labels),
        hparams=fit.params
        | {
            "features": "+".join(settings.kinds),
            "select": settings.select,
            "selected_on": fit.selected_on,
            "selection_note": fit.selection_note,
            "refit": fit.refit,
            "deterministic": HEADS[settings.head].deterministic and n_used == n_all and not more,
            "n_train": n_used,
            "train_fraction": settings.fraction,
            "shots": settings.shots,
            "weights": key.weights,
            "val_sweep": [[params, score] for params, score in fit.val_scores],
        }
        | more,
        timings={
            "fit_s": round(fit.sweep_seconds + fit.refit_seconds, 3),
            "sweep_s": round(fit.sweep_seconds, 3),
            "refit_s": round(fit.refit_seconds, 3),
            "bootstrap_s": round(fit.bootstrap_seconds, 3),
            "head_device": fit.device,
            "extract_s": extraction.get("seconds"),
            "extract_images_per_s": extraction.get("images_per_second"),
            "extract_peak_mb": extraction.get("peak_memory_mb"),
            "params_m": extraction.get("params_m"),
            "gflops": extraction.get("gflops"),
            "device": extraction.get("device"),
        },
        cache_key=key.digest,
        tag=settings.tag(key.features),
        collapsed=collapse is not None,
        collapse=collapse,
        baseline=settings.baseline,
        predictions={"test_score": fit.test_scores.astype(np.float32), "test_true": y_test},
    )
