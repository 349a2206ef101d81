"""Faults and bad files: every user error is one line with a hint and a non-zero exit, never a
traceback, and nothing the user had (cache entries, records, their own files) is lost."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_npz

from cache.extract import extract
from finetune.cli import main as finetune_main
from medprobe.results import RunResult, load_results
from suite.cli import main as probe_main  # the `probe` command, suite included

TINY_VIT = ["--backbone", "timm:test_vit", "--no-pretrained", "--img-size", "32"]
TINY_RESNET = ["--model", "timm:test_resnet", "--no-pretrained", "--img-size", "32", "--precision", "fp32"]


@pytest.fixture
def world(tmp_path):
    """A user's folders: data (official + own npz), a cache with one entry, runs with one record."""
    data = tmp_path / "data"
    make_npz(data / "breastmnist.npz", n_classes=2)
    make_npz(data / "own.npz", n_classes=3)
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    extract("timm:test_vit", "breastmnist", data_root=data, cache_root=cache, pretrained=False, img_size=32)
    result = CliRunner().invoke(
        probe_main,
        ["fit", "--dataset", "breastmnist", "--data-root", str(data), "--cache-root", str(cache)]
        + ["--out", str(runs), "--bootstrap", "0"],
    )
    assert result.exit_code == 0, result.output
    return tmp_path


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def bad_npz(kind):
    def make(world):
        path = world / "bad.npz"
        good = (world / "data" / "own.npz").read_bytes()
        path.write_bytes({"truncated": good[: len(good) // 2], "empty": b"", "text": b"not an npz\n"}[kind])
        return path

    return make


def npz_without(key):
    def make(world):
        with np.load(world / "data" / "own.npz") as npz:
            arrays = {k: v for k, v in npz.items() if k != key}
        np.savez(world / "bad.npz", **arrays)
        return world / "bad.npz"

    return make


def bad_labels(value, row=3):
    def make(world):
        with np.load(world / "data" / "own.npz") as npz:
            arrays = dict(npz)
        labels = arrays["train_labels"].astype(np.float64)
        labels[row] = value
        np.savez(world / "bad.npz", **(arrays | {"train_labels": labels}))
        return world / "bad.npz"

    return make


def corrupt_weights(world):
    path = world / "broken.safetensors"
    path.write_bytes(b'{"not": "safetensors"}' + b"\x00" * 50)
    return path


def corrupt_checkpoint(world):
    """A fine-tune killed after its first epoch, whose checkpoint then got damaged."""
    data, out = world / "data", world / "ft"
    args = ["run", *TINY_RESNET, "--dataset", "breastmnist", "--data-root", str(data), "--out", str(out)]
    result = CliRunner().invoke(finetune_main, [*args, "--epochs", "1", "--keep-checkpoint"])
    assert result.exit_code == 0, result.output
    [checkpoint] = out.rglob("checkpoint.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    [record] = out.glob("*.json")
    record.unlink()  # as if the run had died before writing it
    return out


def recipe(body):
    def make(world):
        path = world / "recipe.toml"
        path.write_text(f'[suite]\ndatasets = ["breastmnist"]\ndata_root = "{world / "data"}"\n' + body)
        return path

    return make


PROBE, FINETUNE = "probe", "finetune"
D = "{data}"  # placeholders filled per test
C = "{cache}"
R = "{runs}"
X = "{made}"  # the path the case's setup made

CASES = [
    # (id, cli, args, setup, exit code, words the one line must hold)
    ("truncated-npz", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_npz("truncated"), 1, ["bad.npz", "not a readable npz"]),
    ("empty-npz", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_npz("empty"), 1, ["bad.npz", "not a readable npz"]),
    ("text-npz", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_npz("text"), 1, ["bad.npz", "not a readable npz"]),
    ("npz-missing-key", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], npz_without("val_labels"), 1, ["bad.npz", "missing val_labels"]),
    ("negative-label", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_labels(-1), 1, ["bad.npz train", "row 3"]),
    ("fractional-label", FINETUNE, ["run", *TINY_RESNET, "--dataset", X, "--task", "multi-class"], bad_labels(0.5), 1, ["bad.npz train", "row 3"]),
    ("nan-label", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_labels(np.nan), 1, ["bad.npz train", "row 3"]),
    ("task-contradicted", PROBE, ["extract", *TINY_VIT, "--dataset", f"{D}/own.npz", "--task", "binary-class"], None, 1, ["own.npz", "--task multi-class"]),
    ("own-npz-without-task", PROBE, ["extract", *TINY_VIT, "--dataset", f"{D}/own.npz"], None, 1, ["own.npz", "--task"]),
    ("missing-npz", PROBE, ["extract", *TINY_VIT, "--dataset", "bloodmnist", "--no-download"], None, 1, ["bloodmnist.npz", "--data-root"]),
    ("unknown-dataset", PROBE, ["extract", *TINY_VIT, "--dataset", "bloodmnis"], None, 1, ["bloodmnis", "bloodmnist"]),
    ("unknown-backbone", PROBE, ["extract", "--backbone", "dino", "--dataset", "breastmnist"], None, 1, ["dino", "dinov2_small"]),
    ("corrupt-weights", PROBE, ["extract", "--backbone", "timm:test_vit", "--img-size", "32", "--weights", X, "--dataset", "breastmnist"], corrupt_weights, 1, ["broken.safetensors", "cannot read"]),
    ("missing-weights", FINETUNE, ["run", "--model", "timm:test_vit", "--weights", f"{D}/nope.safetensors", "--dataset", "breastmnist"], None, 1, ["nope.safetensors", "does not exist"]),
    ("bad-splits", PROBE, ["extract", *TINY_VIT, "--dataset", "breastmnist", "--splits", "train,foo"], None, 2, ["--splits", "foo", "train, val, test"]),
    ("bad-device", PROBE, ["extract", *TINY_VIT, "--dataset", "breastmnist", "--device", "gpu0"], None, 1, ["--device", "gpu0", "cpu"]),
    ("bad-device-finetune", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--device", "gpu0"], None, 1, ["--device", "gpu0"]),
    ("vit-img-size-not-patch-multiple", PROBE, ["extract", "--backbone", "vit_tiny", "--no-pretrained", "--img-size", "28", "--dataset", "breastmnist"], None, 1, ["--img-size 28", "patch size 16"]),
    ("empty-seeds", PROBE, ["fit", "--dataset", "breastmnist", "--seeds", ","], None, 2, ["--seeds"]),
    ("unknown-head", PROBE, ["fit", "--dataset", "breastmnist", "--head", "svm"], None, 2, ["svm", "logreg"]),
    ("fraction-out-of-range", PROBE, ["fit", "--dataset", "breastmnist", "--train-fraction", "1.5"], None, 1, ["--train-fraction", "1.5"]),
    ("fraction-and-shots", PROBE, ["fit", "--dataset", "breastmnist", "--train-fraction", "0.5", "--shots", "2"], None, 1, ["not both"]),
    ("fit-no-entry", PROBE, ["fit", "--dataset", "breastmnist", "--backbone", "vit_tiny"], None, 1, ["probe extract --backbone vit_tiny"]),
    ("fit-entry-of-other-bytes", PROBE, ["fit", "--dataset", X, "--task", "multi-class"], lambda w: shutil.copy(w / "data" / "own.npz", w / "breastmnist.npz") and w / "breastmnist.npz", 1, ["other bytes", "breastmnist.npz"]),
    ("cache-info-unknown", PROBE, ["cache", "info", "deadbeefdeadbeef"], None, 1, ["deadbeefdeadbeef", "probe cache ls"]),
    ("cache-rm-short-prefix", PROBE, ["cache", "rm", "ab", "--yes"], None, 1, ["8 hex digits"]),
    ("cache-rm-empty", PROBE, ["cache", "rm", "", "--yes"], None, 1, ["8 hex digits"]),
    ("report-no-records", PROBE, ["report", f"{D}"], None, 1, ["no result records"]),
    ("finetune-bad-freeze", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--freeze", "half"], None, 1, ["--freeze", "last:K"]),
    ("finetune-diverges", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--lr", "1e6", "--warmup", "0"], None, 1, ["epoch 1", "diverged", "--lr (this run's 1e+06)", "no record"]),
    ("finetune-corrupt-checkpoint", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--epochs", "1", "--resume", "--out", X], corrupt_checkpoint, 1, ["checkpoint.pt", "--resume"]),
    ("suite-bad-dtype", PROBE, ["suite", X], recipe('[[probe]]\nbackbone = "vit_tiny"\ndtype = "float8"\n'), 1, ["recipe.toml:6", "dtype", "float16"]),
    ("suite-bad-resize", PROBE, ["suite", X], recipe('[[probe]]\nbackbone = "vit_tiny"\nresize = "stretch"\n'), 1, ["recipe.toml:6", "resize", "bicubic"]),
    ("suite-bad-fraction", PROBE, ["suite", X], recipe('[[probe]]\nbackbone = "vit_tiny"\ntrain_fraction = "half"\n'), 1, ["recipe.toml:6", "train_fraction"]),
    ("suite-bad-pretrained", PROBE, ["suite", X], recipe('[[probe]]\nbackbone = "vit_tiny"\npretrained = "yes"\n'), 1, ["recipe.toml:6", "pretrained", "true or false"]),
    ("suite-bad-seeds", PROBE, ["suite", X], recipe('seeds = "0,1"\n[[probe]]\nbackbone = "vit_tiny"\n'), 1, ["recipe.toml:4", "seeds", "list of integers"]),
    ("suite-empty-seeds", PROBE, ["suite", X], recipe('seeds = []\n[[probe]]\nbackbone = "vit_tiny"\n'), 1, ["recipe.toml:4", "seeds"]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fault_is_one_clean_line_and_loses_nothing(world, monkeypatch, case):
    _, cli, args, setup, code, words = case
    made = setup(world) if setup else None
    places = {"data": world / "data", "cache": world / "cache", "runs": world / "runs", "made": made}
    args = [a.format(**places) if isinstance(a, str) else a for a in args]
    if cli == PROBE and args[0] in ("extract", "fit") or cli == FINETUNE:
        args += ["--data-root", str(world / "data")]
    if (
        cli == PROBE
        and args[0] in ("extract", "fit", "cache")
        or cli == PROBE
        and args[:2] == ["cache", "rm"]
    ):
        args += ["--cache-root", str(world / "cache")]
    if cli == PROBE and args[0] == "fit":
        args += ["--out", str(world / "runs")]
    if cli == FINETUNE and "--out" not in args:
        args += ["--out", str(world / "ft-runs")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(world)
    result = CliRunner().invoke(probe_main if cli == PROBE else finetune_main, args)
    assert result.exit_code == code, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 if code == 1 else lines, result.output
    for word in words:
        assert word in result.output, result.output
    after = snapshot(world)
    assert {k: v for k, v in before.items() if k in after or "ft/" not in k} == {
        k: after.get(k) for k in before if k in after or "ft/" not in k
    }, "a file the user had was changed or deleted"


def test_bit_flip_fails_verify_and_fit_refuses(world):
    [entry] = (world / "cache").rglob("*.h5")
    data = bytearray(entry.read_bytes())
    with __import__("h5py").File(entry) as f:
        offset = f["train"]["features"]["cls"].id.get_offset()
    data[offset + 5] ^= 0x10
    entry.write_bytes(bytes(data))
    verify = CliRunner().invoke(probe_main, ["cache", "verify", "--cache-root", str(world / "cache")])
    assert verify.exit_code == 1 and "train/features/cls does not match its checksum" in verify.output
    fit = CliRunner().invoke(
        probe_main,
        [
            "fit",
            "--dataset",
            "breastmnist",
            "--data-root",
            str(world / "data"),
            "--cache-root",
            str(world / "cache"),
        ]
        + ["--out", str(world / "runs2"), "--bootstrap", "0"],
    )
    assert fit.exit_code == 1 and "corrupt" in fit.output and "Traceback" not in fit.output
    assert not (world / "runs2").exists() or not list((world / "runs2").glob("*.json"))


def test_cache_rm_removes_only_the_entry_and_asks_first(world):
    [entry] = (world / "cache").rglob("*.h5")
    folder = entry.parent
    bystanders = [folder / "mydata.h5.bak", folder / f"{entry.name}_notes.txt", folder / "mydata.txt"]
    for path in bystanders:
        path.write_text("mine")
    digest = json.loads(__import__("h5py").File(entry, "r").attrs["key"]) and entry.stem
    args = ["cache", "rm", digest[:8], "--cache-root", str(world / "cache")]
    refused = CliRunner().invoke(probe_main, args, input="n\n")
    assert refused.exit_code == 1 and entry.exists()
    done = CliRunner().invoke(probe_main, args, input="y\n")
    assert done.exit_code == 0, done.output
    assert not entry.exists() and all(p.read_text() == "mine" for p in bystanders)


def test_cache_rm_refuses_while_an_extraction_holds_the_entry(world):
    import filelock

    [entry] = (world / "cache").rglob("*.h5")
    with filelock.FileLock(str(entry) + ".lock"):
        result = CliRunner().invoke(
            probe_main, ["cache", "rm", str(entry), "--yes", "--cache-root", str(world / "cache")]
        )
    assert result.exit_code == 1 and "being extracted" in result.output and entry.exists()


def test_report_skips_a_corrupt_record_and_names_it(world):
    (world / "runs" / "torn.json").write_text('{"schema_version": 2, "metrics": {"te')
    result = CliRunner().invoke(probe_main, ["report", str(world / "runs"), "-o", str(world / "report")])
    assert result.exit_code == 0, result.output
    assert (world / "report" / "report.html").exists()


def _save_repeatedly(out_dir: str, n: int) -> None:
    record = RunResult("x", 28, "m", "logreg", 0, metrics={"test": {"acc": 0.5}}, config={"a": 1})
    record.hparams = {"padding": "x" * 20000}  # big enough that a torn write would show
    for _ in range(n):
        record.save(out_dir)


@pytest.mark.slow
def test_concurrent_writers_of_one_record_leave_one_whole_record(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_save_repeatedly, args=(str(tmp_path), 100)) for _ in range(6)]
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        for path in tmp_path.glob("*.json"):
            json.loads(path.read_text())  # never torn
            reads += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reads > 0 and len(load_results(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in tmp_path.glob("x_28*"))


def test_outputs_share_permissions_and_the_checkpoint_is_removed(world):
    out = world / "ft"
    result = CliRunner().invoke(
        finetune_main,
        ["run", *TINY_RESNET, "--dataset", "breastmnist", "--epochs", "1"]
        + ["--data-root", str(world / "data"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    assert not (run_dir / "checkpoint.pt").exists()
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert len(set(modes.values())) == 1, modes


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a tmpfs")
def test_disk_full_is_one_line_and_leaves_no_empty_files(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        data = tmp_path / "data"
        make_npz(data / "breastmnist.npz", n_classes=2, n=(400, 100, 100))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "probe",
                "extract",
                *TINY_VIT,
                "--dataset",
                "breastmnist",
                "--dtype",
                "float32",
            ]
            + ["--data-root", str(data), "--cache-root", str(small)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "could not write" in result.stderr
        assert "free some space" in result.stderr
        assert not [
            p for p in small.rglob("*") if p.is_file() and p.stat().st_size == 0 and p.suffix != ".lock"
        ]
        assert list(small.rglob("*.h5.partial")), "the partial entry stays, to resume"
    finally:
        subprocess.run(["umount", str(small)], check=False)
