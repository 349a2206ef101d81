"""Shared fixtures: tiny MedMNIST-layout npz files, the real files in ../shared, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

# One thread per test process, and for the processes tests start: on 2 cores a second torch thread
# only contends with the small tests (single tests drop from ~58 s to ~2 s), and numbers do not
# depend on it. `make test-slow` gives the compute-heavy real-data tests every core instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import pytest

from tests.support import BREASTMNIST, DINOV2_WEIGHTS, make_npz


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture(scope="session")
def real_dinov2_cache(tmp_path_factory):
    """Real BreastMNIST through the real DINOv2-S, extracted once per test session (float16)."""
    if not (BREASTMNIST.exists() and DINOV2_WEIGHTS.exists()):
        pytest.skip(
            "needs ../shared/data/breastmnist.npz and ../shared/weights/dinov2_vits14.safetensors"
        )
    from cache.extract import extract
    from cache.options import ExtractOptions

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
