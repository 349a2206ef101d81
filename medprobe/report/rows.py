"""A report's rows.

Records grouped into configurations (model x method x variant, per dataset and size) over their
seeds, summarized per metric, with the best row of each column marked and every row a paired
bootstrap on the same test set cannot tell apart from it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from medprobe.metrics import paired_bootstrap
from medprobe.results import RunResult

METRICS = (("ACC", "acc"), ("AUC", "auc"), ("macro-F1", "macro_f1"), ("bal.ACC", "balanced_acc"))
# mean, std over seeds (None: one seed), and a single run's 95% interval (lo, hi; else None)
Stats = tuple[float, float | None, float | None, float | None]
PAIRED = tuple(metric for _, metric in METRICS)  # every column gets the paired bootstrap
NOT_DISTINGUISHING = {"seed"}  # what repeats of one configuration differ by


@dataclass
class Row:
    """One configuration of one dataset at one size (model, method, variant, ...), over its seeds.

    `detail` names the configuration fields that tell this row from others that would read alike
    (e.g. `resize=pad`), so two different configurations never look like one.
    """

    dataset: str
    size: int
    model: str
    variant: str
    runs: list[RunResult]
    detail: str = ""
    stats: dict[str, Stats] = field(default_factory=dict)
    best: set[str] = field(default_factory=set)
    tied: set[str] = field(default_factory=set)

    @property
    def method_label(self) -> str:
        """The method column.

        Variant and detail (`logreg`, `logreg-frac0.1`, `logreg [resize=pad]`).
        """
        return f"{self.variant} [{self.detail}]" if self.detail else self.variant

    @property
    def label(self) -> str:
        """The row's name in tables and figures: model and method."""
        return f"{self.model} · {self.method_label}"

    @property
    def method(self) -> str:
        """The runs' method: a head (`logreg`), `scratch`, `finetune` or `frozen-sgd`."""
        return self.runs[0].method

    @property
    def tag(self) -> str:
        """The runs' variant tag (feature kinds, fraction, shots, refit)."""
        return self.runs[0].tag

    @property
    def collapsed(self) -> bool:
        """Whether a run of the row collapsed (`RunResult.collapsed`).

        Its decisions are not to be read as a classifier's.
        """
        return any(r.collapsed for r in self.runs)

    @property
    def baseline(self) -> str | None:
        """The null baseline the row is (`probe.baselines.BASELINES`), or None for a method."""
        return self.runs[0].baseline

    @property
    def data_md5(self) -> str | None:
        """The MD5 of the data file the row's runs were scored on."""
        config = self.runs[0].config
        return config.get("data_md5") or config.get("entry", {}).get("data_md5")

    def timing(self, *names: str) -> float | str | None:
        """The first of `names` the first run's timings hold (a figure, or the device's name)."""
        timings = self.runs[0].timings
        return next((timings[n] for n in names if timings.get(n) is not None), None)

    @property
    def wall_s(self) -> float | None:
        """The row's own work: fitting (probes) or training (fine-tunes), mean over its runs."""
        times = [r.timings.get("train_s", r.timings.get("fit_s")) for r in self.runs]
        known = [t for t in times if t is not None]
        return float(np.mean(known)) if len(known) == len(times) else None

    @property
    def extract_s(self) -> float | None:
        """The extraction a probe's features came from: done once, shared by every head on them."""
        return self.runs[0].timings.get("extract_s")

    @property
    def images_per_s(self) -> float | None:
        """Extraction or training images/s of the first run, if recorded."""
        timings = self.runs[0].timings
        return timings.get("extract_images_per_s") or timings.get("train_images_per_s")


def build_rows(results: list[RunResult], *, n_resamples: int = 1000) -> list[Row]:
    """Group records into rows, summarize them, and mark best and indistinguishable cells.

    Indistinguishable cells are marked only when `n_resamples` > 0.
    """
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in results:
        groups[r.dataset, r.size, r.model, r.variant, r.group].append(r)
    rows = [
        Row(dataset=d, size=s, model=m, variant=v, runs=sorted(runs, key=lambda r: r.seed))
        for (d, s, m, v, _), runs in sorted(groups.items())
    ]
    _name_alike_rows(rows)
    for row in rows:
        row.stats = {m: _summarize([r.metrics["test"] for r in row.runs], m) for _, m in METRICS}
    by_column: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        if row.baseline is None:  # null baselines are context, never ranked with the runs
            by_column[row.dataset, row.size].append(row)
    for column_rows in by_column.values():
        for _, metric in METRICS:
            _mark(column_rows, metric, n_resamples)
    return rows


def _name_alike_rows(rows: list[Row]) -> None:
    """Give rows that would read alike (same dataset, size, model, variant) their differing fields.

    The fields are collected per (dataset, model, variant) over all sizes, so a configuration keeps
    one label, and so one table row, across the size columns.
    """
    alike: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        alike[row.dataset, row.size, row.model, row.variant].append(row)
    fields: dict[tuple, set[str]] = defaultdict(set)
    for (dataset, _, model, variant), group in alike.items():
        configs = [_flatten(row.runs[0].config) for row in group]
        keys = set().union(*configs) - NOT_DISTINGUISHING
        fields[dataset, model, variant] |= {
            k for k in keys if len({repr(c.get(k)) for c in configs}) > 1
        }
    for row in rows:
        names = sorted(fields[row.dataset, row.model, row.variant])
        config = _flatten(row.runs[0].config)
        row.detail = ", ".join(f"{k.rsplit('.', 1)[-1]}={short(config.get(k))}" for k in names)


def _flatten(config: dict, prefix: str = "") -> dict:
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def short(value, width: int = 20) -> str:
    """A value as a report cell shows it: floats to 3 digits, lists joined by +, cut to `width`."""
    if isinstance(value, float):
        return f"{value:.3g}"
    text = "+".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _summarize(metrics: list[dict], name: str) -> Stats:
    values = [m[name] for m in metrics if m.get(name) is not None]
    if not values:
        return (np.nan, np.nan, None, None)
    lo, hi = (
        metrics[0].get("ci95", {}).get(name, (None, None)) if len(values) == 1 else (None, None)
    )
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None  # one seed has no spread
    return float(np.mean(values)), std, lo, hi


def _mark(rows: list[Row], metric: str, n_resamples: int) -> None:
    scored = [r for r in rows if np.isfinite(r.stats[metric][0])]
    if not scored:
        return
    best = max(scored, key=lambda r: r.stats[metric][0])
    best.best.add(metric)
    if not n_resamples or metric not in PAIRED or "test_score" not in best.runs[0].predictions:
        return
    reference = best.runs[0].predictions
    task = best.runs[0].task
    for row in scored:
        other = row.runs[0].predictions
        if row is best or "test_score" not in other or task is None:
            continue
        if not np.array_equal(other["test_true"], reference["test_true"]):
            continue  # different test sets (e.g. custom data): not comparable pairwise
        _, lo, hi = paired_bootstrap(
            reference["test_true"],
            reference["test_score"],
            other["test_score"],
            task=task,
            metric=metric,
            n_resamples=n_resamples,
        )
        if lo <= 0 <= hi:
            row.tied.add(metric)
