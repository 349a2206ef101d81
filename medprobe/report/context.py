"""What a dataset's runs are read beside: null baselines, published references, the test set.

- `null_margins`: each run's ACC and AUC less the best null baseline's at its size;
- `reference_lines`: the published reference closest to each run (and the best of its scheme),
  with a note where its protocol differs, and a mark where its ACC is just the class prior;
- `dataset_notes`: the test set's size and class prevalence, the positive class, the data file.
"""

from __future__ import annotations

import numpy as np

from medprobe.data import DATASETS, official_md5
from medprobe.references import RunProtocol, closest, load_references, protocol_note
from medprobe.report.rows import Row

COLLAPSED_MARK = "⚠"
COLLAPSED_LEGEND = (
    f"{COLLAPSED_MARK} collapsed: at that size a run's val or test predictions fall (>= 95%) into "
    "one class, or its test balanced accuracy's 95% interval holds chance; the runs table says "
    "how. On a reference, its ACC equals the test set's class prior: the model predicted the "
    "majority class."
)
PRIOR_TOLERANCE = 5e-5  # published ACCs are percentages with two decimals


def null_margins(runs: list[Row], baselines: list[Row]) -> dict[int, str]:
    """id(row) -> "+0.123 / +0.310": ACC and AUC above the best null baseline at its size."""
    margins = {}
    for row in runs:
        nulls = [b for b in baselines if b.size == row.size]
        if not nulls:
            continue
        parts = []
        for metric in ("acc", "auc"):
            best = max((b.stats[metric][0] for b in nulls), default=np.nan)
            parts.append(f"{row.stats[metric][0] - best:+.3f}")
        margins[id(row)] = " / ".join(parts)
    return margins


def run_protocol(row: Row) -> RunProtocol:
    """A row's run in the terms a reference's protocol is stated in."""
    run = row.runs[0]
    entry = run.config.get("entry", {})
    preprocess = entry.get("preprocess", {})
    resize = preprocess.get("resize") or run.config.get("resize") or "bicubic"
    size = preprocess.get("input_size") or run.hparams.get("img_size")
    return RunProtocol(
        model=run.model,
        model_id=entry.get("model_id") or run.model,
        method=run.method,
        input=f"{'zero-padded' if resize == 'pad' else resize} to {size} px",
        seeds=len(row.runs),
    )


def reference_lines(runs: list[Row], dataset: str, sizes: list[int], *, width: int) -> list:
    """Grey lines of the references closest to the runs, and the best reference of each scheme."""
    references = [r for r in load_references(dataset) if r.size in sizes]
    if not references:
        return []
    chosen: dict[tuple[str, str], str] = {}  # (scheme, model) -> protocol note
    for row in sorted(runs, key=lambda r: (r.label, r.size)):
        protocol = run_protocol(row)
        found = closest([r for r in references if r.size == row.size], protocol)
        if found is not None:
            chosen.setdefault((found.scheme.name, found.model), protocol_note(found, protocol))
    for scheme in sorted({scheme for scheme, _ in chosen}):
        at_largest = [r for r in references if r.scheme.name == scheme and r.size == max(sizes)]
        best = max(at_largest, key=lambda r: r.acc[0] if r.acc else -1, default=None)
        if best is not None:
            chosen.setdefault((scheme, best.model), f"best {best.scheme.label} @{max(sizes)}")
    prior = _majority_share(runs)
    lines = []
    for (scheme, model), note in chosen.items():
        mine = {r.size: r for r in references if (r.scheme.name, r.model) == (scheme, model)}
        first = next(iter(mine.values()))
        label = first.label.rsplit(" · ", 1)[0]
        line = [(label, "text"), (first.scheme.label + (f" ({note})" if note else ""), "text")]
        line.append((str(first.source.seeds if first.acc and first.acc[1] else 1), ""))
        for size in sizes:
            ref = mine.get(size)
            line += [_reference_cell(ref and ref.acc, prior), _reference_cell(ref and ref.auc)]
            line += [("–", "")] * (width - 2)
        lines.append(line)
    return lines


def _reference_cell(value, prior: float | None = None) -> tuple[str, str]:
    if not value:
        return "–", ""
    mean, std = value
    text = f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    if prior is not None and abs(mean - prior) <= PRIOR_TOLERANCE:
        text += f" {COLLAPSED_MARK} = class prior"
    return text, ""


def _majority_share(rows: list[Row]) -> float | None:
    """The test set's majority-class share (single-label tasks), from any run's test labels."""
    for row in rows:
        run = row.runs[0]
        truth = run.predictions.get("test_true")
        if truth is not None and run.task != "multi-label, binary-class":
            counts = np.bincount(np.asarray(truth).reshape(len(truth), -1)[:, 0])
            return float(counts.max() / counts.sum())
    return None


def non_official(row: Row) -> bool:
    """Whether the row's runs were scored on a file other than medmnist's for its dataset."""
    if row.dataset not in DATASETS or row.data_md5 is None:
        return False
    return row.data_md5 != official_md5(DATASETS[row.dataset], row.size)


def dataset_notes(rows: list[Row], positive: str | None) -> list[str]:
    """What was tested: size and prevalence, positive class, and any non-official data file."""
    notes = []
    for size in sorted({r.size for r in rows}):
        run = next((r.runs[0] for r in rows if r.size == size and r.runs[0].predictions), None)
        if run is not None and "test_true" in run.predictions:
            notes.append(f"@{size}: {_prevalence(run)}")
    if positive is not None:
        notes.append(f"sens. and spec. take {positive} (class 1) as the positive class")
    for row in rows:
        if non_official(row):
            official = official_md5(DATASETS[row.dataset], row.size)
            note = (
                f"† {row.dataset}_{row.size} was scored on a file that differs from medmnist's "
                f"(MD5 {row.data_md5}, official {official})"
            )
            if note not in notes:
                notes.append(note)
    return notes


def _prevalence(run) -> str:
    truth = np.asarray(run.predictions["test_true"])
    names = run.class_names or [str(i) for i in range(truth.max() + 1)]
    if run.task == "multi-label, binary-class":
        rates = truth.reshape(len(truth), -1).mean(axis=0)
        shares = ", ".join(f"{n} {r:.1%}" for n, r in zip(names, rates, strict=False))
        return f"test n = {len(truth)}; positives per label: {shares}"
    counts = np.bincount(truth.reshape(len(truth), -1)[:, 0], minlength=len(names))
    shares = ", ".join(f"{n} {c / counts.sum():.1%}" for n, c in zip(names, counts, strict=False))
    return f"test n = {len(truth)}; class prevalence: {shares}"
