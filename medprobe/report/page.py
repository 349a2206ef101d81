"""report.html: one self-contained page (figures embedded), every table sortable by its headers.

Per dataset: the comparison table (≈ written out, not only shaded), per-class recall; then the
figures; then one line per run with what it chose (C, k, lr / weight decay, best epoch, training
defaults), its val metrics, its provenance (versions, cache entry, weights) and links to its files.
"""

from __future__ import annotations

import base64
import html
import os
import warnings
from pathlib import Path

import numpy as np

from medprobe.metrics import describe_collapse
from medprobe.report.rows import Row, short
from medprobe.report.tables import Table
from medprobe.results import RunResult

# A click on a header sorts its table by that column (numbers as numbers, then text); again:
# reversed.
SORT_SCRIPT = """
const headers = document.querySelectorAll("table.sortable th");
headers.forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], ascending = th.dataset.order !== "asc";
  const key = row => { const text = row.cells[column].textContent.trim(), n = parseFloat(text);
                       return isNaN(n) ? [1, text] : [0, n]; };
  const rows = Array.from(body.rows).sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const order = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
    return ascending ? order : -order;
  });
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.order);
  th.dataset.order = ascending ? "asc" : "desc";
  rows.forEach(row => body.appendChild(row));
}));
"""
STYLE = (
    "body{font-family:sans-serif;margin:2em}"
    "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "th{cursor:pointer;background:#f6f6f6}"
    "th[data-order=asc]::after{content:' ▲'}th[data-order=desc]::after{content:' ▼'}"
    "td.best{font-weight:bold;background:#e6f4ea}td.tied{background:#f4f9f5}"
    "td.text{text-align:left}img{max-width:100%;margin:1em 0}"
    "tbody.context td{color:#777;background:#fafafa;font-style:italic}"
)
HPARAMS = (
    "C",
    "k",
    "lr",
    "weight_decay",
    "layer_decay",
    "epochs",
    "best_epoch",
    "defaults",
    "init_head",
    "flips",
)
VERSIONS = ("medprobe", "torch", "timm")


def render(
    tables: list[Table], rows: list[Row], figs: list, notes: list[str], *, runs_dir, out_dir
) -> str:
    """The page, one self-contained HTML file: `tables` from `medprobe.report.tables`."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medprobe report</title>",
        f"<style>{STYLE}</style></head><body><h1>medprobe report</h1>",
        *(f"<p>{html.escape(note)}</p>" for note in notes),
        "<p>Click a header to sort a table's runs; grey rows stay under them.</p>",
    ]
    for table in tables:
        parts += [f"<h2>{html.escape(table.title)}</h2>", _notes(table.notes)]
        parts.append(_table(table.header, table.body, table.context))
        mine = [r for r in rows if r.dataset == table.title]
        if mine:
            parts += ["<h3>Recall / F1 per class</h3>", _per_class(mine)]
    parts.append("<h2>Figures</h2>")
    for title, png, _ in figs:
        data = base64.b64encode(png).decode()
        parts.append(
            f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(title)}</figcaption></figure>"
        )
    parts += [
        "<h2>Runs</h2>",
        _runs(rows, link_to=os.path.relpath(runs_dir, out_dir), runs_dir=runs_dir),
    ]
    return "\n".join([*parts, f"<script>{SORT_SCRIPT}</script></body></html>"])


def _table(header: list[str], body: list, context: list | None = None) -> str:
    """A table whose first body sorts by its headers; `context` rows follow it, unsorted, grey.

    A cell is (text, mark), mark one of best, tied, text (left-aligned), html (markup, left-aligned,
    not escaped), ref (a context cell) or ''.
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(_tr(line) for line in body)
    fixed = f"<tbody class='context'>{''.join(_tr(line) for line in context or [])}</tbody>"
    return (
        f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
        f"{fixed if context else ''}</table>"
    )


def _tr(line) -> str:
    return "<tr>" + "".join(_td(text, mark) for text, mark in line) + "</tr>"


def _notes(notes: list[str]) -> str:
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return f"<ul>{items}</ul>" if notes else ""


def _td(text: str, mark: str) -> str:
    if mark == "html":
        return f"<td class='text'>{text}</td>"
    if mark == "ref":
        return f"<td class='text'>{html.escape(text)}</td>"
    return f"<td class='{mark}'>{html.escape(text)}{' ≈' if mark == 'tied' else ''}</td>"


def _per_class(rows: list[Row]) -> str:
    """Test recall / F1 of every class, one line per row (means over its seeds).

    From each run's confusion matrix; multi-label runs keep none, so their line stays empty.
    """
    names = max((r.runs[0].class_names for r in rows), key=len, default=[])
    body = []
    for row in sorted(rows, key=lambda r: (r.size, r.label)):
        matrices = [r.metrics["test"].get("confusion_matrix") for r in row.runs]
        scores = [_recall_f1(m) for m in matrices if m and np.ndim(m) == 2]
        # a class no run of the row predicts or holds: NaN, shown as –
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.array(scores, dtype=float), axis=0) if scores else np.zeros((2, 0))
        cells = [
            f"{r:.3f} / {f:.3f}" if np.isfinite(r) else "–" for r, f in zip(*mean, strict=True)
        ]
        body.append([(row.label, "text"), (str(row.size), "")] + [(c, "") for c in cells])
    return _table(["model · method", "size", *names], body)


def _recall_f1(confusion) -> np.ndarray:
    """(2, classes): recall and F1 per class of a confusion matrix (true on rows).

    NaN where undefined.
    """
    matrix = np.asarray(confusion, dtype=float)
    tp, actual, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([tp / actual, 2 * tp / (actual + predicted)])


def _runs(rows: list[Row], *, link_to: str, runs_dir: Path) -> str:
    """One line per run: its choices, val metrics, provenance and files."""
    header = [
        "run",
        "data",
        "seed",
        "chose",
        "val on",
        "val ACC",
        "val AUC",
        "test ACC",
        "versions",
        "provenance",
    ]
    body = []
    for row in rows:
        for run in row.runs:
            val = run.metrics.get("val", {})
            body.append(
                [
                    (_links(run, link_to, runs_dir), "html"),
                    (f"{run.dataset}_{run.size}", "text"),
                    (str(run.seed), ""),
                    (
                        " ".join(filter(None, [_chosen(run), describe_collapse(run.collapse)])),
                        "text",
                    ),
                    (str(run.hparams.get("selected_on", "")), "text"),
                    (_metric(val.get("acc")), ""),
                    (_metric(val.get("auc")), ""),
                    (_metric(run.metrics["test"].get("acc")), ""),
                    (
                        ", ".join(f"{k} {run.versions[k]}" for k in VERSIONS if k in run.versions),
                        "text",
                    ),
                    (_provenance(run), "text"),
                ]
            )
    return _table(header, body)


def _links(run: RunResult, link_to: str, runs_dir: Path) -> str:
    """The run's name, linked to its record, and to its folder (fine-tunes: weights, curves)."""
    name = html.escape(run.run_name)
    record = html.escape(f"{link_to}/{run.run_name}.json", quote=True)
    out = f"<a href='{record}'>{name}</a>"
    if (runs_dir / run.run_name).is_dir():
        out += f" (<a href='{html.escape(f'{link_to}/{run.run_name}/', quote=True)}'>files</a>)"
    return out


def _chosen(run: RunResult) -> str:
    """The hyper-parameters the run chose or was given, e.g. `C=1` or `lr=6.25e-05 best_epoch=3`."""
    return " ".join(
        f"{k}={short(run.hparams[k], 40)}" for k in HPARAMS if run.hparams.get(k) is not None
    )


def _provenance(run: RunResult) -> str:
    parts = [f"weights {short(run.hparams.get('weights') or '', 40)}"]
    if run.cache_key:
        parts.append(f"cache {run.cache_key[:12]}")
    parts.append(f"data md5 {str(run.config.get('data_md5', ''))[:8]}")
    parts.append(f"command: {run.command or 'not recorded'}")
    return "; ".join(p for p in parts if not p.endswith(" "))


def _metric(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) and np.isfinite(value) else "–"
