"""The report in context: null margins, paired tests on every column, the test set, exports."""

from __future__ import annotations

import csv
import shutil
import subprocess

import numpy as np
import pytest

from medprobe.data import DATASETS, official_md5
from medprobe.metrics import evaluate, paired_bootstrap
from medprobe.metrics.scores import interval, resample_counts
from medprobe.report import build_rows, write_report
from medprobe.report.latex import escape
from medprobe.report.tables import dataset_table
from medprobe.results import RunResult, load_results

N = 200
RNG = np.random.default_rng(0)
Y = (RNG.random(N) < 0.3).astype(np.int64).reshape(-1, 1)  # binary, 30% positive (malignant)
OFFICIAL = official_md5(DATASETS["breastmnist"], 28)


def binary_scores(accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    right = rng.random(N) < accuracy
    positive = np.where(right, Y[:, 0], 1 - Y[:, 0])
    p = np.where(positive == 1, 0.8, 0.2) + rng.random(N) * 0.05
    return np.stack([1 - p, p], axis=1)


def binary_record(model, method, score, *, baseline=None, md5=OFFICIAL, seed=0):
    return RunResult(
        dataset="breastmnist",
        size=28,
        model=model,
        method=method,
        seed=seed,
        config={"model": model, "method": method, "seed": seed, "data_md5": md5},
        task="binary-class",
        class_names=["malignant", "normal, benign"],
        metrics={"test": evaluate(Y, score, task="binary-class", bootstrap=100)},
        timings={"fit_s": 1.0, "params_m": 21.7, "gflops": 4.6, "device": "cpu (test)"},
        baseline=baseline,
        predictions={"test_score": score.astype(np.float32), "test_true": Y},
    )


def write_binary_runs(runs):
    prior = np.tile(np.bincount(Y[:, 0]) / N, (N, 1))
    records = [
        binary_record("dinov2_small", "logreg", binary_scores(0.9, 1)),
        binary_record("resnet18", "scratch", binary_scores(0.8, 2), md5="0" * 32),
        binary_record("majority", "prior", prior, baseline="majority"),
        binary_record("pixels", "logreg", binary_scores(0.75, 3), baseline="pixels"),
    ]
    for r in records:
        r.save(runs)
    return records


def test_each_run_s_margin_over_the_best_null_baseline(tmp_path):
    run, _, majority, pixels = write_binary_runs(tmp_path)
    rows = build_rows(load_results(tmp_path), n_resamples=0)
    table = dataset_table(rows, "breastmnist")
    margin_column = table.header.index("Δ null ACC / AUC @28")
    [line] = [line for line in table.body if line[0][0] == "dinov2_small"]
    best_acc = max(majority.metrics["test"]["acc"], pixels.metrics["test"]["acc"])
    best_auc = max(majority.metrics["test"]["auc"], pixels.metrics["test"]["auc"])
    expected = (
        f"{run.metrics['test']['acc'] - best_acc:+.3f} / "
        f"{run.metrics['test']['auc'] - best_auc:+.3f}"
    )
    assert line[margin_column][0] == expected
    # baselines are context: grey, never ranked, never best
    assert [line[0][0] for line in table.context[:2]] == ["majority", "pixels"]
    assert not any(r.best for r in rows if r.baseline)


def test_binary_tables_name_the_positive_class_and_the_test_set(tmp_path):
    write_binary_runs(tmp_path)
    table = dataset_table(build_rows(load_results(tmp_path), n_resamples=0), "breastmnist")
    assert "sens. (normal, benign) @28" in table.header and "spec. @28" in table.header
    positives = int(Y.sum())
    shares = f"malignant {(N - positives) / N:.1%}, normal, benign {positives / N:.1%}"
    assert table.notes[0] == f"@28: test n = {N}; class prevalence: {shares}"
    [line] = [line for line in table.body if line[0][0] == "dinov2_small"]
    matrix = np.asarray(load_results(tmp_path)[0].metrics["test"]["confusion_matrix"])
    sens = line[table.header.index("sens. (normal, benign) @28")][0]
    assert sens == f"{matrix[1, 1] / matrix[1].sum():.3f}"
    # the run scored on another file than medmnist's is marked, with both MD5s
    assert [line[0][0] for line in table.body] == ["dinov2_small", "resnet18 †"]
    assert any("0" * 32 in note and OFFICIAL in note for note in table.notes)


def test_the_paired_bootstrap_on_macro_f1_matches_an_independent_computation():
    from sklearn.metrics import f1_score

    a, b = binary_scores(0.9, 1), binary_scores(0.8, 2)
    diff, lo, hi = paired_bootstrap(
        Y, a, b, task="binary-class", metric="macro_f1", n_resamples=200
    )
    counts = resample_counts(N, 200, 0)
    rows = [np.repeat(np.arange(N), c) for c in counts]

    def f1(score, idx):
        return f1_score(Y[idx, 0], (score[idx, 1] > 0.5).astype(int), average="macro")

    every = np.arange(N)
    assert diff == pytest.approx(f1(a, every) - f1(b, every), abs=1e-12)
    reference = np.array([f1(a, idx) - f1(b, idx) for idx in rows])
    assert (lo, hi) == pytest.approx(interval(reference), abs=1e-9)


def test_csv_leaves_a_single_seed_std_empty_and_ties_every_paired_column(tmp_path):
    write_binary_runs(tmp_path / "runs")
    write_report(tmp_path / "runs", tmp_path / "report", n_resamples=100)
    with open(tmp_path / "report" / "report.csv") as f:
        lines = list(csv.DictReader(f))
    run = next(line for line in lines if line["model"] == "dinov2_small")
    assert run["acc_std"] == "" and run["macro_f1_ci_lo"] != ""
    for metric in ("acc", "auc", "macro_f1", "balanced_acc"):
        assert run[f"{metric}_indistinguishable"] in ("True", "False")
    assert {line["baseline"] for line in lines} == {"", "majority", "pixels"}


PDFLATEX = shutil.which("pdflatex")


def test_report_tex_holds_every_table_and_compiles(tmp_path):
    write_binary_runs(tmp_path / "runs")
    write_report(tmp_path / "runs", tmp_path / "report", n_resamples=100)
    tex = (tmp_path / "report" / "report.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2  # breastmnist, compute
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 2
    assert r"\textbf{" in tex and r"\textcolor{context}{majority}" in tex
    assert escape("a_b & 5% ± ≈") == r"a\_b \& 5\% $\pm$ $\approx$"
    if PDFLATEX is None or not _has_booktabs():
        pytest.skip("no pdflatex with booktabs (.ci/run installs texlive-latex-recommended)")
    done = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path / "report",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "report" / "report.pdf").read_bytes().startswith(b"%PDF")


def _has_booktabs() -> bool:
    found = subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True)
    return found.returncode == 0 and found.stdout.strip() != ""


def test_the_compute_table_keeps_hardware_apart(tmp_path):
    write_binary_runs(tmp_path / "runs")
    write_report(tmp_path / "runs", tmp_path / "report", n_resamples=0)
    md = (tmp_path / "report" / "report.md").read_text()
    accuracy, compute = md.split("## compute")
    assert "fit / train s" not in accuracy and "img/s" not in accuracy
    assert "| breastmnist_28 | dinov2_small | logreg | 21.7 | 4.60 |" in compute
    assert "cpu (test)" in compute
