"""Synthetic MedMNIST-layout data for benchmarks.

BloodMNIST-like images (28 px RGB, 8 classes) and AdrenalMNIST3D-like volumes (28 voxels, binary).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_npz(
    path: Path, *, n_train: int, n_val: int, n_test: int, size: int = 28, seed: int = 0
) -> Path:
    """Noisy RGB images with a faint class-dependent tint: learnable, but not perfectly."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = rng.integers(0, 8, (n, 1))
        tint = (labels * 4).reshape(n, 1, 1, 1)
        images = rng.integers(0, 160, (n, size, size, 3)) + tint
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_volumes(
    path: Path, *, n_train: int, n_val: int, n_test: int, size: int = 28, seed: int = 0
) -> Path:
    """Noisy volumes of two classes, the second a little brighter: learnable, not perfectly."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = rng.integers(0, 2, (n, 1))
        volumes = rng.integers(0, 160, (n, size, size, size)) + (labels * 8).reshape(n, 1, 1, 1)
        arrays[f"{split}_images"] = volumes.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
