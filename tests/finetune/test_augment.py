"""Augmentation draws only mirror images that keep a dataset's labels, and says which it drew."""

from __future__ import annotations

import torch

from finetune.augment import N_DRAWS, augment
from finetune.config import TrainConfig
from finetune.setup import run_config
from finetune.train import train
from medprobe.backbones.registry import get_backbone
from medprobe.data import DATASETS, get_dataset
from tests.support import TINY_RESNET, make_npz


def test_flips_draw_only_the_mirror_images_allowed():
    images = (torch.arange(2 * 4 * 5 * 3) % 251).to(torch.uint8).reshape(2, 4, 5, 3)
    draws = torch.full((2, N_DRAWS), 0.5)  # the identity affine
    draws[:, :2] = 0.0  # both flips drawn
    left_right, up_down = images.flip(2), images.flip(1)
    assert torch.equal(augment(images, draws, flips="none"), images)
    assert torch.equal(augment(images, draws, flips="h"), left_right)
    assert torch.equal(augment(images, draws, flips="v"), up_down)
    assert torch.equal(augment(images, draws, flips="hv"), left_right.flip(1))


def test_no_dataset_is_mirrored_into_another_class():
    for flag, spec in DATASETS.items():
        sided = any("left" in label or "right" in label for label in spec.labels)
        assert not (sided and "h" in spec.flips), f"{flag}: a mirrored left organ is labelled left"
    assert DATASETS["organamnist"].flips == "none" and DATASETS["pneumoniamnist"].flips == "none"
    assert DATASETS["breastmnist"].flips == "h"  # depth, and what lies below a lesion, stays down
    assert DATASETS["pathmnist"].flips == "hv"


def test_the_record_and_identity_hold_the_flips_drawn(data_root, tmp_path):
    basic = TINY_RESNET | {"augment": "basic"}
    result = train(
        TrainConfig(
            dataset="breastmnist", data_root=str(data_root), epochs=1, out=str(tmp_path), **basic
        )
    )
    assert result.hparams["flips"] == "h" and result.config["flips"] == "h"

    spec, breast = get_backbone(TINY_RESNET["model"]), get_dataset("breastmnist")

    def identity(dspec=breast, **options):
        return run_config(TrainConfig(**basic | options), spec, dspec, data_md5="0" * 32)

    assert identity(flips="auto") == identity(flips="h") != identity(flips="hv")
    assert identity(augment="none")["flips"] == "none"
    own = get_dataset(make_npz(tmp_path / "own.npz", n=(8, 4, 4), n_classes=2), task="binary-class")
    assert identity(own)["flips"] == "none" and identity(own, flips="hv")["flips"] == "hv"
