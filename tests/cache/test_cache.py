"""cache.

Content keys, atomic + resumable writes, damaged-file detection, locking, torchrun shards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cache.extract import extract
from cache.options import ExtractOptions
from cache.store import CacheError, inspect_entry, list_entries, read_attrs, read_key, read_split
from cache.writer import open_partial
from probe.cli import main as probe_main
from tests.support import TORCHRUN_2, make_npz, rows_done

TINY = dict(backbone="timm:test_vit", pretrained=False, img_size=32, batch_size=16, progress=False)


def extract_tiny(data_root, cache_root, **overrides):
    options = TINY | overrides
    if options.get("weights") is not None:
        # a weights file is pretrained (`--no-pretrained` contradicts it)
        options["pretrained"] = True
    backbone, progress = options.pop("backbone"), options.pop("progress")
    return extract(
        backbone,
        "bloodmnist",
        data_root=data_root,
        cache_root=cache_root,
        progress=progress,
        options=ExtractOptions(**options),
    )


def all_features(path):
    return {split: read_split(path, split) for split in ("train", "val", "test")}


def assert_same_entry(a, b):
    fa, fb = all_features(a), all_features(b)
    for split in fa:
        for kind in fa[split][0]:
            assert np.array_equal(fa[split][0][kind], fb[split][0][kind]), f"{split}/{kind} differ"
        assert np.array_equal(fa[split][1], fb[split][1])


def cli_process(*args) -> list[str]:
    return [sys.executable, "-m", "probe", "extract", *args]


def test_extract_writes_a_complete_self_describing_entry(data_root, tmp_path):
    result = extract_tiny(data_root, tmp_path)
    assert not result.reused and result.path.suffix == ".h5"
    features, labels = read_split(result.path, "train")
    assert features["cls"].shape == features["mean"].shape == (40, 64)
    np.testing.assert_array_equal(labels, np.load(data_root / "bloodmnist.npz")["train_labels"])
    key = read_key(result.path)
    assert (
        key.dtype == "float16"
        and key.features == ("cls", "mean", "last4")
        and key.weights == "random-init:seed0"
    )
    assert not list(result.path.parent.glob("*.partial*"))


def test_complete_entry_is_reused_without_loading_the_model(data_root, tmp_path, monkeypatch):
    first = extract_tiny(data_root, tmp_path)
    mtime = first.path.stat().st_mtime_ns

    def no_model(*args, **kwargs):
        raise AssertionError("a cached entry must be reused without building the model")

    with monkeypatch.context() as patch:
        patch.setattr("cache.extract.create_backbone", no_model)
        again = extract_tiny(data_root, tmp_path)
    assert again.reused and again.path == first.path and first.path.stat().st_mtime_ns == mtime
    rebuilt = extract_tiny(data_root, tmp_path, overwrite=True)
    assert not rebuilt.reused and rebuilt.path == first.path


def test_features_match_a_plain_forward(data_root, tmp_path):
    import torch

    from medprobe.backbones.factory import create_backbone, extract_features
    from medprobe.backbones.preprocess import preprocess

    result = extract_tiny(data_root, tmp_path, precision="fp32", dtype="float32")
    model, cfg = create_backbone("timm:test_vit", pretrained=False, img_size=32)
    images = torch.from_numpy(np.load(data_root / "bloodmnist.npz")["val_images"])
    with torch.inference_mode():
        expected = extract_features(model, preprocess(images, cfg), "vit")
    cached, _ = read_split(result.path, "val")
    np.testing.assert_allclose(cached["mean"], expected["mean"].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change",
    [
        {"resize": "pad"},
        {"resize": "nearest"},
        {"dtype": "float32"},
        {"precision": "fp32"},
        {"img_size": 48},
        {"splits": ("test",)},
    ],
)
def test_any_key_field_change_makes_a_new_entry(data_root, tmp_path, change):
    base = extract_tiny(data_root, tmp_path, precision="bf16")
    changed = extract_tiny(data_root, tmp_path, **({"precision": "bf16"} | change))
    assert changed.path != base.path and not changed.reused
    assert len(list_entries(tmp_path)) == 2


def test_other_weights_file_or_other_data_make_a_new_entry(data_root, tmp_path):
    import torch
    from safetensors.torch import save_file

    from medprobe.backbones.factory import create_backbone

    weights = tmp_path / "w.safetensors"
    model, _ = create_backbone("timm:test_vit", pretrained=False, img_size=32)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    random_init = extract_tiny(data_root, tmp_path / "c")
    from_file = extract_tiny(data_root, tmp_path / "c", weights=weights)
    with torch.no_grad():
        model.cls_token.add_(1.0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    edited = extract_tiny(data_root, tmp_path / "c", weights=weights)
    assert len({random_init.path, from_file.path, edited.path}) == 3

    make_npz(data_root / "bloodmnist.npz", channels=3, n_classes=8, n=(40, 16, 16), seed=7)
    new_data = extract_tiny(data_root, tmp_path / "c")
    assert new_data.path != random_init.path


def test_truncated_entry_is_detected_with_a_rebuild_hint(data_root, tmp_path):
    path = extract_tiny(data_root, tmp_path).path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    info = inspect_entry(path)
    assert not info.complete and info.problem
    with pytest.raises(CacheError, match="--overwrite"):
        read_split(path, "train")
    result = CliRunner().invoke(probe_main, ["cache", "verify", "--cache-root", str(tmp_path)])
    assert result.exit_code == 1 and str(path) in result.output
    assert not extract_tiny(data_root, tmp_path).reused  # a damaged entry is rebuilt, not reused


def test_reading_an_unfinished_entry_is_refused(data_root, tmp_path):
    path = extract_tiny(data_root, tmp_path).path
    labels = {split: read_split(path, split)[1] for split in ("train", "val", "test")}
    dims = {"cls": 64, "mean": 64, "last4": 5 * 64}
    entry = open_partial(tmp_path / "other.h5", read_key(path), labels=labels, dims=dims)
    entry.write("train", 0, {kind: np.ones((16, d)) for kind, d in dims.items()})
    entry.mark_done("train", 0, 16)
    assert entry.todo("train", 16) == [(16, 32), (32, 40)]
    with pytest.raises(CacheError, match="not a complete cache entry"):
        read_split(entry.path, "train")
    with pytest.raises(RuntimeError, match="not fully written"):
        entry.finalize({})


def slow_extract_args(data_root, cache_root):
    # vit_tiny (random init) at 112 px: slow enough to kill mid-way, fast enough for the suite.
    return [
        "--backbone",
        "vit_tiny",
        "--no-pretrained",
        "--img-size",
        "112",
        "--dataset",
        "bloodmnist",
        "--data-root",
        str(data_root),
        "--cache-root",
        str(cache_root),
        "--batch-size",
        "16",
        "--precision",
        "fp32",
    ]


@pytest.fixture
def bigger_data(tmp_path) -> Path:
    root = tmp_path / "data"
    make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(320, 64, 64))
    return root


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(bigger_data, tmp_path):
    cache = tmp_path / "killed"
    proc = subprocess.Popen(
        cli_process(*slow_extract_args(bigger_data, cache)), stderr=subprocess.DEVNULL
    )
    sidecars = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        sidecars = list(cache.rglob("*.progress-0.json"))
        if sidecars and rows_done(sidecars[0]) >= 3 * 16:  # three batches written
            break
        time.sleep(0.02)
    assert proc.poll() is None, "extraction finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = next(cache.rglob("*.h5.partial"))
    done = json.loads(sidecars[0].read_text())["train"]
    assert not list(cache.rglob("*.h5")), "a killed run must not leave a final entry"

    resumed = subprocess.run(
        cli_process(*slow_extract_args(bigger_data, cache)), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    reference = subprocess.run(
        cli_process(*slow_extract_args(bigger_data, tmp_path / "clean")),
        capture_output=True,
        text=True,
    )
    assert reference.returncode == 0, reference.stderr
    final = partial.with_name(partial.name.removesuffix(".partial"))
    assert final.exists() and not partial.exists() and sum(b - a for a, b in done) >= 48
    assert len(done) == 1  # one process writing in order: one range, however many batches
    assert_same_entry(final, next((tmp_path / "clean").rglob("*.h5")))
    # The resumed run did only the missing rows.
    extraction = read_attrs(final)["extraction"]
    assert extraction["images"] == 448 - sum(stop - start for start, stop in done)


@pytest.mark.slow
def test_two_concurrent_extractions_end_with_one_valid_entry(bigger_data, tmp_path):
    args = cli_process(*slow_extract_args(bigger_data, tmp_path / "cache"))
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    said = sorted(out.split()[0] for out, _ in outputs)
    assert said == ["reused", "wrote"]
    entries = list_entries(tmp_path / "cache")
    assert len(entries) == 1 and entries[0].complete
    assert not list((tmp_path / "cache").rglob("*.partial*"))


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(bigger_data, tmp_path):
    common = [
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
        "--img-size",
        "32",
        "--dataset",
        "bloodmnist",
        "--data-root",
        str(bigger_data),
        "--batch-size",
        "16",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    ]
    single = subprocess.run(
        cli_process(*common, "--cache-root", str(tmp_path / "one")), capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    torchrun = TORCHRUN_2
    sharded = subprocess.run(
        [*torchrun, "-m", "probe", "extract", *common, "--cache-root", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    two = list((tmp_path / "two").rglob("*.h5"))
    assert len(two) == 1 and not list((tmp_path / "two").rglob("*.partial*"))
    one = next((tmp_path / "one").rglob("*.h5"))
    assert one.name == two[0].name  # same key
    assert_same_entry(one, two[0])
    extraction = read_attrs(two[0])["extraction"]
    assert extraction["world_size"] == 2 and extraction["images"] == 448


def test_cli_extract_and_cache_commands(data_root, tmp_path):
    runner = CliRunner()
    common = ["--data-root", str(data_root), "--cache-root", str(tmp_path)]
    args = [
        "extract",
        "--backbone",
        "timm:test_resnet",
        "--no-pretrained",
        "--img-size",
        "32",
        *common,
    ]
    first = runner.invoke(probe_main, args)
    assert first.exit_code == 0, first.output
    assert runner.invoke(probe_main, args).output.startswith("reused")
    listing = runner.invoke(probe_main, ["cache", "ls", "--cache-root", str(tmp_path)]).output
    assert listing.split()[:3] == ["key", "backbone", "data"]  # a header over aligned columns
    digest = listing.splitlines()[1].split()[0]
    assert "timm:test_resnet" in listing and "complete" in listing and "40/16/16" in listing
    [entry] = json.loads(
        runner.invoke(probe_main, ["cache", "ls", "--json", "--cache-root", str(tmp_path)]).output
    )
    assert entry["key"] == digest and entry["rows"] == [40, 16, 16] and entry["state"] == "complete"
    info = runner.invoke(probe_main, ["cache", "info", digest, "--cache-root", str(tmp_path)])
    assert json.loads(info.output)["key"]["backbone"] == "timm:test_resnet"
    assert (
        runner.invoke(probe_main, ["cache", "verify", "--cache-root", str(tmp_path)]).exit_code == 0
    )
    removed = runner.invoke(
        probe_main, ["cache", "rm", digest, "--yes", "--cache-root", str(tmp_path)]
    )
    assert removed.exit_code == 0
    assert not list(tmp_path.rglob("*.h5*"))


def test_cli_errors_are_one_clean_line(data_root, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(
        probe_main, ["extract", "--backbone", "nope", "--data-root", str(data_root)]
    )
    assert bad.exit_code == 1 and "choose one of" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(
        probe_main,
        ["extract", "--backbone", "timm:test_vit", "--data-root", str(tmp_path), "--no-download"],
    )
    assert missing.exit_code == 1 and "--download" in missing.output
