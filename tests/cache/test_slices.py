"""3D datasets: volumes cut into slices, extracted by a 2D backbone, aggregated when fitted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cache.extract import extract
from cache.options import ExtractOptions
from cache.slices import AXES, SliceView, slice_features
from cache.store import read_attrs, read_key, read_split
from medprobe.backbones.factory import create_backbone, extract_features
from medprobe.backbones.preprocess import preprocess
from medprobe.data import get_dataset, open_split
from medprobe.errors import DataError
from medprobe.results import load_results
from suite.programs import probe as probe_main
from tests.support import SHARED, make_npz, needs_shared, rows_done

FLAG = "adrenalmnist3d"  # binary, volumes of 28 voxels a side


@pytest.fixture
def volumes(tmp_path):
    root = tmp_path / "data"
    make_npz(root / f"{FLAG}.npz", n=(6, 4, 4), n_classes=2, volumes=True)
    make_npz(root / "breastmnist.npz", n_classes=2)
    return root


def by_hand(volume: np.ndarray, axes) -> np.ndarray:
    return np.stack([np.take(volume, i, axis=a) for a in axes for i in range(volume.shape[0])])


def test_slices_are_rows_in_volume_axis_slice_order(volumes):
    split = open_split(get_dataset(FLAG), "train", size=28, root=volumes)
    every = split.load()
    view = SliceView(split, AXES["all"])
    assert view.shape == (6 * 84, 28, 28, 1) and len(view.labels) == 6 * 84
    expected = np.concatenate([by_hand(v, (0, 1, 2)) for v in every])[..., None]
    np.testing.assert_array_equal(view.load(), expected)
    # batches that cut volumes, with gaps (another rank's), read the file once from the front
    ranges = [(0, 10), (80, 170), (171, 172), (300, 504)]
    for start, stop, rows in view.chunks(ranges):
        np.testing.assert_array_equal(rows, expected[start:stop])
    first_axis = np.concatenate([by_hand(every[0], (0,)), by_hand(every[1], (0,))[:2]])
    np.testing.assert_array_equal(SliceView(split, AXES["first"]).head(30)[..., 0], first_axis)


def test_extraction_equals_each_slice_by_hand(volumes, tmp_path):
    options = ExtractOptions(pretrained=False, img_size=32, precision="fp32", dtype="float32")
    done = extract(
        "timm:test_vit", FLAG, data_root=volumes, cache_root=tmp_path / "c", options=options
    )
    assert read_key(done.path).slices == "all"
    features, labels = read_split(done.path, "val")
    model, pcfg = create_backbone("timm:test_vit", pretrained=False, img_size=32)
    split = open_split(get_dataset(FLAG), "val", size=28, root=volumes)
    slices = torch.from_numpy(np.concatenate([by_hand(v, (0, 1, 2)) for v in split.load()]))
    with torch.no_grad():
        expected = extract_features(model, preprocess(slices[..., None], pcfg), "vit")
    for kind, f in expected.items():
        torch.testing.assert_close(torch.from_numpy(features[kind]), f, rtol=0, atol=0)
    np.testing.assert_array_equal(labels, np.repeat(split.labels, 84, axis=0))


def test_aggregations():
    rows = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2 * 3 * 4, 2)  # 2 volumes, S=4, D=2
    per_volume = rows.reshape(2, 3, 4, 2)
    mean = slice_features(rows, n_axes=3, axes="all", slices="mean", side=4)
    np.testing.assert_array_equal(mean, per_volume.mean(2).reshape(2, 6))
    first = slice_features(rows, n_axes=3, axes="first", slices="mean+max", side=4)
    np.testing.assert_array_equal(
        first, np.concatenate([per_volume[:, 0].mean(1), per_volume[:, 0].max(1)], axis=1)
    )
    assert slice_features(rows, n_axes=3, axes="all", slices="max", side=4).shape == (2, 6)


def test_probe_fit_on_volumes_with_each_aggregation(volumes, tmp_path):
    common = ["fit", "--dataset", FLAG, "--data-root", str(volumes), "--bootstrap", "0"]
    common += ["--cache-root", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    common += ["--extract", "--backbone", "timm:test_vit", "--no-pretrained", "--img-size", "32"]
    for axes, how in (("all", "mean"), ("first", "max"), ("all", "mean+max")):
        done = CliRunner().invoke(probe_main, [*common, "--axes", axes, "--slices", how])
        assert done.exit_code == 0, done.output
    records = load_results(tmp_path / "r")
    assert sorted((r.config["axes"], r.config["slices"]) for r in records) == [
        ("all", "mean"),
        ("all", "mean+max"),
        ("first", "max"),
    ]
    assert {r.metrics["test"]["n"] for r in records} == {4}  # one prediction per volume
    flat = CliRunner().invoke(
        probe_main,
        ["fit", "--dataset", "breastmnist", "--data-root", str(volumes), "--slices", "max"],
    )
    assert flat.exit_code == 1 and "breastmnist is 2D, drop them" in flat.output


def test_a_2d_file_for_a_3d_flag_and_the_reverse_are_refused(volumes, tmp_path):
    wrong = tmp_path / "wrong"
    make_npz(wrong / f"{FLAG}.npz", n_classes=2)  # images where volumes belong
    make_npz(wrong / "breastmnist.npz", n_classes=2, volumes=True)
    with pytest.raises(DataError, match="2D images .* the dataset is 3D"):
        open_split(get_dataset(FLAG), "train", size=28, root=wrong)
    with pytest.raises(DataError, match="these are volumes .* adrenalmnist3d"):
        open_split(get_dataset("breastmnist"), "train", size=28, root=wrong)
    assert get_dataset(FLAG).sizes == (28, 64) and get_dataset(FLAG).volumetric


def test_fine_tuning_on_volumes_is_refused_in_one_line(volumes, tmp_path):
    from finetune.cli import main as finetune_main

    args = ["run", "--backbone", "timm:test_resnet", "--dataset", FLAG, "--data-root", str(volumes)]
    done = CliRunner().invoke(finetune_main, [*args, "--out", str(tmp_path)])
    assert (
        done.exit_code == 1 and "3D dataset" in done.output and "probe fit --extract" in done.output
    )
    listing = CliRunner().invoke(probe_main, ["datasets", "--json"])
    rows = {r["dataset"]: r for r in json.loads(listing.output)}
    assert rows[FLAG]["3d"] and rows[FLAG]["sizes"] == [28, 64] and not rows["breastmnist"]["3d"]


@pytest.mark.slow
def test_kill_9_during_a_3d_extraction_resumes_to_the_identical_entry(tmp_path):
    from tests.cache.test_cache import assert_same_entry, cli_process

    root = tmp_path / "data"
    make_npz(root / f"{FLAG}.npz", n=(8, 2, 2), n_classes=2, volumes=True)  # 1,008 slices

    def args(cache):
        return cli_process(
            *["--backbone", "vit_tiny", "--no-pretrained", "--img-size", "112", "--dataset"],
            *[FLAG, "--data-root", str(root), "--cache-root", str(cache), "--batch-size", "16"],
        )

    proc = subprocess.Popen(args(tmp_path / "killed"), stderr=subprocess.DEVNULL)
    deadline, sidecars = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None:
        sidecars = list((tmp_path / "killed").rglob("*.progress-0.json"))
        if sidecars and rows_done(sidecars[0]) >= 3 * 16:  # three batches written
            break
        time.sleep(0.02)
    assert proc.poll() is None, "extraction finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(sidecars[0].read_text())["train"]
    for cache in ("killed", "clean"):
        finished = subprocess.run(args(tmp_path / cache), capture_output=True, text=True)
        assert finished.returncode == 0, finished.stderr
    resumed = next((tmp_path / "killed").rglob("*.h5"))
    assert_same_entry(resumed, next((tmp_path / "clean").rglob("*.h5")))
    slices = (8 + 2 + 2) * 84  # every split
    assert read_attrs(resumed)["extraction"]["images"] == slices - sum(b - a for a, b in done)


@pytest.mark.real
@pytest.mark.slow
@needs_shared(SHARED / "data" / f"{FLAG}.npz")
def test_real_adrenalmnist3d_through_a_2d_backbone_s_slices(tmp_path):
    args = ["fit", "--extract", "--backbone", "timm:test_vit", "--no-pretrained"]
    args += ["--img-size", "32", "--dataset", FLAG, "--data-root", str(SHARED / "data")]
    args += ["--cache-root", str(tmp_path / "c"), "--out", str(tmp_path / "r"), "--bootstrap", "0"]
    done = CliRunner().invoke(probe_main, args)
    assert done.exit_code == 0, done.output
    [record] = load_results(tmp_path / "r")
    assert record.metrics["test"]["n"] == 298 and record.config["entry"]["slices"] == "all"
    features, labels = read_split(next((tmp_path / "c").rglob("*.h5")), "train")
    assert features["cls"].shape[0] == len(labels) == 1188 * 84


def test_a_users_own_npz_of_volumes(tmp_path):
    own = make_npz(tmp_path / "mine.npz", n=(6, 4, 4), size=16, n_classes=2, volumes=True)
    spec = get_dataset(str(own), task="binary-class")
    assert spec.volumetric and open_split(spec, "train", root=None).shape == (6, 16, 16, 16)
    args = ["fit", "--dataset", str(own), "--task", "binary-class", "--extract", "--bootstrap"]
    args += ["0", "--backbone", "timm:test_vit", "--no-pretrained", "--img-size", "32"]
    args += ["--cache-root", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    done = CliRunner().invoke(probe_main, [*args, "--slices", "max"])
    assert done.exit_code == 0, done.output
    [record] = load_results(tmp_path / "r")
    assert record.config["slices"] == "max" and record.metrics["test"]["n"] == 4
    flat = make_npz(tmp_path / "flat.npz", n_classes=2)
    assert not get_dataset(str(flat), task="binary-class").volumetric
