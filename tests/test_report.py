"""medprobe.report and `probe report`: rows, best and indistinguishable marks, csv, self-contained html."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import numpy as np
from click.testing import CliRunner

from medprobe.metrics import evaluate, paired_bootstrap
from medprobe.report import build_rows, write_report
from medprobe.results import RunResult, load_results
from probe.cli import main as probe_main

N, C = 600, 8
RNG = np.random.default_rng(0)
Y = RNG.integers(0, C, (N, 1))


def scores(accuracy: float, seed: int) -> np.ndarray:
    """Softmax-like scores whose argmax is right for about `accuracy` of the rows."""
    rng = np.random.default_rng(seed)
    right = rng.random(N) < accuracy
    pred = np.where(right, Y[:, 0], (Y[:, 0] + rng.integers(1, C, N)) % C)
    s = np.full((N, C), 0.02) + rng.random((N, C)) * 0.01
    s[np.arange(N), pred] = 0.8
    return s / s.sum(1, keepdims=True)


def record(model, method, accuracy, *, size=28, seed=0, tag="", hparams=None, score_seed=None):
    s = scores(
        accuracy, seed=score_seed if score_seed is not None else hash((model, method, size, seed)) % 1000
    )
    test = evaluate(Y, s, task="multi-class", bootstrap=200)
    return RunResult(
        dataset="bloodmnist",
        size=size,
        model=model,
        method=method,
        seed=seed,
        tag=tag,
        config={"model": model, "method": method, "size": size, "tag": tag, "seed": seed},
        task="multi-class",
        class_names=[f"cell {c}" for c in range(C)],
        metrics={"val": test, "test": test},
        hparams=hparams or {},
        timings={"fit_s": 1.0, "extract_s": 9.0},
        predictions={"test_score": s.astype(np.float32), "test_true": Y},
    )


def write_runs(runs_dir):
    records = [
        record("dinov2_small", "logreg", 0.92, score_seed=1),
        record("dinov2_small", "knn", 0.91, score_seed=2),  # a point lower, errors elsewhere: a tie
        record("resnet18", "scratch", 0.50),
        record("dinov2_small", "logreg", 0.93, size=64),
        record("resnet18", "scratch", 0.70, size=64),
        *[record("vit_tiny", "linear", 0.8 + 0.01 * s, seed=s) for s in range(3)],
        *[
            record("vit_tiny", "logreg", 0.6 + 0.2 * f, tag=f"frac{f:g}", hparams={"train_fraction": f})
            for f in (0.1, 0.5, 1.0)
        ],
    ]
    for r in records:
        r.save(runs_dir)
    finetune = record("vit_tiny", "finetune", 0.85)
    finetune.hparams = {"best_epoch": 2}
    finetune.save(runs_dir)
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_acc": 0.5 + e / 10, "val_auc": 0.7}
        for e in (1, 2, 3)
    ]
    (runs_dir / finetune.run_name).mkdir()
    (runs_dir / finetune.run_name / "history.json").write_text(json.dumps(history))


def test_rows_best_and_indistinguishable(tmp_path):
    write_runs(tmp_path)
    rows = {(r.model, r.method_label, r.size): r for r in build_rows(load_results(tmp_path), n_resamples=300)}
    assert len(rows) == 10
    logreg, knn = rows["dinov2_small", "logreg", 28], rows["dinov2_small", "knn", 28]
    scratch = rows["resnet18", "scratch", 28]
    assert "acc" in logreg.best and "acc" not in knn.best
    assert "acc" in knn.tied and "acc" not in scratch.tied
    seeds = rows["vit_tiny", "linear", 28]
    assert len(seeds.runs) == 3 and seeds.stats["acc"][1] > 0  # mean ± std over seeds
    assert seeds.stats["acc"][2] is None  # no single-run interval for a multi-seed row
    assert logreg.stats["acc"][2] < logreg.stats["acc"][0] < logreg.stats["acc"][3]
    assert "acc" in rows["dinov2_small", "logreg", 64].best


def test_report_files_and_html_embeds_every_figure(tmp_path):
    runs = tmp_path / "runs"
    write_runs(runs)
    html_path = write_report(runs, tmp_path / "report", n_resamples=200)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## bloodmnist" in md and "ACC @28" in md and "ACC @64" in md and "≈" in md and "**" in md
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert figures == sorted(
        [
            "bloodmnist_resolution.png",
            "bloodmnist_confusion.png",
            "bloodmnist_label_efficiency.png",
            f"curves_{record('vit_tiny', 'finetune', 0.85).run_name}.png",
        ]
    )

    class Images(HTMLParser):
        sources: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(dict(attrs)["src"])

    parser = Images()
    parser.feed(html_path.read_text())
    parser.close()
    assert len(parser.sources) == len(figures)
    assert all(src.startswith("data:image/png;base64,iVBOR") for src in parser.sources)

    with open(tmp_path / "report" / "report.csv") as f:
        table = list(csv.DictReader(f))
    best = [r for r in table if r["acc_best"] == "True"]
    assert {(r["model"], r["method"], r["size"]) for r in best} == {
        ("dinov2_small", "logreg", "28"),
        ("dinov2_small", "logreg", "64"),
    }


def test_paired_bootstrap_tells_close_and_far_apart():
    same = paired_bootstrap(Y, scores(0.92, 1), scores(0.91, 2), task="multi-class")
    far = paired_bootstrap(Y, scores(0.9, 1), scores(0.5, 2), task="multi-class")
    assert same[1] <= 0 <= same[2]
    assert far[1] > 0 and far[0] > 0.3


def test_cli_report_and_empty_dir(tmp_path):
    write_runs(tmp_path / "runs")
    runner = CliRunner()
    ok = runner.invoke(probe_main, ["report", str(tmp_path / "runs"), "-o", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "out" / "report.html").exists()
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(probe_main, ["report", str(tmp_path / "empty")])
    assert empty.exit_code == 1 and "no result records" in empty.output


def test_rows_that_would_read_alike_name_their_differing_fields(tmp_path):
    bicubic = record("vit_tiny", "logreg", 0.8)
    pad = record("vit_tiny", "logreg", 0.7)
    bicubic.config["resize"], pad.config["resize"] = "bicubic", "pad"
    at_64 = record("vit_tiny", "logreg", 0.9, size=64)
    at_64.config["resize"] = "pad"
    rows = build_rows([bicubic, pad, at_64], n_resamples=0)
    assert sorted((r.size, r.method_label) for r in rows) == [
        (28, "logreg [resize=bicubic]"),
        (28, "logreg [resize=pad]"),
        (64, "logreg [resize=pad]"),  # one label per configuration, so one table row across sizes
    ]
