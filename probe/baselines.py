"""Null baselines: what a run's numbers must beat before they say anything about its backbone.

- `majority`: every image scored with train's class frequencies, so ACC is the majority class's
  share of test (for multi-label, each label's) and AUC is 0.5;
- `pixels`: logistic regression on the raw pixels (area-pooled to at most 28 x 28 px), its C chosen
  on val as a probe's is;
- `random-init`: the run's backbone with random weights, its features through the same heads
  (`probe.run.run_probe` on an entry extracted with `pretrained=False`).

Each is computed on the data file of the run, never typed in, and written as a record of its own
(`RunResult.baseline`), which the report shows as a grey row beside the runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from cache.options import ExtractOptions
from medprobe.data import SPLITS, dataset_path, file_md5, get_dataset, load_split
from medprobe.data.validate import MULTI_LABEL
from medprobe.metrics import evaluate
from medprobe.results import RunResult
from probe.fit import fit_probe
from probe.options import ProbeOptions
from probe.run import run_probe

log = logging.getLogger(__name__)

BASELINES = ("majority", "pixels", "random-init")
PIXEL_SIZE = 28  # raw pixels of larger images are area-pooled to this size


def run_baselines(
    dataset: str,
    *,
    size: int,
    backbone: str | None,
    options: ProbeOptions,
    extract: ExtractOptions | None = None,
    task: str | None = None,
    data_root: str | os.PathLike | None = None,
    cache_root: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs",
    skip_existing: bool = False,
) -> list[RunResult]:
    """Fit the null baselines of one dataset and size, and write their records.

    Args:
        backbone: the backbone whose random-init twin to fit; None skips that baseline.
        options: the runs' probe options: the random-init twin is fitted with the same heads,
            seeds and selection; the pixel baseline with logreg and the same selection.
        extract: how the runs' entry was extracted; the twin's differs only in its weights.
    """
    dspec = get_dataset(dataset, task=task)
    npz = dataset_path(dspec, size=size, root=data_root, download=False)
    splits = {s: load_split(dspec, s, size=size, root=data_root, download=False) for s in SPLITS}
    context = {"dataset": dspec.flag, "size": size, "data_md5": file_md5(npz)}
    results = []
    for fit in (_majority, _pixels):
        result = fit(splits, dspec, options, context)
        if not (skip_existing and (Path(out) / f"{result.run_name}.json").exists()):
            result.save(out)
        results.append(result)
    if backbone is None:
        log.info("no --backbone: the random-init baseline needs one; skipped")
        return results
    twin = dataclasses.replace(extract or ExtractOptions(), pretrained=False, weights=None)
    return results + run_probe(
        dataset,
        size=size,
        backbone=backbone,
        options=options,
        task=task,
        cache_root=cache_root,
        data_root=data_root,
        out=out,
        extract=twin,
        skip_existing=skip_existing,
        baseline="random-init",
    )


def _majority(splits, dspec, options: ProbeOptions, context: dict) -> RunResult:
    """Every image scored with train's class (label) frequencies."""
    started = time.perf_counter()
    y_train = splits["train"][1]
    if dspec.task == MULTI_LABEL:
        prior = y_train.mean(axis=0)
    else:
        prior = np.bincount(y_train[:, 0], minlength=dspec.n_classes) / len(y_train)
    scores = {s: np.tile(prior, (len(splits[s][1]), 1)) for s in ("val", "test")}
    metrics = {
        "val": evaluate(splits["val"][1], scores["val"], task=dspec.task),
        "test": evaluate(
            splits["test"][1], scores["test"], task=dspec.task, bootstrap=options.bootstrap
        ),
    }
    return _record(
        "majority",
        model="majority",
        method="prior",
        metrics=metrics,
        test=(scores["test"], splits["test"][1]),
        dspec=dspec,
        context=context,
        hparams={"train_frequencies": [round(float(p), 6) for p in prior]},
        seconds=time.perf_counter() - started,
    )


def _pixels(splits, dspec, options: ProbeOptions, context: dict) -> RunResult:
    """Logistic regression on raw pixels, area-pooled to at most `PIXEL_SIZE` px."""
    started = time.perf_counter()
    data = {s: (_pooled(images), labels) for s, (images, labels) in splits.items()}
    fit = fit_probe(
        data["train"],
        data["val"],
        data["test"],
        head="logreg",
        task=dspec.task,
        n_classes=dspec.n_classes,
        select=options.select,
        bootstrap=options.bootstrap,
        where=f"{dspec.flag}_{context['size']} train",
    )
    return _record(
        "pixels",
        model="pixels",
        method="logreg",
        metrics={"val": fit.val, "test": fit.test},
        test=(fit.test_scores, splits["test"][1]),
        dspec=dspec,
        context=context | {"select": options.select, "pixels": PIXEL_SIZE},
        hparams=fit.params | {"selected_on": fit.selected_on, "pixels": data["train"][0].shape[1]},
        seconds=time.perf_counter() - started,
    )


def _pooled(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, D) float32 in [0, 1], area-pooled to at most PIXEL_SIZE px."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] > PIXEL_SIZE:
        x = torch.nn.functional.adaptive_avg_pool2d(x, PIXEL_SIZE)
    return x.flatten(1).numpy()


def _record(name, *, model, method, metrics, test, dspec, context, hparams, seconds) -> RunResult:
    score, truth = test
    return RunResult(
        dataset=dspec.flag,
        size=context["size"],
        model=model,
        method=method,
        seed=0,
        metrics=metrics,
        config=context | {"baseline": name},
        task=dspec.task,
        class_names=list(dspec.labels),
        hparams=hparams | {"baseline": name},
        timings={"fit_s": round(seconds, 3)},
        baseline=name,
        predictions={"test_score": score.astype(np.float32), "test_true": truth},
    )
