"""Real data and real weights (../shared).

The numbers a user would see, within what the issues promise.
"""

from __future__ import annotations

import numpy as np
import pytest

from cache.extract import extract
from cache.options import ExtractOptions
from cache.store import read_split
from medprobe.data.splits import load_split
from probe.fit import fit_probe, select_features
from tests.support import BREASTMNIST, DINOV2_WEIGHTS

pytestmark = [pytest.mark.real, pytest.mark.slow]
TASK = "binary-class"


def logreg_on(path, kinds=("cls", "mean")):
    splits = {}
    for split in ("train", "val", "test"):
        features, labels = read_split(path, split)
        splits[split] = (select_features(features, kinds), labels)
    return fit_probe(
        splits["train"], splits["val"], splits["test"], head="logreg", task=TASK, n_classes=2
    )


def test_float16_storage_costs_at_most_half_a_point(real_dinov2_cache):
    cache, fp16_path = real_dinov2_cache
    fp32_path = extract(
        "dinov2_small",
        "breastmnist",
        data_root=BREASTMNIST.parent,
        cache_root=cache,
        progress=False,
        options=ExtractOptions(weights=DINOV2_WEIGHTS, dtype="float32"),
    ).path
    assert fp32_path != fp16_path
    half, full = logreg_on(fp16_path), logreg_on(fp32_path)
    assert abs(half.test["acc"] - full.test["acc"]) <= 0.005, (half.test["acc"], full.test["acc"])


def test_dinov2_logreg_beats_raw_pixels_and_a_random_vit(real_dinov2_cache, tmp_path):
    cache, path = real_dinov2_cache
    dinov2 = logreg_on(path)

    pixels = {}
    for split in ("train", "val", "test"):
        images, labels = load_split("breastmnist", split, root=BREASTMNIST.parent)
        pixels[split] = (images.reshape(len(images), -1).astype(np.float32) / 255, labels)
    raw = fit_probe(
        pixels["train"], pixels["val"], pixels["test"], head="logreg", task=TASK, n_classes=2
    )

    random_vit = extract(
        "dinov2_small",
        "breastmnist",
        data_root=BREASTMNIST.parent,
        cache_root=tmp_path,
        progress=False,
        options=ExtractOptions(pretrained=False),
    ).path
    random = logreg_on(random_vit)
    for name in ("acc", "auc"):
        assert dinov2.test[name] > raw.test[name], (name, dinov2.test[name], raw.test[name])
        assert dinov2.test[name] > random.test[name], (name, dinov2.test[name], random.test[name])
    for name, fit in (("DINOv2-S", dinov2), ("raw pixels", raw), ("random ViT-S", random)):
        print(f"{name}: test ACC {fit.test['acc']:.3f}, AUC {fit.test['auc']:.3f}")
