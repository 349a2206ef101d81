"""What a run trains with, built from its configuration.

The network (its head random or set by a `HeadInit`), the loss (class-weighted when asked) and the
optimizer with its schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import timm.optim
import torch

from finetune.config import TrainConfig
from finetune.steps import warmup_cosine
from medprobe.backbones.factory import create_backbone
from medprobe.backbones.registry import BackboneSpec
from medprobe.data import DatasetSpec
from medprobe.errors import UserError
from medprobe.outputs import TaskLoss, class_weights

# Sets a model's classifier before training (`--init-head probe`: `suite.lpft.probe_head`) and says
# how, for the record: (config, model, its preprocessing, the input size asked for) -> info.
HeadInit = Callable[..., dict]


def build_model(
    cfg: TrainConfig,
    spec: BackboneSpec,
    dspec: DatasetSpec,
    init_head: HeadInit | None,
    *,
    side: int | None = None,
):
    """The classifier, its preprocessing, and how its head started ({} for a random head).

    `side`: the volumes' side, for a network for volumes (default: the dataset's size).
    """
    assert cfg.pretrained is not None and cfg.drop_path is not None, "TrainConfig resolves them"
    # A CNN trained from scratch runs at the dataset's own size; pretrained models at their native
    # one; a network for volumes at the volumes' side.
    img_size = cfg.img_size or (cfg.size if spec.family == "cnn" and not cfg.pretrained else None)
    if spec.volumetric:
        side = side or cfg.size
        if cfg.img_size not in (None, side):
            raise UserError(
                f"--img-size {cfg.img_size}: {spec.name} runs at the volumes' own side ({side}); "
                "drop --img-size"
            )
        img_size = side
    model, pcfg = create_backbone(
        spec,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        img_size=img_size,
        num_classes=dspec.n_classes,
        init_seed=cfg.seed,
        drop_path=cfg.drop_path,
    )
    if cfg.init_head == "random":
        return model, pcfg, {}
    assert init_head is not None, "train() refuses a run without its head initializer"
    head_init = init_head(cfg, model, pcfg=pcfg, img_size=img_size)
    return model, pcfg, head_init


def build_loss(
    cfg: TrainConfig, dspec: DatasetSpec, train_labels: np.ndarray, device: torch.device
) -> TaskLoss:
    """The task's loss, weighted by inverse class frequency in train if asked (`class_weights`)."""
    weight = None
    if cfg.class_weights == "balanced":
        weight = class_weights(train_labels, dspec.task, dspec.n_classes).to(device)
    return TaskLoss(dspec.task, cfg.label_smoothing, weight)


def build_optimizer(cfg: TrainConfig, model, device, steps_per_epoch: int):
    """AdamW (layer-wise lr decay if asked) and its warmup-then-cosine schedule, per batch."""
    assert cfg.lr is not None and cfg.weight_decay is not None and cfg.warmup is not None, (
        "TrainConfig resolves them"
    )
    optimizer = timm.optim.create_optimizer_v2(
        model,
        "adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        layer_decay=cfg.layer_decay,
        fused=device.type == "cuda",  # one kernel for the whole update instead of one per op
    )
    # timm's layer decay leaves each group an `lr_scale` that only timm's own schedulers apply;
    # under a torch scheduler it must be in the group's lr, or every layer trains at the full lr.
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * group.get("lr_scale", 1.0)
    schedule = warmup_cosine(cfg.epochs * steps_per_epoch, round(cfg.warmup * steps_per_epoch))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
