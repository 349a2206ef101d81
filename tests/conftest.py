"""Shared fixtures: tiny MedMNIST-layout npz files, the real files in ../shared, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

from cache.options import ExtractOptions

# One thread per test process, and for the processes tests start: on 2 cores a second torch thread
# only contends with the small tests (single tests drop from ~58 s to ~2 s), and numbers do not
# depend on it. `make test-slow` gives the compute-heavy real-data tests every core instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BREASTMNIST = SHARED / "data" / "breastmnist.npz"
DINOV2_WEIGHTS = SHARED / "weights" / "dinov2_vits14.safetensors"
EFFNET_WEIGHTS = SHARED / "weights" / "tf_efficientnet_lite0.safetensors"


# The smallest fine-tune runs (`TrainConfig` options): timm's test models at 32 px, from scratch, in
# fp32, without augmentation; a test overrides what it is about (`TINY_RESNET | {"augment":
# "basic"}`).
TINY_RESNET = dict(
    model="timm:test_resnet",
    pretrained=False,
    img_size=32,
    batch_size=16,
    precision="fp32",
    augment="none",
)
TINY_VIT = TINY_RESNET | {"model": "timm:test_vit"}

SMOKE_MODELS = ("resnet18", "vit_tiny", "dinov2_small")  # one per family: CNN, ViT, DINOv2


def per_family(names) -> list:
    """Registry names as test parameters: one model per family in every run, the rest `slow`."""
    return [n if n in SMOKE_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in names]


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def make_npz(
    path: Path, *, n=(24, 8, 8), size=28, channels=1, n_classes=3, multi_label=False, seed=0
) -> Path:
    """Write a MedMNIST-layout npz whose labels are learnable from the pixels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, size, size) if channels == 1 else (count, size, size, channels)
        if multi_label:
            labels = rng.integers(0, 2, (count, n_classes))
            level = labels[:, 0] * 120 + 40
        else:
            labels = rng.integers(0, n_classes, (count, 1))
            level = labels[:, 0] * (200 // max(n_classes - 1, 1)) + 20
        noise = rng.integers(0, 30, shape)
        images = level.reshape((-1,) + (1,) * (len(shape) - 1)) + noise
        arrays[f"{split}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.fixture(autouse=True)
def no_quiet_switch(monkeypatch):
    """`-q` sets tqdm's process-wide TQDM_DISABLE (for the CLI's process).

    Each test starts and ends without it, so one test's `-q` does not silence another's bars.
    """
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


@pytest.fixture
def data_root(tmp_path) -> Path:
    """A data root with a tiny grayscale `breastmnist.npz` (binary) and `bloodmnist.npz` (RGB)."""
    root = tmp_path / "data"
    make_npz(root / "breastmnist.npz", n_classes=2)
    make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(40, 16, 16))
    return root


@pytest.fixture
def offline_hub(monkeypatch):
    """Make Hugging Face lookups fail at once, as they do on a machine without internet."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def needs_shared(path: Path):
    return pytest.mark.skipif(
        not path.exists(), reason=f"{path} absent (needs ../shared beside the repo)"
    )


@pytest.fixture(scope="session")
def real_dinov2_cache(tmp_path_factory):
    """Real BreastMNIST through the real DINOv2-S, extracted once per test session (float16)."""
    if not (BREASTMNIST.exists() and DINOV2_WEIGHTS.exists()):
        pytest.skip(
            "needs ../shared/data/breastmnist.npz and ../shared/weights/dinov2_vits14.safetensors"
        )
    from cache.extract import extract

    cache = tmp_path_factory.mktemp("real-cache")
    result = extract(
        "dinov2_small",
        "breastmnist",
        data_root=BREASTMNIST.parent,
        cache_root=cache,
        progress=False,
        options=ExtractOptions(weights=DINOV2_WEIGHTS),
    )
    return cache, result.path
