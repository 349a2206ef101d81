"""medprobe.report and `probe report`.

Rows, best and indistinguishable marks, csv, self-contained html.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
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
        accuracy,
        seed=score_seed if score_seed is not None else hash((model, method, size, seed)) % 1000,
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
            record(
                "vit_tiny", "logreg", 0.6 + 0.2 * f, tag=f"frac{f:g}", hparams={"train_fraction": f}
            )
            for f in (0.1, 0.5, 1.0)
        ],
    ]
    for r in records:
        r.save(runs_dir)
    finetune = record("vit_tiny", "finetune", 0.85)
    finetune.hparams = {"best_epoch": 2, "flips": "h"}
    finetune.save(runs_dir)
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "val_acc": 0.5 + e / 10,
            "val_auc": 0.7,
        }
        for e in (1, 2, 3)
    ]
    (runs_dir / finetune.run_name).mkdir()
    (runs_dir / finetune.run_name / "history.json").write_text(json.dumps(history))


def test_rows_best_and_indistinguishable(tmp_path):
    write_runs(tmp_path)
    rows = {
        (r.model, r.method_label, r.size): r
        for r in build_rows(load_results(tmp_path), n_resamples=300)
    }
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
    assert (
        "## bloodmnist" in md and "ACC @28" in md and "ACC @64" in md and "≈" in md and "**" in md
    )
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    names = [
        "bloodmnist_resolution",
        "bloodmnist_28_forest",
        "bloodmnist_64_forest",
        "bloodmnist_confusion",
        "bloodmnist_label_efficiency",
        f"curves_{record('vit_tiny', 'finetune', 0.85).run_name}",
    ]
    # every figure as a 200 dpi PNG (embedded in the page) and as PDF and SVG for a paper
    assert figures == sorted(f"{n}.{ext}" for n in names for ext in ("png", "pdf", "svg"))
    figure_dir = tmp_path / "report" / "figures"
    assert (figure_dir / "bloodmnist_confusion.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (figure_dir / "bloodmnist_confusion.svg").read_bytes()[:1000]
    from PIL import Image

    with Image.open(figure_dir / "bloodmnist_confusion.png") as png:
        assert round(png.info["dpi"][0]) == 200

    class Images(HTMLParser):
        sources: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(dict(attrs)["src"])

    parser = Images()
    parser.feed(html_path.read_text())
    parser.close()
    assert len(parser.sources) == len(names)
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


def test_html_writes_ties_out_and_shows_classes_choices_provenance_and_links(tmp_path):
    runs = tmp_path / "runs"
    write_runs(runs)
    page = write_report(runs, tmp_path / "report", n_resamples=200).read_text()
    assert "≈</td>" in page  # the tie is written, not only shaded
    assert "<h3>Recall / F1 per class</h3>" in page and "<th>cell 0</th>" in page
    assert "command: " in page
    finetune = record("vit_tiny", "finetune", 0.85)
    assert (
        f"href='../runs/{finetune.run_name}.json'" in page
        and f"href='../runs/{finetune.run_name}/'" in page
    )
    assert "best_epoch=2 flips=h" in page and "torch " in page and "class='sortable'" in page
    # sorting, inline: still one file
    assert page.count("<script>") == 1 and "addEventListener" in page


def test_one_size_draws_no_resolution_figure(tmp_path):
    runs = tmp_path / "runs"
    for method, acc in (("logreg", 0.8), ("knn", 0.7)):
        record("dinov2_small", method, acc).save(runs)
    write_report(runs, tmp_path / "report", n_resamples=100)
    figures = {p.name for p in (tmp_path / "report" / "figures").iterdir()}
    assert "bloodmnist_resolution.png" not in figures and "bloodmnist_28_forest.png" in figures


CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
# Injected first into a copy of the page: records script errors, then, once loaded, whether every
# image decoded and whether a click on a header sorted its table, into the DOM that --dump-dom
# prints.
PROBE = """<script>
window.errors = [];
window.addEventListener("error", e => window.errors.push(String(e.message)));
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const table = document.querySelector("table.sortable"), header = table.tHead.rows[0].cells[3];
  const column = () =>
    Array.from(table.tBodies[0].rows).map(r => parseFloat(r.cells[3].textContent));
  const context = () => table.tBodies.length > 1
    ? Array.from(table.tBodies[1].rows).map(r => r.cells[0].textContent) : [];
  const before = context();
  header.click();
  const sorted = column().filter(x => !isNaN(x)).every((x, i, all) => i === 0 || all[i - 1] <= x);
  const kept = JSON.stringify(context()) === JSON.stringify(before)
    && table.tBodies[1].previousElementSibling === table.tBodies[0];
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(
    {images: images.length, broken, sorted, context: before, kept, errors: window.errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH (.ci/run installs it: apt-get install chromium)"
)
def test_report_renders_in_a_real_browser(tmp_path):
    runs = tmp_path / "runs"
    write_runs(runs)
    majority = record("majority", "prior", 0.2)
    majority.baseline = "majority"
    majority.save(runs)
    page = write_report(runs, tmp_path / "report", n_resamples=100).read_text()
    probed = tmp_path / "report" / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert result["errors"] == [] and "Uncaught" not in done.stderr
    assert result["images"] == page.count("<img") > 0 and result["broken"] == []
    assert result["sorted"]
    # the null baseline and the published references stay under the runs when a column sorts
    assert result["kept"] and result["context"][0] == "majority"
    assert any(name.startswith("MedMNIST+ · ") for name in result["context"])


def test_recall_and_f1_per_class_from_the_confusion_matrix():
    from sklearn.metrics import f1_score, recall_score

    from medprobe.report.page import _recall_f1

    y_true, y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2]), np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    recall, f1 = _recall_f1(confusion.tolist())
    np.testing.assert_allclose(recall, recall_score(y_true, y_pred, average=None))
    np.testing.assert_allclose(f1, f1_score(y_true, y_pred, average=None))
