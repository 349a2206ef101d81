"""Micro-batches: a batch through the network in parts whose gradients add up to the batch's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from finetune.config import TrainConfig
from finetune.model import CPU_MICRO_BATCH, apply_freeze, micro_batch_size
from finetune.steps import TrainSteps
from finetune.train import train
from medprobe.backbones.factory import create_backbone
from medprobe.data.validate import MULTI_LABEL
from medprobe.errors import UserError
from medprobe.outputs import TaskLoss
from tests.support import TINY_RESNET, TINY_VIT

CPU = torch.device("cpu")


def _one_step(model, pcfg, task_loss, images, labels, micro_batch):
    """The loss and weights after one SGD step of lr 1 (weights move by the clipped gradient)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    steps = TrainSteps(
        net=model,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=task_loss,
        pcfg=pcfg,
        channels_last=False,
        device=CPU,
        precision="fp32",
        flips="none",
        micro_batch=micro_batch,
    )
    loss = steps.step(images, labels, None)
    return float(loss), [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "task, n_out, weight, smoothing",
    [
        # weighted mean: shares by class weight
        ("multi-class", 3, torch.tensor([0.5, 1.0, 4.0]), 0.1),
        ("multi-class", 3, None, 0.0),
        (MULTI_LABEL, 4, torch.tensor([1.0, 2.0, 3.0, 0.5]), 0.0),  # positives' weights
    ],
)
def test_micro_batches_take_the_batchs_step(task, n_out, weight, smoothing):
    torch.manual_seed(0)
    model, pcfg = create_backbone("timm:test_vit", pretrained=False, num_classes=n_out, img_size=32)
    images = torch.randint(0, 256, (10, 28, 28, 1), dtype=torch.uint8)
    if task == MULTI_LABEL:
        labels = torch.randint(0, 2, (10, n_out))
    else:
        # unequal shares per part
        labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 0]).reshape(-1, 1)
    task_loss = TaskLoss(task, smoothing, weight)
    whole_loss, whole = _one_step(copy.deepcopy(model), pcfg, task_loss, images, labels, None)
    parts_loss, parts = _one_step(copy.deepcopy(model), pcfg, task_loss, images, labels, 3)
    assert parts_loss == pytest.approx(whole_loss, rel=1e-5)
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    step, error = (
        torch.cat([p.flatten() for p in whole]) - start,
        torch.cat([p.flatten() for p in parts]) - start,
    )
    assert step.norm() > 1e-2  # the weights moved by the gradient: equal steps mean equal gradients
    assert float((error - step).norm() / step.norm()) < 1e-5
    assert float((error - step).abs().max()) < 1e-4  # float32 sums in another order


def test_micro_batch_defaults_and_refusals():
    vit, _ = create_backbone("timm:test_vit", pretrained=False, num_classes=2, img_size=32)
    resnet, _ = create_backbone("timm:test_resnet", pretrained=False, num_classes=2, img_size=32)
    assert micro_batch_size(vit, None, batch_size=128, device="cpu") == CPU_MICRO_BATCH
    assert micro_batch_size(vit, None, batch_size=16, device="cpu") == 16
    assert micro_batch_size(vit, None, batch_size=128, device="cuda") == 128
    assert micro_batch_size(vit, 8, batch_size=128, device="cuda") == 8
    assert micro_batch_size(vit, 500, batch_size=128, device="cpu") == 128
    # BatchNorm in training mode normalizes by the images of one pass: never split silently ...
    assert micro_batch_size(resnet, None, batch_size=128, device="cpu") == 128
    with pytest.raises(
        UserError, match="--micro-batch 32: this network trains BatchNorm.*--batch-size 32"
    ):
        micro_batch_size(resnet, 32, batch_size=128, device="cpu")
    # ... but frozen BatchNorm layers keep their running statistics, so the head alone may be split.
    apply_freeze(resnet, "backbone")
    assert micro_batch_size(resnet, 32, batch_size=128, device="cpu") == 32


def test_a_micro_batched_run_is_the_same_run(data_root, tmp_path):
    common = dict(dataset="breastmnist", data_root=str(data_root), epochs=2, **TINY_VIT)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), micro_batch=16, **common))
    parts = train(TrainConfig(out=str(tmp_path / "parts"), micro_batch=5, **common))
    assert parts.run_name == whole.run_name  # how it runs, not what it computes
    assert (whole.hparams["micro_batch"], parts.hparams["micro_batch"]) == (16, 5)
    np.testing.assert_allclose(
        parts.predictions["test_score"], whole.predictions["test_score"], atol=1e-4
    )


def test_micro_batch_is_refused_for_a_batch_norm_run(data_root, tmp_path):
    out = tmp_path / "runs"
    cfg = TrainConfig(
        dataset="breastmnist", data_root=str(data_root), out=str(out), micro_batch=4, **TINY_RESNET
    )
    with pytest.raises(UserError, match="trains BatchNorm"):
        train(cfg)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    "options, fix",
    [
        (TINY_VIT | {"micro_batch": 8}, "--micro-batch 4 (the same run in less memory)"),
        (TINY_RESNET, "--batch-size 8 (another run"),
    ],
)
def test_out_of_gpu_memory_names_the_fix(options, fix, data_root, tmp_path, monkeypatch):
    def no_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TrainSteps, "step", no_memory)
    cfg = TrainConfig(dataset="breastmnist", data_root=str(data_root), out=str(tmp_path), **options)
    with pytest.raises(UserError, match="out of GPU memory") as error:
        train(cfg)
    message = str(error.value)
    assert fix in message and "--resume" in message and "\n" not in message
