"""The figures of a report.

ACC vs resolution, the best row's confusion matrix, label efficiency, training curves; each drawn by
`medprobe.report.draw` from the report's rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from medprobe.report import draw
from medprobe.report.rows import Row


def report_figures(rows: list[Row], runs_dir: Path):
    """(title, figure, file name) of every figure the runs support."""
    for dataset in sorted({r.dataset for r in rows}):
        mine = [r for r in rows if r.dataset == dataset]
        plain = [r for r in mine if not r.tag]
        series: dict[str, list[tuple[float, float, float | None]]] = defaultdict(list)
        for r in plain:
            series[r.label].append((r.size, *r.stats["acc"][:2]))
        if len({r.size for r in plain}) >= 2:  # a line needs two sizes
            yield (
                f"{dataset}: test ACC vs resolution",
                draw.lines(
                    series, xlabel="image size (px)", ylabel="test ACC", title=dataset, log_x=True
                ),
                f"{dataset}_resolution.png",
            )
        for size in sorted({r.size for r in mine}):
            forest = _forest([r for r in mine if r.size == size])
            if forest:
                title = f"{dataset}_{size}: test ACC and AUC with 95% intervals"
                yield title, draw.forest(forest, title=title), f"{dataset}_{size}_forest.png"
        runs = [r for r in mine if r.baseline is None] or mine
        best = max(runs, key=lambda r: np.nan_to_num(r.stats["acc"][0], nan=-1))
        labels = best.runs[0].class_names
        matrix = best.runs[0].metrics["test"].get("confusion_matrix")
        if matrix and labels and np.ndim(matrix) == 2:
            title = f"{dataset}_{best.size}: confusion matrix of {best.label}"
            yield title, draw.confusion(matrix, labels, title=title), f"{dataset}_confusion.png"
        efficiency = _label_efficiency(mine)
        if efficiency:
            yield (
                f"{dataset}: label efficiency",
                draw.lines(
                    efficiency,
                    xlabel="train fraction or shots per class",
                    ylabel="test ACC",
                    title=dataset,
                    log_x=True,
                ),
                f"{dataset}_label_efficiency.png",
            )
    for row in rows:
        for run in row.runs[:1]:
            history = runs_dir / run.run_name / "history.json"
            if history.exists():
                fig = draw.training_curves(
                    json.loads(history.read_text()),
                    run.hparams.get("best_epoch", 0),
                    title=run.run_name,
                )
                yield f"training curves: {run.run_name}", fig, f"curves_{run.run_name}.png"


def _label_efficiency(rows: list[Row]) -> dict[str, list[tuple[float, float, float | None]]]:
    series: dict[str, list[tuple[float, float, float | None]]] = defaultdict(list)
    for r in rows:
        fraction, shots = r.runs[0].hparams.get("train_fraction"), r.runs[0].hparams.get("shots")
        amount = fraction if fraction is not None else shots
        if amount is not None:
            kind = "fraction" if fraction is not None else "shots"
            detail = f" [{r.detail}]" if r.detail else ""
            series[f"{r.model} · {r.method}{detail} ({kind})"].append((amount, *r.stats["acc"][:2]))
    return dict(series)


def _forest(rows: list[Row]) -> dict[str, list[tuple[str, float, float, float]]]:
    """Metric -> (row label, mean, lo, hi) of every row with an interval (bootstrap, or ± std)."""
    out: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r.label):
        for name, metric in (("test ACC", "acc"), ("test AUC", "auc")):
            mean, std, lo, hi = r.stats[metric]
            if lo is None and std is not None:
                lo, hi = mean - std, mean + std
            if lo is not None and hi is not None and np.isfinite(mean):
                out[name].append((r.label, mean, lo, hi))
    return dict(out)
