"""medprobe.data: specs, npz loading, download on demand, clear errors."""

from __future__ import annotations

import logging
import urllib.error

import numpy as np
import pytest

from medprobe.data import DATASETS, dataset_path, get_dataset
from medprobe.data import files as data_files
from medprobe.data.splits import load_split
from tests.support import BREASTMNIST, make_npz, needs_shared


def test_specs_cover_the_twelve_2d_datasets():
    flat = {flag: spec for flag, spec in DATASETS.items() if not spec.volumetric}
    assert len(flat) == 12 and len(DATASETS) == 18  # and the six 3D ones
    blood, chest, retina = DATASETS["bloodmnist"], DATASETS["chestmnist"], DATASETS["retinamnist"]
    assert (blood.task, blood.n_channels, blood.n_classes) == ("multi-class", 3, 8)
    assert blood.n_samples == {"train": 11959, "val": 1712, "test": 3421}
    assert chest.task == "multi-label, binary-class" and chest.n_classes == 14
    assert retina.task == "ordinal-regression"
    assert all(spec.sizes == (28, 64, 128, 224) for spec in flat.values())
    volumes = [spec for spec in DATASETS.values() if spec.volumetric]
    assert all(spec.sizes == (28, 64) and spec.n_channels == 1 for spec in volumes)
    assert DATASETS["organmnist3d"].n_classes == 11


def test_load_split_gives_uint8_nhwc_and_2d_labels(data_root):
    images, labels = load_split("breastmnist", "train", root=data_root)
    assert images.dtype == np.uint8 and images.shape == (24, 28, 28, 1)
    assert labels.dtype == np.int64 and labels.shape == (24, 1)
    rgb, _ = load_split("bloodmnist", "val", root=data_root)
    assert rgb.shape == (16, 28, 28, 3)


def test_data_root_falls_back_to_env_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path))
    assert data_files.data_root() == tmp_path
    assert data_files.data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("MEDMNIST_ROOT")
    assert data_files.data_root().name == ".medmnist"


def test_size_picks_the_suffixed_file(tmp_path):
    make_npz(tmp_path / "breastmnist_64.npz", size=64, n_classes=2)
    images, _ = load_split("breastmnist", "test", size=64, root=tmp_path)
    assert images.shape[1:] == (64, 64, 1)


def test_custom_npz_needs_a_task_and_then_loads(tmp_path):
    path = make_npz(tmp_path / "mine.npz", n_classes=4)
    with pytest.raises(ValueError, match="--task"):
        get_dataset(str(path))
    spec = get_dataset(str(path), task="multi-class")
    assert spec.flag == "mine" and spec.n_classes == 4
    images, labels = load_split(spec, "train")
    assert images.shape == (24, 28, 28, 1) and labels.max() < 4


def test_unknown_dataset_names_the_valid_ones():
    with pytest.raises(ValueError, match="bloodmnist.*pathmnist|pathmnist.*bloodmnist"):
        get_dataset("bloodmnis")


def test_unsupported_size_names_the_valid_ones(data_root):
    with pytest.raises(ValueError, match=r"\(28, 64, 128, 224\)"):
        load_split("breastmnist", "train", size=32, root=data_root)


def test_npz_missing_a_key_says_which(tmp_path):
    np.savez(tmp_path / "breastmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing train_labels"):
        load_split("breastmnist", "train", root=tmp_path)


def test_missing_file_without_download_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="breastmnist.npz not in .*--download"):
        load_split("breastmnist", "train", root=tmp_path, download=False)


def test_offline_download_names_url_file_and_folder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data_files.urllib.request, "urlopen", refuse)
    with pytest.raises(FileNotFoundError) as info:
        load_split("breastmnist", "train", root=tmp_path)
    message = str(info.value)
    assert "zenodo.org" in message and "breastmnist.npz" in message and str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []


def test_download_checks_md5_and_leaves_nothing_on_mismatch(tmp_path, monkeypatch):
    source = make_npz(tmp_path / "remote" / "breastmnist.npz", n_classes=2)
    root = tmp_path / "root"
    monkeypatch.setattr(data_files, "_url", lambda spec, size: source.as_uri())
    monkeypatch.setattr(data_files, "official_md5", lambda spec, size: "0" * 32)
    with pytest.raises(FileNotFoundError, match="MD5"):
        dataset_path(DATASETS["breastmnist"], root=root)
    assert list(root.iterdir()) == []

    monkeypatch.setattr(data_files, "official_md5", lambda spec, size: data_files.file_md5(source))
    path = dataset_path(DATASETS["breastmnist"], root=root)
    assert path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["breastmnist.npz"]


def test_modified_file_is_used_with_one_warning(data_root, caplog):
    data_files._warned.clear()
    with caplog.at_level(logging.WARNING):
        load_split("breastmnist", "train", root=data_root)
        load_split("breastmnist", "val", root=data_root)
    warnings = [r for r in caplog.records if "differs from the official" in r.message]
    assert len(warnings) == 1


@pytest.mark.real
@needs_shared(BREASTMNIST)
def test_real_breastmnist_loads_with_official_split_sizes():
    sizes = {}
    for split in ("train", "val", "test"):
        images, labels = load_split("breastmnist", split, root=BREASTMNIST.parent)
        assert images.shape[1:] == (28, 28, 1) and set(np.unique(labels)) == {0, 1}
        sizes[split] = len(images)
    assert sizes == DATASETS["breastmnist"].n_samples
