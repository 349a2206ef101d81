"""Checks a command makes on its inputs before torch loads, so a typo costs no start-up."""

from __future__ import annotations

import logging

from medprobe.backbones.registry import (
    HF_PREFIX,
    OPEN_CLIP_PREFIX,
    TIMM_PREFIX,
    check_pairing,
    check_weights_file,
    get_backbone,
)
from medprobe.data import get_dataset

log = logging.getLogger(__name__)


def check_inputs(
    *,
    dataset: str,
    size: int,
    task: str | None = None,
    backbone: str | None = None,
    weights: str | None = None,
    training: bool = False,
) -> None:
    """Refuse a misspelled dataset or backbone, or a missing weights file, before torch loads.

    Also a backbone that cannot run on the dataset (`check_pairing`; `training`: for
    `finetune`). Then say which data the command runs on: `--dataset` has a default, and a
    forgotten flag should not run on BloodMNIST without a word.
    """
    spec = get_dataset(dataset, task=task)
    if backbone is not None and not backbone.startswith(TIMM_PREFIX):
        # a timm name is checked by timm, once it is imported
        pairs = dict(volumes=spec.volumetric, training=training)
        check_pairing(get_backbone(backbone), dataset=spec.flag, **pairs)
    if weights is not None:
        folder = bool(backbone and backbone.startswith((HF_PREFIX, OPEN_CLIP_PREFIX)))
        check_weights_file(weights, folder=folder)
    log.info("dataset: %s at %d px%s", spec.flag, size, f" ({spec.path})" if spec.path else "")
