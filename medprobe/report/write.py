"""The report written out: report.md, report.csv and report.html (figures embedded) from its rows.

Rows are model x method (x variant) per dataset, columns per image size. Each cell is the test
metric as mean ± std over seeds, or with its 95% bootstrap interval for a single seed. The best
value per column is marked, and so is every row a paired bootstrap on the same test set cannot
tell apart from it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from medprobe.atomic import atomic_path, write_atomic
from medprobe.report import draw, page
from medprobe.report.figures import report_figures
from medprobe.report.rows import METRICS, Row, build_rows
from medprobe.results import load_results


def write_report(
    runs_dir: str | os.PathLike, out_dir: str | os.PathLike, *, n_resamples: int = 1000
) -> Path:
    """Write report.md, report.csv, report.html (figures embedded) and figures/*.png.

    Returns:
        the path of report.html.
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    results = load_results(runs_dir)
    if not results:
        raise FileNotFoundError(
            f"no result records (*.json) under {runs_dir}; run `probe fit` or `finetune run`"
        )
    rows = build_rows(results, n_resamples=n_resamples)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    figs = [
        (title, draw.save_png(fig, out_dir / "figures" / name), name)
        for title, fig, name in report_figures(rows, runs_dir)
    ]
    tables = {dataset: _table(rows, dataset) for dataset in sorted({r.dataset for r in rows})}
    write_atomic(out_dir / "report.md", _markdown(tables, figs))
    _write_csv(rows, out_dir / "report.csv")
    html = page.render(tables, rows, figs, runs_dir=runs_dir, out_dir=out_dir)
    write_atomic(out_dir / "report.html", html)
    return out_dir / "report.html"


def _cell(row: Row | None, metric: str) -> tuple[str, str]:
    """(text, mark) where mark is 'best', 'tied' or ''."""
    if row is None or not np.isfinite(row.stats[metric][0]):
        return "–", ""
    mean, std, lo, hi = row.stats[metric]
    if len(row.runs) > 1:
        text = f"{mean:.3f} ± {std:.3f}"
    elif lo is not None:
        text = f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    else:
        text = f"{mean:.3f}"
    return text, "best" if metric in row.best else "tied" if metric in row.tied else ""


def _table(rows: list[Row], dataset: str) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header and cells of one dataset's table: rows model × method, column groups per size."""
    mine = [r for r in rows if r.dataset == dataset]
    sizes = sorted({r.size for r in mine})
    header = ["model", "method", "seeds"]
    for size in sizes:
        header += [f"{name} @{size}" for name, _ in METRICS]
        header += [f"fit/train s @{size}", f"extract s @{size}", f"img/s @{size}"]
    lookup = {(r.model, r.method_label, r.size): r for r in mine}
    body = []
    for model, method in sorted({(r.model, r.method_label) for r in mine}):
        collapsed = [str(s) for s in sizes if (r := lookup.get((model, method, s))) and r.collapsed]
        line = [
            (model, ""),
            (
                f"{method} {page.COLLAPSED_MARK} collapsed @{','.join(collapsed)}"
                if collapsed
                else method,
                "",
            ),
            (
                str(max(len(r.runs) for r in mine if (r.model, r.method_label) == (model, method))),
                "",
            ),
        ]
        for size in sizes:
            row = lookup.get((model, method, size))
            line += [_cell(row, metric) for _, metric in METRICS]
            line += [
                (_number(row and row.wall_s, "{:.1f}"), ""),
                (_number(row and row.extract_s, "{:.1f}"), ""),
                (_number(row and row.images_per_s, "{:.0f}"), ""),
            ]
        body.append(line)
    return header, body


def _number(value, pattern: str) -> str:
    return pattern.format(value) if value is not None else "–"


def _markdown(tables, figs) -> str:
    out = [
        "# medprobe report",
        "",
        "Test-set metrics: mean ± std over seeds, or [95% bootstrap interval] for one seed.",
        "**bold**: best in its column; ≈: statistically indistinguishable from the best",
        "(paired bootstrap on the same test set: the 95% interval of the difference contains 0).",
        page.COLLAPSED_LEGEND,
        "",
    ]
    for dataset, (header, body) in tables.items():
        out += [f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for line in body:
            cells = [f"**{t}**" if m == "best" else f"{t} ≈" if m == "tied" else t for t, m in line]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Figures", ""] + [f"![{title}](figures/{name})" for title, _, name in figs]
    return "\n".join(out) + "\n"


def _write_csv(rows: list[Row], path: Path) -> None:
    fields = ["dataset", "size", "model", "method", "seeds"]
    for _, m in METRICS:
        fields += [
            f"{m}_mean",
            f"{m}_std",
            f"{m}_ci_lo",
            f"{m}_ci_hi",
            f"{m}_best",
            f"{m}_indistinguishable",
        ]
    fields += ["collapsed", "fit_or_train_s", "extract_s", "images_per_s"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in rows:
            line = [r.dataset, r.size, r.model, r.method_label, len(r.runs)]
            for _, m in METRICS:
                line += [*r.stats[m], m in r.best, m in r.tied]
            writer.writerow(line + [r.collapsed, r.wall_s, r.extract_s, r.images_per_s])
