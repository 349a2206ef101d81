"""A short table of results: test metrics as mean ± std over seeds, one row per configuration."""

from __future__ import annotations

import math

from medprobe.report import METRICS, build_rows
from medprobe.results import RunResult


def summary_rows(results: list[RunResult]) -> list[dict]:
    """One row per (dataset, size, model, method variant) with test metrics over its seeds."""
    return [
        {"data": f"{row.dataset}_{row.size}", "model": row.model, "method": row.method_label,
         "seeds": len(row.runs)}
        | {label: _mean_std(*row.stats[metric][:2], len(row.runs)) for label, metric in METRICS}
        for row in build_rows(results, n_resamples=0)
    ]  # fmt: skip


def _mean_std(mean: float, std: float | None, n_runs: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.4f}" if n_runs == 1 or std is None else f"{mean:.3f}±{std:.3f}"
