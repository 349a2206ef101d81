"""What tests share besides fixtures: the real files in ../shared, tiny models, tiny npz files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
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

# Two processes on this machine, as the distributed tests start them (then `-m <program> ...`).
TORCHRUN_2 = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
]
SMOKE_MODELS = ("resnet18", "vit_tiny", "dinov2_small")  # one per family: CNN, ViT, DINOv2


def per_family(names) -> list:
    """Registry names as test parameters: one model per family in every run, the rest `slow`.

    Models whose architecture is on the hub (`hf:`, `open_clip:` entries) are left out: their
    config needs a download (tests/medprobe/test_hf.py and test_openclip.py build tiny ones).
    """
    from medprobe.backbones.registry import BACKBONES

    local = [n for n in names if BACKBONES[n].source == "timm"]
    return [n if n in SMOKE_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in local]


def make_npz(
    path: Path,
    *,
    n=(24, 8, 8),
    size=28,
    channels=1,
    n_classes=3,
    multi_label=False,
    seed=0,
    volumes=False,
) -> Path:
    """Write a MedMNIST-layout npz whose labels are learnable from the pixels (or voxels)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, size, size) if channels == 1 else (count, size, size, channels)
        shape = (count, size, size, size) if volumes else shape
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


def needs_shared(path: Path):
    """Skip a test, with the reason, where ../shared lacks `path`."""
    return pytest.mark.skipif(
        not path.exists(), reason=f"{path} absent (needs ../shared beside the repo)"
    )


def rows_done(sidecar: Path, split: str = "train") -> int:
    """Rows an extraction's progress note says are written (0 while it is being replaced)."""
    import json

    try:
        return sum(stop - start for start, stop in json.loads(sidecar.read_text()).get(split, []))
    except (OSError, ValueError):
        return 0
