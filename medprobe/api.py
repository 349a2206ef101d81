"""The Python API: what the commands do, as functions a notebook calls.

    from medprobe import api

    api.extract("dinov2_small", "breastmnist", weights="dinov2_vits14.safetensors")
    api.fit("breastmnist", backbone="dinov2_small", heads=("logreg", "knn"), out="runs")
    api.finetune("breastmnist", backbone="resnet18", epochs=10, out="runs")
    table = api.load_results("runs").to_frame()

Options are the commands' own, as keywords (`probe extract --img-size 32` is `img_size=32`); a
wrong one is refused with the valid names. This module is the facade over every layer (cache,
probe, finetune, suite); nothing in the library imports it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from medprobe.data import DEFAULT_SIZE
from medprobe.errors import UserError
from medprobe.metrics import SCALARS
from medprobe.results import RunResult
from medprobe.results import load_results as _load_records

__all__ = ["Results", "extract", "finetune", "fit", "load_results", "references"]


class Results(list):
    """Run records (`medprobe.results.RunResult`), with a table view."""

    def to_frame(self):
        """One row per run: its name, dataset, size, model, method, seed and val/test metrics."""
        try:
            import pandas
        except ImportError as e:
            raise UserError("Results.to_frame needs pandas: pip install pandas") from e
        return pandas.DataFrame([_row(r) for r in self])


def _row(run: RunResult) -> dict:
    row = {
        "run": run.run_name,
        "dataset": run.dataset,
        "size": run.size,
        "model": run.model,
        "method": run.variant,
        "seed": run.seed,
        "baseline": run.baseline,
        "collapsed": run.collapsed,
    }
    for split in ("val", "test"):
        metrics = run.metrics.get(split, {})
        row |= {f"{split}_{name}": metrics.get(name) for name in SCALARS}
    return row


def extract(
    backbone: str,
    dataset: str,
    *,
    size: int = DEFAULT_SIZE,
    data_root: str | os.PathLike | None = None,
    cache_root: str | os.PathLike | None = None,
    **options,
) -> Path:
    """`probe extract`: the cache entry of `backbone` on `dataset` (reused when cached).

    Args:
        options: `probe extract`'s options (`cache.options.ExtractOptions`): weights, pretrained,
            img_size, resize, precision, dtype, batch_size, device, ...
    """
    from cache.extract import extract as extract_entry
    from cache.options import ExtractOptions

    built = _options(ExtractOptions, options, "extract")
    return extract_entry(
        backbone, dataset, size=size, data_root=data_root, cache_root=cache_root, options=built
    ).path


def fit(
    dataset: str,
    *,
    backbone: str,
    size: int = DEFAULT_SIZE,
    data_root: str | os.PathLike | None = None,
    cache_root: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs",
    **options,
) -> Results:
    """`probe fit --extract`: heads on `backbone`'s cached features (extracted first if needed).

    Args:
        options: `probe fit`'s options (`probe.options.ProbeOptions`: heads, features, select,
            seeds, train_fraction, shots, bootstrap, baselines, ...) and how the entry is built
            (`cache.options.ExtractOptions`: weights, pretrained, img_size, resize, ...).
    """
    from cache.options import ExtractOptions
    from probe.options import ProbeOptions
    from probe.run import run_probe

    extract_keys = {f.name for f in dataclasses.fields(ExtractOptions)}
    probe_keys = {f.name for f in dataclasses.fields(ProbeOptions)}
    _refuse_unknown(options, extract_keys | probe_keys, "fit")
    probe = ProbeOptions(**{k: v for k, v in options.items() if k in probe_keys})
    built = ExtractOptions(**{k: v for k, v in options.items() if k in extract_keys})
    results = run_probe(
        dataset,
        backbone=backbone,
        options=probe,
        extract=built,
        size=size,
        data_root=data_root,
        cache_root=cache_root,
        out=out,
    )
    return Results(results)


def finetune(
    dataset: str, *, backbone: str, size: int = DEFAULT_SIZE, out: str = "runs", **options
) -> RunResult:
    """`finetune run`: train `backbone` on `dataset`; best epoch on val, test scored once.

    Args:
        options: `finetune run`'s options (`finetune.config.TrainConfig`): epochs, batch_size,
            lr, pretrained, weights, img_size, init_head ("probe" for LP-FT), data_root, ...
    """
    from finetune.config import TrainConfig
    from finetune.train import train
    from suite.lpft import probe_head

    fields = {"dataset": dataset, "model": backbone, "size": size, "out": str(out)}
    cfg = _options(TrainConfig, fields | options, "finetune")
    return train(cfg, init_head=probe_head if cfg.init_head == "probe" else None)


def load_results(runs_dir: str | os.PathLike) -> Results:
    """Every result record under `runs_dir` (a list; `.to_frame()` makes a pandas DataFrame)."""
    return Results(_load_records(runs_dir))


def references(dataset: str | None = None, size: int | None = None) -> list[dict]:
    """`probe references`: published figures with their source and protocol, as dicts."""
    from medprobe.references import load_references

    return [r.to_dict() for r in load_references(dataset, size)]


def _options(cls, values: dict, what: str):
    """`cls(**values)`, an unknown name refused with the valid ones."""
    _refuse_unknown(values, {f.name for f in dataclasses.fields(cls)}, what)
    return cls(**values)


def _refuse_unknown(values: dict, names: set[str], what: str) -> None:
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(
            f"unknown option {unknown[0]!r} for {what}; valid: {', '.join(sorted(names))}"
        )
