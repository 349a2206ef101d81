"""A short text table of results: test metrics as mean ± std over seeds."""

from __future__ import annotations

import math

from medprobe.report import METRICS, build_rows
from medprobe.results import RunResult


def summary_table(results: list[RunResult]) -> str:
    """One row per (dataset, size, model, method variant) with test metrics over its seeds."""
    header = f"{'dataset':16} {'model':16} {'method':18} {'seeds':>5} " + " ".join(
        f"{name:>13}" for name, _ in METRICS
    )
    lines = [header, "-" * len(header)]
    for row in build_rows(results, n_resamples=0):
        cells = " ".join(f"{_mean_std(*row.stats[m][:2], len(row.runs)):>13}" for _, m in METRICS)
        lines.append(
            f"{f'{row.dataset}_{row.size}':16} {row.model:16} {row.method:18} {len(row.runs):>5} {cells}"
        )
    return "\n".join(lines)


def _mean_std(mean: float, std: float, n_runs: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.4f}" if n_runs == 1 else f"{mean:.3f}±{std:.3f}"
