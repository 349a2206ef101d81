"""Data larger than memory (issue #13): streamed extraction, memory-mapped training, flat memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cache.extract import extract
from cache.forward import FeatureRunner
from cache.options import ExtractOptions
from cache.store import read_split
from finetune.cli import main as finetune_main
from finetune.config import TrainConfig
from finetune.train import train
from medprobe.backbones.factory import create_backbone, preprocess_config
from medprobe.backbones.registry import get_backbone
from medprobe.data import disk_copy, file_md5, get_dataset
from medprobe.data.disk_copy import disk_images
from medprobe.data.splits import load_split, open_split
from tests.support import TINY_RESNET, make_npz

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_streamed_split_equals_np_load_bitwise(tmp_path, save):
    rng = np.random.default_rng(0)
    arrays = {
        f"{s}_images": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for s, n in [("train", 37), ("val", 5), ("test", 6)]
    }
    arrays |= {
        f"{s}_labels": rng.integers(0, 3, (len(arrays[f"{s}_images"]), 1))
        for s in ("train", "val", "test")
    }
    path = tmp_path / "own.npz"
    save(path, **arrays)
    spec = get_dataset(str(path), task="multi-class")
    source = open_split(spec, "train")
    images, labels = load_split(spec, "train")
    assert source.shape == images.shape == (37, 28, 28, 1)
    assert np.array_equal(np.concatenate([rows for _, _, rows in source.chunks(chunk=8)]), images)
    assert np.array_equal(source.load(), images) and np.array_equal(source.labels, labels)
    parts = list(source.chunks([(3, 9), (20, 37)]))
    assert [(a, b) for a, b, _ in parts] == [(3, 9), (20, 37)]
    assert np.array_equal(parts[1][2], images[20:37])


def test_streamed_extraction_equals_the_in_memory_path_bitwise(data_root, tmp_path):
    """Streamed extraction writes exactly the features of the split loaded whole.

    The same batches as extraction made before it streamed.
    """
    result = extract(
        "timm:test_vit",
        "bloodmnist",
        data_root=data_root,
        cache_root=tmp_path,
        progress=False,
        options=ExtractOptions(
            pretrained=False, img_size=32, batch_size=7, precision="fp32", dtype="float32"
        ),
    )
    spec = get_backbone("timm:test_vit")
    model, _ = create_backbone(spec, pretrained=False, img_size=32)
    run = FeatureRunner(
        model, preprocess_config(spec, img_size=32), spec.family, torch.device("cpu"), "fp32"
    )
    for split in ("train", "val", "test"):
        # the whole split in memory
        images, labels = load_split("bloodmnist", split, root=data_root)
        batches = [run(torch.from_numpy(images[i : i + 7])) for i in range(0, len(images), 7)]
        features, cached_labels = read_split(result.path, split)
        assert np.array_equal(cached_labels, labels)
        for kind in batches[0]:
            assert np.array_equal(features[kind], torch.cat([b[kind] for b in batches]).numpy())


def test_disk_copy_equals_the_npz_and_is_keyed_by_content(data_root, tmp_path):
    npz = data_root / "bloodmnist.npz"
    mapped = disk_images(npz, "train", md5=file_md5(npz), root=tmp_path)
    images, _ = load_split("bloodmnist", "train", root=data_root)
    assert np.array_equal(mapped.read(0, len(mapped)), images)
    order = np.array([7, 3, 4, 5, 39, 0])
    assert np.array_equal(mapped[order], images[order])  # gathered in row order, returned as asked
    assert list((tmp_path / "npy").iterdir()) == [tmp_path / "npy" / file_md5(npz)]
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob("*.progress.json"))


def test_disk_copy_resumes_after_a_crash(data_root, tmp_path, monkeypatch, caplog):
    npz = data_root / "bloodmnist.npz"
    real_read = disk_copy.read_rows

    def crashing(*args, **kwargs):
        for number, chunk in enumerate(real_read(*args, **kwargs)):
            if number == 2:
                raise KeyboardInterrupt  # stands in for a kill: nothing is cleaned up
            yield chunk

    monkeypatch.setattr(disk_copy, "FLUSH_BYTES", 1)  # every chunk reaches the disk and the sidecar
    monkeypatch.setattr(disk_copy, "read_rows", crashing)
    with pytest.raises(KeyboardInterrupt):
        disk_images(npz, "train", md5=file_md5(npz), root=tmp_path, chunk=8)
    [sidecar] = tmp_path.rglob("*.progress.json")
    assert json.loads(sidecar.read_text()) == {"rows": 16}

    monkeypatch.setattr(disk_copy, "read_rows", real_read)
    with caplog.at_level("INFO", logger="medprobe.data.disk_copy"):
        mapped = disk_images(npz, "train", md5=file_md5(npz), root=tmp_path, chunk=8)
    assert "after 16 of 40 rows" in caplog.text
    assert np.array_equal(
        mapped.read(0, len(mapped)), load_split("bloodmnist", "train", root=data_root)[0]
    )


@pytest.mark.slow
def test_disk_copy_resumes_after_kill_9(tmp_path):
    npz = make_npz(
        tmp_path / "data" / "bloodmnist_64.npz", channels=3, n_classes=8, n=(3000, 16, 16), size=64
    )
    child = textwrap.dedent(
        f"""
        import time
        from medprobe.data import disk_copy
        real = disk_copy.read_rows
        def slow(*args, **kwargs):
            for chunk in real(*args, **kwargs):
                time.sleep(0.05)
                yield chunk
        disk_copy.read_rows, disk_copy.FLUSH_BYTES = slow, 1
        disk_copy.disk_images({str(npz)!r}, "train", md5="m", root={str(tmp_path)!r}, chunk=100)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT)
    sidecar = tmp_path / "npy" / "m" / "train_images.npy.partial.progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not sidecar.exists():
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(sidecar.read_text())["rows"]
    assert 0 < done < 3000
    mapped = disk_images(npz, "train", md5="m", root=tmp_path, chunk=100)
    images = load_split("bloodmnist", "train", size=64, root=npz.parent)[0]
    assert np.array_equal(mapped.read(0, len(mapped)), images)


def test_finetune_from_the_disk_copy_equals_finetune_from_memory(data_root, tmp_path):
    data = dict(dataset="bloodmnist", data_root=str(data_root), cache_root=str(tmp_path / "cache"))
    common = dict(**data, epochs=2, **TINY_RESNET | {"batch_size": 8, "augment": "basic"})
    memory = train(TrainConfig(**common, data_mode="memory", out=str(tmp_path / "a")))
    mapped = train(TrainConfig(**common, data_mode="disk", out=str(tmp_path / "b")))
    assert list((tmp_path / "cache" / "npy").rglob("*.npy"))  # it did train from the copy
    assert mapped.run_name == memory.run_name  # where the data live is not what the run is
    assert np.array_equal(mapped.predictions["test_score"], memory.predictions["test_score"])
    assert mapped.metrics["test"] == memory.metrics["test"]


def test_auto_reads_from_disk_when_it_would_take_over_half_the_memory(
    data_root, tmp_path, monkeypatch
):
    # ~ the images
    monkeypatch.setattr("finetune.data.available_memory", lambda: 2 * 40 * 28 * 28 * 3)
    data = dict(dataset="bloodmnist", data_root=str(data_root), cache_root=str(tmp_path / "cache"))
    cfg = TrainConfig(**data, epochs=1, out=str(tmp_path / "runs"), **TINY_RESNET)
    train(cfg)
    assert len(list((tmp_path / "cache" / "npy").rglob("*_images.npy"))) == 3


def test_data_that_cannot_fit_in_memory_is_one_clear_line(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr("finetune.data.available_memory", lambda: 1000)
    args = [
        "run",
        "--model",
        "timm:test_resnet",
        "--no-pretrained",
        "--img-size",
        "32",
        "--data-mode",
        "memory",
        "--dataset",
        "bloodmnist",
        "--data-root",
        str(data_root),
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(finetune_main, args)
    assert result.exit_code == 1
    assert "GB of memory is available; use --data-mode disk" in result.output
    assert len(result.output.strip().splitlines()) == 1


PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def _big_npz(path: Path, n_train: int) -> None:
    """A compressed MedMNIST-layout npz of 224 px RGB images, made without int64 temporaries."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_train // 4), ("test", n_train // 4)):
        labels = rng.integers(0, 8, (n, 1))
        images = rng.integers(0, 30, (n, 224, 224, 3), dtype=np.uint8)
        images += (labels * 25).astype(np.uint8)[:, :, None, None]
        arrays |= {f"{split}_images": images, f"{split}_labels": labels.astype(np.uint8)}
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, **arrays)


def _peak_rss(args: list[str], cwd: Path) -> int:
    """Peak resident memory (bytes) of one whole CLI process."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    """224 px data of ~30 MB and ~300 MB: extraction and memory-mapped training peak in 150 MB."""
    peaks = {}
    # 150,528 bytes an image: ~30 MB, ~300 MB in all
    for name, n in (("small", 160), ("large", 1600)):
        root = tmp_path / name
        _big_npz(root / "bloodmnist_224.npz", n)
        common = ["--dataset", "bloodmnist", "--size", "224", "--data-root", str(root)]
        common += ["--cache-root", str(root / "cache")]
        extract_args = [
            "-m",
            "probe",
            "extract",
            "--backbone",
            "timm:test_vit",
            "--no-pretrained",
            "--img-size",
            "32",
            "--precision",
            "fp32",
            *common,
        ]
        train_args = [
            "-m",
            "finetune",
            "run",
            "--model",
            "timm:test_resnet",
            "--no-pretrained",
            "--img-size",
            "32",
            "--epochs",
            "1",
            "--data-mode",
            "disk",
            "--out",
            str(root / "runs"),
            *common,
        ]
        peaks[name] = (
            _peak_rss([sys.executable, *extract_args], ROOT),
            _peak_rss([sys.executable, *train_args], ROOT),
        )
    growth = [large - small for small, large in zip(peaks["small"], peaks["large"], strict=True)]
    assert max(growth) < 150e6, peaks
