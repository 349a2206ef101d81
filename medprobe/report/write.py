"""The report written out: report.md, report.csv, report.tex, report.html and the figures.

Each dataset's table (`medprobe.report.tables`) has its runs by model x method, a column group per
image size; a cell is the test metric as mean ± std over seeds, or with its 95% bootstrap interval
for one seed. The best value per column is marked, and so is every row a paired bootstrap on the
same test set cannot tell apart from it. Null baselines and published references follow as
context rows; timings have a table of their own.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from medprobe.atomic import atomic_path, write_atomic
from medprobe.report import draw, latex, page
from medprobe.report.context import COLLAPSED_LEGEND
from medprobe.report.figures import report_figures
from medprobe.report.rows import METRICS, PAIRED, Row, build_rows
from medprobe.report.tables import Table, compute_table, dataset_table
from medprobe.results import load_results


def caption(n_resamples: int) -> list[str]:
    """What every cell and mark means, and how the marks were computed."""
    paired = ", ".join(name for name, metric in METRICS if metric in PAIRED)
    return [
        "Test-set metrics: mean ± std over seeds, or [95% interval] for one seed (percentile "
        "bootstrap of the test set, resamples as recorded by the run).",
        f"Bold: best in its column; ≈: statistically indistinguishable from it ({paired}: paired "
        f"bootstrap of the test set, {n_resamples} resamples with the same rows for both runs; "
        "the 95% percentile interval of the difference contains 0)."
        if n_resamples
        else "Bold: best in its column (no paired test: --bootstrap 0).",
        "Grey rows: null baselines (computed on the same data by `probe fit --baselines`) and "
        "published references (`probe references`), never ranked with the runs; Δ null: a run's "
        "ACC / AUC less the best null baseline's.",
        COLLAPSED_LEGEND,
    ]


def write_report(
    runs_dir: str | os.PathLike, out_dir: str | os.PathLike, *, n_resamples: int = 1000
) -> Path:
    """Write report.md, .csv, .tex, .html (figures embedded) and figures/ (PNG, PDF, SVG).

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
        (title, draw.save_figure(fig, out_dir / "figures" / name), name)
        for title, fig, name in report_figures(rows, runs_dir)
    ]
    tables = [dataset_table(rows, d) for d in sorted({r.dataset for r in rows})]
    tables.append(compute_table(rows))
    notes = caption(n_resamples)
    write_atomic(out_dir / "report.md", _markdown(tables, figs, notes))
    _write_csv(rows, out_dir / "report.csv")
    write_atomic(out_dir / "report.tex", latex.document(tables, notes))
    html = page.render(tables, rows, figs, notes, runs_dir=runs_dir, out_dir=out_dir)
    write_atomic(out_dir / "report.html", html)
    return out_dir / "report.html"


def _markdown(tables: list[Table], figs, notes: list[str]) -> str:
    out = ["# medprobe report", "", *notes, ""]
    for table in tables:
        out += [f"## {table.title}", "", *(f"- {note}" for note in table.notes), ""]
        out += ["| " + " | ".join(table.header) + " |", "|" + " --- |" * len(table.header)]
        for line in table.body:
            cells = [f"**{t}**" if m == "best" else f"{t} ≈" if m == "tied" else t for t, m in line]
            out.append("| " + " | ".join(cells) + " |")
        for line in table.context:
            out.append("| " + " | ".join(f"*{t}*" if t != "–" else t for t, _ in line) + " |")
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
    fields += ["collapsed", "baseline", "data_md5"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in rows:
            line = [r.dataset, r.size, r.model, r.method_label, len(r.runs)]
            for _, m in METRICS:
                mean, std, lo, hi = r.stats[m]
                tied = m in r.tied if m in PAIRED else ""  # empty: no paired test on this metric
                line += [mean, _blank(std), _blank(lo), _blank(hi), m in r.best, tied]
            writer.writerow(line + [r.collapsed, r.baseline or "", r.data_md5 or ""])


def _blank(value) -> object:
    """None as an empty CSV cell (one seed has no std, a fine-tune no interval)."""
    return "" if value is None else value
