"""The report's tables, one object each, rendered alike to Markdown, HTML and LaTeX.

A dataset's table has its runs (sortable), then grey context rows that stay under them: the null
baselines and the published references closest to the runs (`medprobe.report.context`). Its notes
say what was tested: the test set's size and class prevalence, the positive class of a binary
task, and which data file (official or not) the runs were scored on. Timings live in a table of
their own, so hardware never sits beside accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medprobe.report import context
from medprobe.report.rows import METRICS, Row

Cell = tuple[str, str]  # (text, mark): mark is best, tied, text, ref, collapsed or ''
NON_OFFICIAL = "†"


@dataclass(kw_only=True)
class Table:
    """A titled table: notes under the title, sortable rows, then fixed context rows."""

    title: str
    header: list[str]
    body: list[list[Cell]]
    context: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def dataset_table(rows: list[Row], dataset: str) -> Table:
    """One dataset's comparison: runs by model x method, a column group per image size."""
    mine = [r for r in rows if r.dataset == dataset]
    runs = [r for r in mine if r.baseline is None]
    baselines = [r for r in mine if r.baseline is not None]
    sizes = sorted({r.size for r in mine})
    binary = mine[0].runs[0].task == "binary-class"
    positive = mine[0].runs[0].class_names[-1] if binary and mine[0].runs[0].class_names else "1"
    columns = [name for name, _ in METRICS] + ([f"sens. ({positive})", "spec."] if binary else [])
    columns += ["Δ null ACC / AUC"] if baselines and runs else []
    header = ["model", "method", "seeds"] + [f"{c} @{s}" for s in sizes for c in columns]
    margins = context.null_margins(runs, baselines)
    body = [
        _line(group, sizes, binary=binary, margins=margins, with_margin=bool(baselines))
        for group in _by_configuration(runs)
    ]
    fixed = [
        _line(group, sizes, binary=binary, margins={}, with_margin=bool(baselines and runs))
        for group in _by_configuration(baselines)
    ]
    fixed += context.reference_lines(runs, dataset, sizes, width=len(columns))
    return Table(
        title=dataset,
        header=header,
        body=body,
        context=[
            [(text, "ref" if mark in ("", "text") else mark) for text, mark in line]
            for line in fixed
        ],
        notes=context.dataset_notes(mine, positive if binary else None),
    )


def _by_configuration(rows: list[Row]) -> list[dict[int, Row]]:
    """Rows of one configuration (model, method) across sizes, by size; sorted by name."""
    groups: dict[tuple[str, str], dict[int, Row]] = {}
    for row in rows:
        groups.setdefault((row.model, row.method_label), {})[row.size] = row
    return [groups[key] for key in sorted(groups)]


def _line(group, sizes, *, binary, margins, with_margin) -> list[Cell]:
    first = next(iter(group.values()))
    collapsed = [str(s) for s, r in sorted(group.items()) if r.collapsed]
    method = first.method_label
    if collapsed:
        method += f" {context.COLLAPSED_MARK} collapsed @{','.join(collapsed)}"
    model = first.model + (f" {NON_OFFICIAL}" if context.non_official(first) else "")
    line = [(model, "text"), (method, "text"), (str(max(len(r.runs) for r in group.values())), "")]
    for size in sizes:
        row = group.get(size)
        line += [metric_cell(row, metric) for _, metric in METRICS]
        if binary:
            rates = _binary_rates(row)
            line += [(_number(rates[0]), ""), (_number(rates[1]), "")]
        if with_margin:
            line.append((margins.get(id(row), "–"), ""))
    return line


def metric_cell(row: Row | None, metric: str) -> Cell:
    """(text, mark): mean ± std over seeds, or mean [95% interval] for one seed."""
    if row is None or not np.isfinite(row.stats[metric][0]):
        return "–", ""
    mean, std, lo, hi = row.stats[metric]
    if std is not None:
        text = f"{mean:.3f} ± {std:.3f}"
    elif lo is not None:
        text = f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    else:
        text = f"{mean:.3f}"
    return text, "best" if metric in row.best else "tied" if metric in row.tied else ""


def _binary_rates(row: Row | None) -> tuple[float | None, float | None]:
    """Sensitivity (recall of the positive class, index 1) and specificity, mean over seeds."""
    if row is None:
        return None, None
    found = [r.metrics["test"].get("confusion_matrix") for r in row.runs]
    matrices = [np.asarray(m, float) for m in found if m is not None and np.shape(m) == (2, 2)]
    if not matrices:
        return None, None
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.mean([m[1, 1] / m[1].sum() for m in matrices])
        spec = np.mean([m[0, 0] / m[0].sum() for m in matrices])
    return float(sens), float(spec)


def _number(value: object, pattern: str = "{:.3f}") -> str:
    """A figure as `pattern` writes it; anything else (None, NaN, text) as –."""
    is_figure = isinstance(value, int | float) and np.isfinite(value)
    return pattern.format(value) if is_figure else "–"


def compute_table(rows: list[Row]) -> Table:
    """What each row cost and where it ran: hardware-dependent figures, apart from accuracy."""
    header = [
        "data",
        "model",
        "method",
        "params (M)",
        "GFLOPs / image",
        "extract img/s",
        "extract s",
        "fit / train s",
        "train img/s",
        "peak memory (MB)",
        "device",
    ]
    body = []
    for r in sorted(rows, key=lambda r: (r.dataset, r.size, r.label)):
        body.append(
            [
                (f"{r.dataset}_{r.size}", "text"),
                (r.model, "text"),
                (r.method_label, "text"),
                (_number(r.timing("params_m"), "{:.1f}"), ""),
                (_number(r.timing("gflops"), "{:.2f}"), ""),
                (_number(r.timing("extract_images_per_s"), "{:.0f}"), ""),
                (_number(r.timing("extract_s"), "{:.1f}"), ""),
                (_number(r.wall_s, "{:.1f}"), ""),
                (_number(r.timing("train_images_per_s"), "{:.0f}"), ""),
                (_number(r.timing("peak_memory_mb", "extract_peak_mb"), "{:.0f}"), ""),
                (str(r.timing("device") or "–"), "text"),
            ]
        )
    return Table(
        title="compute",
        header=header,
        body=body,
        notes=[
            "Hardware-dependent: compare rows measured on one device. GFLOPs count two per "
            "multiply-accumulate (torch.utils.flop_counter) for one image at the input size; "
            "peak memory is the GPU's allocated peak, or the process's resident peak on a CPU."
        ],
    )
