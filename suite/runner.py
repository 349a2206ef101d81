"""Run a recipe: every missing run of its matrix, then the report.

Units (`suite.units`) run one after another in this process, or `jobs` at once in processes of
their own. Every run whose result record exists is skipped, and an interrupted fine-tune resumes
from its last checkpoint, so re-running the suite after a crash does only what is missing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from finetune.train import train
from medprobe.report import write_report
from probe.run import run_probe
from suite import values
from suite.lpft import probe_head
from suite.recipe import Recipe, finetune_config
from suite.units import Unit, run_units, units

log = logging.getLogger(__name__)


def run_suite(recipe: Recipe, *, jobs: int = 1) -> Path:
    """Run every missing run of the recipe, then write the report; returns report.html's path.

    Args:
        jobs: units run at once, each in a process of its own (`suite.units`); 1: one after
            another in this process.
    """
    if jobs > 1:
        run_units(recipe, jobs)
    else:
        for unit in units(recipe):
            run_unit(recipe, unit)
    return write_report(recipe.out, recipe.report)


def run_unit(recipe: Recipe, unit: Unit) -> None:
    """One probe table on one dataset and size, or one fine-tune run."""
    if unit.kind == "probe":
        _run_probe(recipe, recipe.probes[unit.table], unit.dataset, unit.size)
        return
    options = recipe.finetunes[unit.table]
    assert unit.seed is not None, "a fine-tune unit has its seed"
    log.info("finetune %s on %s_%d seed %d", options["model"], unit.dataset, unit.size, unit.seed)
    config = finetune_config(recipe, options, unit.dataset, unit.size, unit.seed)
    train(config, init_head=probe_head if config.init_head == "probe" else None)


def gpu_ids() -> list[str]:
    """The GPUs units are pinned to: those `CUDA_VISIBLE_DEVICES` allows, else every one."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _run_probe(recipe: Recipe, probe: dict, dataset: str, size: int) -> None:
    """Extract (instant when cached), then fit every configuration whose record is missing."""
    run_probe(
        dataset,
        size=size,
        backbone=probe["backbone"],
        options=values.probe_options(probe, tuple(recipe.seeds)),
        task=recipe.task,
        out=recipe.out,
        cache_root=recipe.cache_root,
        data_root=recipe.data_root,
        extract=values.extract_options(probe),
        skip_existing=True,
    )
