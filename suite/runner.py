"""Run a recipe in one process: every missing run of its matrix, then the report.

Every run whose result record exists is skipped, and an interrupted fine-tune resumes from its
last checkpoint, so re-running the suite after a crash does only what is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from finetune.train import train
from medprobe.report import write_report
from probe.run import run_probe
from suite import values
from suite.lpft import probe_head
from suite.recipe import Recipe, finetune_config

log = logging.getLogger(__name__)


def run_suite(recipe: Recipe) -> Path:
    """Run every missing run of the recipe, then write the report; returns report.html's path."""
    for dataset in recipe.datasets:
        for size in recipe.sizes:
            for probe in recipe.probes:
                _run_probe(recipe, probe, dataset, size)
            for options in recipe.finetunes:
                for seed in recipe.seeds:
                    log.info("finetune %s on %s_%d seed %d", options["model"], dataset, size, seed)
                    config = finetune_config(recipe, options, dataset, size, seed)
                    train(config, init_head=probe_head if config.init_head == "probe" else None)
    return write_report(recipe.out, recipe.report)


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
