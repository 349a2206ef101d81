"""On a GPU: data kept on the device, extraction and fine-tuning there, torch.compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cache.extract import extract
from cache.options import ExtractOptions
from cache.store import read_split
from finetune.config import TrainConfig
from finetune.data import place_data
from finetune.train import train
from medprobe.data.splits import load_split
from tests.support import TINY_RESNET

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
TINY = TINY_RESNET | {"augment": "basic"}


def test_small_data_live_on_the_gpu(data_root):
    data = {s: load_split("bloodmnist", s, root=data_root) for s in ("train", "val", "test")}
    placed = place_data(data, torch.device("cuda"))
    assert all(x.is_cuda and y.is_cuda for x, y in placed.values())
    assert not any(x.is_cuda for x, _ in place_data(data, torch.device("cpu")).values())


def test_extraction_on_the_gpu_matches_the_cpu(data_root, tmp_path):
    features = {}
    for device in ("cpu", "cuda"):
        entry = extract(
            "timm:test_vit",
            "bloodmnist",
            data_root=data_root,
            cache_root=tmp_path / device,
            progress=False,
            options=ExtractOptions(
                pretrained=False, precision="fp32", dtype="float32", device=device
            ),
        )
        features[device] = read_split(entry.path, "test")[0]["cls"]
    np.testing.assert_allclose(features["cuda"], features["cpu"], atol=1e-3)


def test_finetune_on_the_gpu_eager_and_compiled(data_root, tmp_path):
    common = dict(dataset="bloodmnist", data_root=str(data_root), epochs=2, **TINY)
    eager = train(TrainConfig(out=str(tmp_path / "eager"), device="cuda", **common))
    compiled = train(
        TrainConfig(out=str(tmp_path / "compiled"), device="cuda", compile=True, **common)
    )
    assert eager.hparams["world_size"] == 1 and eager.timings["train_images_per_s"] > 0
    np.testing.assert_allclose(
        compiled.predictions["test_score"], eager.predictions["test_score"], atol=1e-3
    )
