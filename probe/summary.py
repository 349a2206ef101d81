"""A short text table of probe results: test metrics as mean ± std over seeds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from core.results import RunResult

COLUMNS = (("ACC", "acc"), ("AUC", "auc"), ("macro-F1", "macro_f1"), ("bal.ACC", "balanced_acc"))


def summary_table(results: list[RunResult]) -> str:
    """One row per (dataset, size, model, method, tag) with test metrics over its seeds."""
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in results:
        groups[r.dataset, r.size, r.model, r.method, r.tag].append(r)
    header = f"{'dataset':16} {'model':16} {'method':18} {'seeds':>5} " + " ".join(
        f"{c:>13}" for c, _ in COLUMNS
    )
    lines = [header, "-" * len(header)]
    for (dataset, size, model, method, tag), runs in groups.items():
        cells = " ".join(f"{_mean_std([r.metrics['test'][m] for r in runs]):>13}" for _, m in COLUMNS)
        name = f"{method}-{tag}" if tag else method
        lines.append(f"{f'{dataset}_{size}':16} {model:16} {name:18} {len(runs):>5} {cells}")
    return "\n".join(lines)


def _mean_std(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.3f}±{np.std(values, ddof=1):.3f}"
