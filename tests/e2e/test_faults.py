"""Faults and bad files.

Every user error is one line with a hint and a non-zero exit, never a traceback, and nothing the
user had (cache entries, records, their own files) is lost.
"""

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

from cache.extract import extract
from cache.options import ExtractOptions
from finetune.cli import main as finetune_main
from medprobe.results import RunResult, load_results
from suite.programs import probe as probe_main  # the installed `probe`, suite included
from tests.support import make_npz

TINY_VIT = ["--backbone", "timm:test_vit", "--no-pretrained", "--img-size", "32"]
TINY_RESNET = [
    "--model",
    "timm:test_resnet",
    "--no-pretrained",
    "--img-size",
    "32",
    "--precision",
    "fp32",
]


@pytest.fixture
def world(tmp_path):
    """A user's folders: data (official + own npz), a cache with one entry, runs with one record."""
    data = tmp_path / "data"
    make_npz(data / "breastmnist.npz", n_classes=2)
    make_npz(data / "own.npz", n_classes=3)
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    extract(
        "timm:test_vit",
        "breastmnist",
        data_root=data,
        cache_root=cache,
        options=ExtractOptions(pretrained=False, img_size=32),
    )
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
        path.write_bytes(
            {"truncated": good[: len(good) // 2], "empty": b"", "text": b"not an npz\n"}[kind]
        )
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


def foreign_file(name, content):
    """A file of the user's own lying in the cache tree, beside the entries."""

    def make(world):
        [folder] = {p.parent for p in (world / "cache").rglob("*.h5")}
        path = folder / name
        if content == "hdf5":
            import h5py

            with h5py.File(path, "w") as f:
                f["mine"] = np.arange(3)
        else:
            path.write_text(content)
        return path

    return make


def labels_of(split, labels):
    """own.npz with `split`'s labels replaced (e.g. a train split of one class)."""

    def make(world):
        with np.load(world / "data" / "own.npz") as npz:
            arrays = dict(npz)
        arrays[f"{split}_labels"] = np.full_like(arrays[f"{split}_labels"], labels)
        np.savez(world / "bad.npz", **arrays)
        return world / "bad.npz"

    return make


def images_of(split, shape, name="own.npz"):
    """A data file with `split`'s images of another shape (N, H, W), written over `name` or as bad.npz."""

    def make(world):
        with np.load(world / "data" / name) as npz:
            arrays = dict(npz)
        n = len(arrays[f"{split}_images"])
        arrays[f"{split}_images"] = np.zeros((n, *shape), np.uint8)
        path = world / "data" / name if name != "own.npz" else world / "bad.npz"
        np.savez(path, **arrays)
        return path

    return make


def nan_weights(world):
    from safetensors.torch import save_file

    from medprobe.backbones.factory import create_backbone

    model, _ = create_backbone("timm:test_vit", pretrained=False, img_size=32)
    path = world / "nan.safetensors"
    save_file({k: torch_full_nan(v) for k, v in model.state_dict().items()}, path)
    return path


def torch_full_nan(tensor):
    return tensor.clone().fill_(float("nan")).contiguous()


def corrupt_weights(world):
    path = world / "broken.safetensors"
    path.write_bytes(b'{"not": "safetensors"}' + b"\x00" * 50)
    return path


def corrupt_checkpoint(world):
    """A fine-tune killed after its first epoch, whose checkpoint then got damaged."""
    data, out = world / "data", world / "ft"
    args = [
        "run",
        *TINY_RESNET,
        "--dataset",
        "breastmnist",
        "--data-root",
        str(data),
        "--out",
        str(out),
    ]
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
        path.write_text(
            f'[suite]\ndatasets = ["breastmnist"]\ndata_root = "{world / "data"}"\n' + body
        )
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
    ("fraction-out-of-range", PROBE, ["fit", "--dataset", "breastmnist", "--train-fraction", "1.5"], None, 2, ["--train-fraction", "1.5", "in (0, 1]"]),
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
    # Round two (issue #25): nothing but entries is deleted; labels, shapes and options bounded.
    ("cache-rm-users-hdf5", PROBE, ["cache", "rm", X, "--yes"], foreign_file("mydata.h5", "hdf5"), 1, ["mydata.h5", "not a medprobe cache entry"]),
    ("cache-rm-text-named-h5", PROBE, ["cache", "rm", X, "--yes"], foreign_file("results.h5", "my results\n"), 1, ["results.h5", "not a medprobe cache entry"]),
    ("cache-rm-entry-named-text", PROBE, ["cache", "rm", X, "--yes"], foreign_file("0123456789abcdef.h5", "mine\n"), 1, ["0123456789abcdef.h5", "not a medprobe cache entry"]),
    ("label-skips-classes", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_labels(7), 1, ["bad.npz", "0..7", "(3, 4, 5, 6)", "no image"]),
    ("label-a-million", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_labels(1e6), 1, ["bad.npz train", "row 3", "at most 10000 classes"]),
    ("label-2-to-the-40", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], bad_labels(2**40), 1, ["bad.npz train", "row 3", "at most 10000 classes"]),
    ("registry-split-of-other-size", PROBE, ["extract", *TINY_VIT, "--dataset", "breastmnist"], images_of("val", (30, 30), "breastmnist.npz"), 1, ["breastmnist.npz val", "30 x 30", "--size 28"]),
    ("splits-of-other-shapes", PROBE, ["extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], images_of("train", (28, 20)), 1, ["bad.npz", "train images are 28 x 20", "val images are 28 x 28"]),
    ("train-of-one-class", PROBE, ["fit", "--extract", *TINY_VIT, "--dataset", X, "--task", "multi-class"], labels_of("train", 1), 1, ["bad_28 train", "class 1 only", "two classes"]),
    ("train-fraction-of-one-image", PROBE, ["fit", "--dataset", "breastmnist", "--train-fraction", "0.001"], None, 1, ["--train-fraction 0.001 (1 of 24 images)", "only (1 image)"]),
    ("finetune-train-of-one-class", FINETUNE, ["run", *TINY_RESNET, "--dataset", X, "--task", "multi-class"], labels_of("train", 0), 1, ["bad_28 train", "class 0 only"]),
    ("label-smoothing-negative", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--label-smoothing", "-0.1"], None, 2, ["--label-smoothing", "-0.1", "in [0, 1)"]),
    ("label-smoothing-two", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--label-smoothing", "2"], None, 2, ["--label-smoothing", "in [0, 1)"]),
    ("freeze-deeper-than-the-model", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--freeze", "last:999"], None, 1, ["--freeze last:999", "blocks", "last:1 .. last:"]),
    ("weights-and-no-pretrained", PROBE, ["extract", *TINY_VIT, "--weights", f"{D}/w.safetensors", "--dataset", "breastmnist"], None, 1, ["--weights", "--no-pretrained", "contradict"]),
    ("weights-and-no-pretrained-finetune", FINETUNE, ["run", *TINY_RESNET, "--weights", f"{D}/w.safetensors", "--dataset", "breastmnist"], None, 1, ["--weights", "--no-pretrained", "contradict"]),
    ("task-on-a-registry-dataset", PROBE, ["extract", *TINY_VIT, "--dataset", "breastmnist", "--task", "multi-class"], None, 1, ["--task multi-class", "breastmnist", "binary-class"]),
    ("task-on-a-registry-dataset-finetune", FINETUNE, ["run", *TINY_RESNET, "--dataset", "breastmnist", "--task", "multi-class"], None, 1, ["--task multi-class", "breastmnist"]),
    ("bootstrap-a-billion", PROBE, ["fit", "--dataset", "breastmnist", "--bootstrap", "1000000000"], None, 2, ["--bootstrap", "in [0, 10000]"]),
    ("report-bootstrap-a-billion", PROBE, ["report", R, "--bootstrap", "1000000000"], None, 2, ["--bootstrap", "10000"]),
    ("nan-weights", PROBE, ["extract", "--backbone", "timm:test_vit", "--img-size", "32", "--weights", X, "--dataset", "breastmnist"], nan_weights, 1, ["nan.safetensors", "non-finite", "tensors"]),
    ("suite-empty-recipe", PROBE, ["suite", X, "--plan"], recipe(""), 1, ["recipe.toml", "nothing to run", "[[probe]]"]),
    ("suite-missing-weights", PROBE, ["suite", X, "--plan"], recipe('[[probe]]\nbackbone = "vit_tiny"\nweights = "nope.safetensors"\n'), 1, ["recipe.toml:6", "nope.safetensors", "does not exist"]),
    ("suite-weights-and-no-pretrained", PROBE, ["suite", X, "--plan"], recipe('[[probe]]\nbackbone = "vit_tiny"\nweights = "w.safetensors"\npretrained = false\n'), 1, ["recipe.toml:5", "contradict"]),
    ("suite-bad-label-smoothing", PROBE, ["suite", X, "--plan"], recipe('[[finetune]]\nbackbone = "resnet18"\nlabel_smoothing = 1.0\n'), 1, ["recipe.toml:6", "label_smoothing", "in [0, 1)"]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fault_is_one_clean_line_and_loses_nothing(world, monkeypatch, case):
    _, cli, args, setup, code, words = case
    made = setup(world) if setup else None
    places = {
        "data": world / "data",
        "cache": world / "cache",
        "runs": world / "runs",
        "made": made,
    }
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
    monkeypatch.setenv("TQDM_DISABLE", "1")  # the lines counted are the messages, not progress bars
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
    verify = CliRunner().invoke(
        probe_main, ["cache", "verify", "--cache-root", str(world / "cache")]
    )
    assert (
        verify.exit_code == 1 and "train/features/cls does not match its checksum" in verify.output
    )
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
    bystanders = [
        folder / "mydata.h5.bak",
        folder / f"{entry.name}_notes.txt",
        folder / "mydata.txt",
    ]
    for path in bystanders:
        path.write_text("mine")
    digest = json.loads(__import__("h5py").File(entry, "r").attrs["key"]) and entry.stem
    args = ["cache", "rm", digest[:8], "--cache-root", str(world / "cache")]
    refused = CliRunner().invoke(probe_main, args, input="n\n")
    assert refused.exit_code == 1 and entry.exists()
    done = CliRunner().invoke(probe_main, args, input="y\n")
    assert done.exit_code == 0, done.output
    assert not entry.exists() and all(p.read_text() == "mine" for p in bystanders)


def test_cache_ls_and_verify_leave_a_users_files_out(world):
    [entry] = (world / "cache").rglob("*.h5")
    foreign_file("mydata.h5", "hdf5")(world)
    foreign_file("results.h5", "my results\n")(world)
    cache = ["--cache-root", str(world / "cache")]
    listed = CliRunner().invoke(probe_main, ["cache", "ls", "--json", *cache])
    assert [row["path"] for row in json.loads(listed.output)] == [str(entry)]
    verify = CliRunner().invoke(probe_main, ["cache", "verify", *cache])
    assert verify.exit_code == 0 and "all 1 entries" in verify.output, verify.output


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
    result = CliRunner().invoke(
        probe_main, ["report", str(world / "runs"), "-o", str(world / "report")]
    )
    assert result.exit_code == 0, result.output
    assert (world / "report" / "report.html").exists()


def _save_repeatedly(out_dir: str, n: int) -> None:
    metrics, config = {"test": {"acc": 0.5}}, {"a": 1}
    record = RunResult(
        dataset="x", size=28, model="m", method="logreg", seed=0, metrics=metrics, config=config
    )
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
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.glob("x_28*")
    )


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


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: a disk that fills up (needs root, as CI has)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield small
    subprocess.run(["umount", str(small)], check=False)


def test_disk_full_is_one_line_and_leaves_no_empty_files(tmp_path, small_disk):
    data = tmp_path / "data"
    make_npz(data / "breastmnist.npz", n_classes=2, n=(400, 100, 100))
    result = subprocess.run(
        [sys.executable, "-m", "probe", "extract", *TINY_VIT, "--dataset", "breastmnist"]
        + ["--dtype", "float32", "--data-root", str(data), "--cache-root", str(small_disk)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "could not write" in result.stderr
    assert "free some space" in result.stderr
    assert not [
        p
        for p in small_disk.rglob("*")
        if p.is_file() and p.stat().st_size == 0 and p.suffix != ".lock"
    ]
    assert list(small_disk.rglob("*.h5.partial")), "the partial entry stays, to resume"


def test_disk_full_during_a_checkpoint_is_one_line(tmp_path, small_disk):
    """torch.save reports the full disk as a RuntimeError: still the one-line disk error."""
    data = tmp_path / "data"
    make_npz(data / "breastmnist.npz", n_classes=2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "finetune",
            "run",
            *TINY_RESNET,
            "--dataset",
            "breastmnist",
            "--epochs",
            "2",
        ]
        + ["--data-root", str(data), "--out", str(small_disk / "ft")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert (
        "Traceback" not in result.stderr
        and "checkpoint.pt: no space left on device" in result.stderr
    )
    assert not [p for p in small_disk.rglob("*") if p.is_file()], "no half-written file is left"


# --- An entry's integrity covers its identity (issue #25) ---------------------------------------


def _edit_entry(entry: Path, edit) -> None:
    """Change an entry in place, as a hand or another tool would, CRCs stamped again where asked."""
    import zlib

    import h5py

    with h5py.File(entry, "r+") as f:
        edit(f)
        for name in ("train/labels", "train/features/cls"):
            f[name].attrs["crc32"] = zlib.crc32(np.ascontiguousarray(f[name][...]))


def _edit_key(**changes):
    def edit(f):
        key = json.loads(f.attrs["key"])
        f.attrs["key"] = json.dumps(key | changes, sort_keys=True, separators=(",", ":"))

    return edit


def _flip_labels(f):
    f["train/labels"][...] = 1 - f["train/labels"][...]


def _nan_features(f):
    features = f["train/features/cls"][...]
    features[2, 3] = np.nan
    f["train/features/cls"][...] = features


ENTRY_EDITS = {
    "resize-edited": (_edit_key(preprocess=None), ["key does not hash to its file name"]),
    "data-md5-relabelled": (_edit_key(data_md5="0" * 32), ["key does not hash to its file name"]),
    "labels-edited-crc-restamped": (
        _flip_labels,
        ["train/labels are not the labels it was extracted with"],
    ),
    "nan-features-crc-restamped": (_nan_features, ["train/features/cls holds non-finite values"]),
}


@pytest.mark.parametrize("edit", ENTRY_EDITS, ids=list(ENTRY_EDITS))
def test_an_edited_entry_is_refused_by_verify_and_by_fit(world, edit):
    [entry] = (world / "cache").rglob("*.h5")
    change, words = ENTRY_EDITS[edit]
    if edit == "resize-edited":
        key = json.loads(__import__("h5py").File(entry, "r").attrs["key"])
        change = _edit_key(preprocess=key["preprocess"] | {"resize": "pad"})
    _edit_entry(entry, change)
    cache = ["--cache-root", str(world / "cache")]
    verify = CliRunner().invoke(probe_main, ["cache", "verify", *cache])
    assert verify.exit_code == 1 and all(w in verify.output for w in words), verify.output
    assert f"probe cache rm {entry}" in verify.output
    fit = [
        "fit",
        "--dataset",
        "breastmnist",
        "--data-root",
        str(world / "data"),
        *cache,
        "--bootstrap",
        "0",
    ]
    resize = ["--resize", "pad"] if edit == "resize-edited" else []
    result = CliRunner().invoke(probe_main, [*fit, *resize, "--out", str(world / "runs2")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"probe cache rm {entry}" in result.output
    assert not list((world / "runs2").glob("*.json")) if (world / "runs2").exists() else True
    removed = CliRunner().invoke(probe_main, ["cache", "rm", str(entry), "--yes", *cache])
    assert removed.exit_code == 0 and not entry.exists(), removed.output


def test_an_entry_relabelled_to_other_data_is_refused_by_fit(world):
    """The reported traceback: a key relabelled to another file's MD5, then fitted on that file."""
    import h5py

    from medprobe.data import file_md5

    other = world / "other" / "breastmnist.npz"
    other.parent.mkdir()
    make_npz(other, n_classes=2, seed=5)
    [entry] = (world / "cache").rglob("*.h5")
    _edit_entry(entry, _edit_key(data_md5=file_md5(other)))
    assert json.loads(h5py.File(entry, "r").attrs["key"])["data_md5"] == file_md5(other)
    args = ["fit", "--dataset", "breastmnist", "--data-root", str(other.parent)]
    args += ["--cache-root", str(world / "cache"), "--out", str(world / "runs2")]
    result = CliRunner().invoke(probe_main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert (
        "key does not hash to its file name" in result.output
        and f"probe cache rm {entry}" in result.output
    )


def test_the_labels_of_an_entry_must_be_the_data_files(world):
    """`read_split` refuses an entry whose labels differ from the npz it is fitted for.

    Its CRCs were restamped, so only a comparison with the data file finds it.
    """
    from cache.store import CacheError, read_split

    [entry] = (world / "cache").rglob("*.h5")
    _features, labels = read_split(entry, "train")
    read_split(entry, "train", labels=labels)
    with pytest.raises(CacheError, match="labels differ from the data file's"):
        read_split(entry, "train", labels=1 - labels)


def test_non_finite_features_name_their_cause():
    from cache.writer import non_finite

    finite = {"cls": np.ones((2, 3), np.float16)}
    assert non_finite(finite, "float16") is None
    nan = {"cls": np.array([[np.nan, 1.0]], np.float32)}
    assert "weights hold NaN" in non_finite(nan, "float32") and "--precision fp32" in non_finite(
        nan, "float32"
    )
    overflow = {"cls": np.array([[np.inf, 1.0]], np.float16)}
    assert "overflow float16" in non_finite(
        overflow, "float16"
    ) and "--dtype float32" in non_finite(overflow, "float16")


# --- Predictions files are bound to their records (issue #25) ------------------------------------


def _two_records(world) -> tuple[Path, Path]:
    args = ["fit", "--dataset", "breastmnist", "--data-root", str(world / "data")]
    args += ["--cache-root", str(world / "cache"), "--out", str(world / "runs"), "--head", "knn"]
    assert CliRunner().invoke(probe_main, [*args, "--bootstrap", "0"]).exit_code == 0
    [logreg] = (world / "runs").glob("*logreg*.npz")
    [knn] = (world / "runs").glob("*knn*.npz")
    return logreg, knn


def _swap(logreg, knn):
    logreg.write_bytes(knn.read_bytes())


def _edit_scores(logreg, knn):
    with np.load(logreg) as npz:
        arrays = dict(npz)
    arrays["test_score"] = arrays["test_score"][::-1].copy()
    np.savez_compressed(logreg, **arrays)


PREDICTION_FAULTS = {
    "swapped": (_swap, "replaced or edited"),
    "edited": (_edit_scores, "replaced or edited"),
    "truncated": (
        lambda logreg, knn: logreg.write_bytes(logreg.read_bytes()[:200]),
        "replaced or edited",
    ),
    "missing": (lambda logreg, knn: logreg.unlink(), "is missing"),
}


@pytest.mark.parametrize("fault", PREDICTION_FAULTS, ids=list(PREDICTION_FAULTS))
def test_report_skips_a_record_whose_predictions_are_not_its_own(world, fault, caplog):
    logreg, knn = _two_records(world)
    damage, words = PREDICTION_FAULTS[fault]
    damage(logreg, knn)
    with caplog.at_level("WARNING", logger="medprobe.results"):
        result = CliRunner().invoke(
            probe_main, ["report", str(world / "runs"), "-o", str(world / "report")]
        )
    assert result.exit_code == 0, result.output
    warning = [r.getMessage() for r in caplog.records if logreg.stem in r.getMessage()]
    assert len(warning) == 1 and words in warning[0], caplog.text
    csv = (world / "report" / "report.csv").read_text()
    assert "knn" in csv and "logreg" not in csv


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("size", None, "'size'"),
        ("seed", "0", "'seed'"),
        ("metrics", {"val": {}}, "no 'test' metrics"),
        ("metrics", {"test": {"acc": "high"}}, "test acc is 'high'"),
    ],
)
def test_report_skips_a_record_with_a_malformed_field_with_one_warning(
    world, field, value, named, caplog
):
    [record] = (world / "runs").glob("*.json")
    good = record.with_name("copy-" + record.name)
    good.write_text(record.read_text())
    data = json.loads(record.read_text())
    record.write_text(json.dumps(data | {field: value}))
    with caplog.at_level("WARNING", logger="medprobe.results"):
        result = CliRunner().invoke(
            probe_main, ["report", str(world / "runs"), "-o", str(world / "report")]
        )
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    skipped = [r for r in caplog.records if record.name in r.getMessage()]
    assert len(skipped) == 1 and named in skipped[0].getMessage()


def test_a_record_names_the_sha256_of_its_predictions(world):
    [record] = (world / "runs").glob("*.json")
    digest = json.loads(record.read_text())["predictions_sha256"]
    assert digest == hashlib.sha256(record.with_suffix(".npz").read_bytes()).hexdigest()
    [result] = load_results(world / "runs")
    assert set(result.predictions) == {"test_score", "test_true"}


# --- A full disk is one line whatever the writer raises (issue #25) -----------------------------


def test_a_writer_failing_on_a_full_disk_is_the_disk_error(tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError of its zip writer, not an OSError."""
    import torch

    from finetune.checkpoint import save_checkpoint
    from medprobe import atomic

    def torch_save_on_a_full_disk(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr(atomic, "disk_full", lambda folder: True)
    with pytest.raises(
        atomic.DiskError, match="checkpoint.pt: no space left on device .*free some space"
    ):
        save_checkpoint({"epoch": 1}, tmp_path / "checkpoint.pt")
    monkeypatch.setattr(atomic, "disk_full", lambda folder: False)
    with pytest.raises(RuntimeError, match="enforce fail"):  # a bug on a disk with room stays a bug
        save_checkpoint({"epoch": 1}, tmp_path / "checkpoint.pt")
    assert not list(tmp_path.iterdir())


def test_disk_full_during_the_training_copy_is_one_line(tmp_path, small_disk):
    """The uncompressed copy `--data-mode disk` trains from, on a disk too small for it.

    Refused up front with the space needed and the other mode (a disk filled by another writer
    meanwhile is the one-line disk error: `disk_errors` around the copy).
    """
    data = tmp_path / "data"
    make_npz(data / "breastmnist.npz", n_classes=2, n=(600, 8, 8))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "finetune",
            "run",
            *TINY_RESNET,
            "--dataset",
            "breastmnist",
            "--epochs",
            "1",
        ]
        + ["--data-mode", "disk", "--data-root", str(data), "--cache-root", str(small_disk)]
        + ["--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert (
        "Traceback" not in result.stderr
        and "the uncompressed copy for training needs" in result.stderr
    )
    assert "--data-mode memory" in result.stderr
