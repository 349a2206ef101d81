"""Reports: every result record under a folder compared in one place.

- `rows`: records grouped into rows (a configuration over its seeds), summarized, best and
  indistinguishable cells marked (paired bootstrap);
- `tables`: each dataset's table (and the compute table) as one object; `context`: its grey rows
  (null baselines, the closest published references) and notes (test n, prevalence, data file);
- `write`: `write_report`, report.md, report.csv, and the page and .tex;
- `page`: report.html, self-contained and sortable; `latex`: report.tex (booktabs);
- `figures`: which figures a report has (resolution, intervals, confusion, label efficiency,
  training curves), drawn by `draw` (matplotlib, headless; also the fine-tune's own curves).
"""

from medprobe.report.rows import METRICS, Row, build_rows

__all__ = ["METRICS", "Row", "build_rows", "write_report"]


def __getattr__(name: str):
    """`write_report` on first use: it brings matplotlib (0.6 s), which `probe fit` never needs."""
    if name == "write_report":
        from medprobe.report.write import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
