"""The benchmark runners run end to end (on tiny models; their figures live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import make_npz


@pytest.mark.slow
def test_compare_runs_both_paths_and_appends_a_row(tmp_path):
    table = tmp_path / "BENCH.md"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.compare",
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
        "--synthetic",
        "--limit",
        "60",
        "--epochs",
        "1",
        "--append",
        str(table),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert figures["rows"] == {"train": 60, "val": 9, "test": 18}
    assert (
        figures["notebook"]["extrapolated"]
        and figures["notebook"]["seconds"] > figures["notebook"]["measured_s"]
    )
    assert 0 <= figures["medprobe"]["logreg"]["acc"] <= 1
    row = table.read_text()
    assert "(extrapolated from 1 epochs)" in row and "python -m benchmarks.compare" in row


def test_augment_shift_prints_a_row_per_augmentation_and_split(data_root, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.augment_shift",
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
        "--img-size",
        "32",
        "--dataset",
        "breastmnist",
        "--data-root",
        str(data_root),
        "--cache-root",
        str(tmp_path / "cache"),
        "--n",
        "8",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 * 8 and {r[3] for r in rows} == {
        "breastmnist train (8)",
        "breastmnist test (8)",
    }
    changes = {r[4]: float(r[5]) for r in rows if "test" in r[3]}
    assert changes["none"] == 0 and changes["flip left-right"] > 0 and "random, flips h" in changes


def test_micro_batch_benchmark_prints_a_row_per_micro_batch_size():
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.micro_batch",
        "--backbone",
        "timm:test_vit",
        "--img-size",
        "32",
        "--batch-size",
        "8",
        "--micro-batches",
        "8",
        "2",
        "--steps",
        "1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [(r[3], r[4]) for r in rows] == [("8", "8"), ("8", "2")]
    assert all(float(r[5]) > 0 and float(r[6]) > 0 for r in rows)  # img/s, peak GiB


def test_without_append_leaves_the_command_to_reproduce():
    from benchmarks.common import without_append

    argv = ["--model", "x", "--append", "BENCHMARKS.md", "--images", "8", "--append=B.md"]
    assert without_append(argv) == ["--model", "x", "--images", "8"]


@pytest.mark.slow
def test_gpu_script_runs_at_tiny_scale_and_keeps_its_rows(tmp_path):
    # compile: exercised in test_finetune
    steps = "start-up,frozen,extraction,finetune,notebook,torchrun,volumes,heads,profile"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        "--tiny",
        "--out",
        str(tmp_path),
        "--steps",
        steps,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "rows.md").read_text().splitlines()
    assert len([r for r in rows if r.startswith("| `") or r.startswith("| extraction")]) >= 15
    assert sum("resnet18_acs on volumes" in r for r in rows) == 1
    assert sum("slices (3 axes)" in r for r in rows) == 1
    assert sum("--nproc_per_node 2" in r for r in rows) == 2  # no GPU: gloo runs two processes
    figures = json.loads((tmp_path / "figures.json").read_text())
    sweeps = next(v["rows"] for k, v in figures.items() if k.startswith("head sweeps"))
    assert [r.split(" | ")[3:5] for r in sweeps] == [
        ["logreg", "sequential"],
        ["logreg", "batched"],
        ["linear", "-"],
        ["knn", "-"],
    ]
    profiled = next(v for k, v in figures.items() if k.startswith("`probe fit --extract` prof"))
    phases = profiled["phases"]
    assert phases["extraction loop (upload, forward, copies)"] > 0
    assert phases["head sweep on val"] > 0
    assert phases["hash the npz (MD5)"] > 0 and phases["CUDA start-up"] == 0  # no GPU here
    heads = next(v["heads"] for k, v in figures.items() if k.startswith("`probe fit --head"))
    assert set(heads) == {"logreg", "linear", "knn"} and all(
        "bootstrap_s" in t for t in heads.values()
    )


def test_heads_against_sklearn_prints_a_row_per_head_and_thread_setting():
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.heads",
        "--vs-sklearn",
        "--sizes",
        "500x768 binary",
        "--threads",
        "auto,1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [(r[4], r[5]) for r in rows] == [
        ("logreg", "auto (1)"),
        ("logreg", "1 (1)"),
        ("knn", "auto (1)"),
        ("knn", "1 (1)"),
    ]
    assert all(float(r[6]) > 0 and float(r[7]) > 0 for r in rows)


def test_probe_quality_prints_a_row_per_feature_rule_and_head(tmp_path):
    make_npz(tmp_path / "data" / "breastmnist.npz", n_classes=2)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.probe_quality",
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
    ]
    cmd += ["--img-size", "32", "--heads", "logreg,knn", "--precision", "fp32"]
    cmd += ["--data-root", str(tmp_path / "data"), "--cache-root", str(tmp_path / "cache")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| 20")]
    assert len(rows) == 2 * 3 * 2 and {r[3] for r in rows} == {"cls+mean", "last4"}
    assert {(r[5], r[6]) for r in rows} == {
        ("acc", "none"),
        ("loss", "none"),
        ("loss", "train+val"),
    }


@pytest.mark.slow
def test_suite_jobs_prints_one_row_per_mode(data_root):
    cmd = [sys.executable, "-m", "benchmarks.suite_jobs", "--datasets", "breastmnist"]
    cmd += ["--data-root", str(data_root), "--modes", "serial,jobs2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    row = done.stdout.strip().splitlines()[-1].split("|")
    assert "tiny on breastmnist" in row[3] and float(row[4]) > 0 and float(row[5]) > 0


def test_backbones_benchmark_prints_a_row_per_backbone_against_the_first(capsys):
    from benchmarks import backbones

    backbones.main(["--names", "vit_tiny,dinov3_small", "--seconds", "0", "--batch-size", "2"])
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 and "| vit_tiny | timm | 224 | 5.5 |" in rows[0]
    assert "| 1.00x |" in rows[0] and "dinov3_small" in rows[1]


def test_volumes_benchmark_prints_a_row_per_aggregation(tmp_path, capsys):
    from benchmarks import volumes

    make_npz(tmp_path / "adrenalmnist3d.npz", n=(6, 4, 4), n_classes=2, volumes=True)
    make_npz(tmp_path / "breastmnist.npz", n_classes=2)
    args = ["--data-root", str(tmp_path), "--backbone", "timm:test_vit", "--random-init"]
    volumes.main([*args, "--img-size", "32"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("|")]
    assert len(rows) == 8 and all("adrenalmnist3d_28 | timm:test_vit 32" in r for r in rows)
    assert {r.split(" | ")[5] for r in rows} == {"mean", "max", "mean+max", "attention"}
    volumes.main([*args, "--img-size", "32", "--reference", "slices", "--slices", "mean"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("|")]
    assert len(rows) == 2 and all(float(r.split(" | ")[9]) > 0 for r in rows)


def test_build_times_builds_from_a_file_both_ways(tmp_path):
    from safetensors.torch import save_file

    from benchmarks.profile_fit import build_times
    from medprobe.backbones.factory import create_backbone

    model, _ = create_backbone("timm:test_vit", pretrained=False)
    save_file(dict(model.state_dict()), tmp_path / "w.safetensors")
    meta, init = build_times("timm:test_vit", str(tmp_path / "w.safetensors"), rounds=1)
    assert meta > 0 and init > 0


def test_gpu_script_refuses_an_unknown_step_naming_the_steps():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--steps", "frozen,nope"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "unknown step nope; choose from start-up" in done.stderr
