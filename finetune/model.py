"""Classifiers for fine-tuning: a registry backbone with a fresh head, and what stays frozen."""

from __future__ import annotations

import torch

from finetune.config import parse_freeze
from medprobe.errors import UserError

# On the CPU a pass over more images is no faster per image, only larger (BENCHMARKS.md,
# "Micro-batches": DINOv2-S at 224 px trains a batch of 128 faster and in less than half the memory
# in parts of 32).
CPU_MICRO_BATCH = 32


def apply_freeze(model: torch.nn.Module, freeze: str) -> int:
    """Turn off gradients outside the trainable part; returns the number of trainable parameters."""
    blocks_to_train = parse_freeze(freeze)
    if blocks_to_train is not None:
        blocks = _blocks(model)
        if blocks_to_train > len(blocks):
            raise UserError(
                f"--freeze {freeze}: this network has {len(blocks)} blocks; use last:1 .. "
                f"last:{len(blocks)}, backbone (the head only) or none"
            )
        model.requires_grad_(False)
        trainable = [classifier_of(model)]
        if blocks_to_train:
            trainable += [*_final_norms(model), *blocks[::-1][:blocks_to_train]]
        for module in trainable:
            module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_mode(model: torch.nn.Module) -> None:
    """model.train(), except frozen layers with parameters (BatchNorm keeps its running stats)."""
    model.train()
    for module in model.modules():
        if _frozen(module):
            module.eval()


def _frozen(module: torch.nn.Module) -> bool:
    """A layer with parameters of its own, none of them trained (`train_mode` leaves it in eval)."""
    own = list(module.parameters(recurse=False))
    return bool(own) and not any(p.requires_grad for p in own)


def micro_batch_size(
    model: torch.nn.Module, requested: int | None, *, batch_size: int, device
) -> int:
    """Images per forward and backward pass.

    `requested`, else CPU_MICRO_BATCH on the CPU and the whole batch elsewhere; always the whole
    batch for a network that trains BatchNorm, whose statistics come from the images of one pass.
    """
    batch_norm = trains_batch_norm(model)
    if requested is not None and requested < batch_size and batch_norm:
        raise UserError(
            f"--micro-batch {requested}: this network trains BatchNorm, whose statistics would "
            f"come from {requested} images instead of {batch_size}; use --batch-size {requested} "
            "instead"
        )
    if requested is not None:
        return min(requested, batch_size)
    if torch.device(device).type == "cpu" and not batch_norm:
        return min(CPU_MICRO_BATCH, batch_size)
    return batch_size


def trains_batch_norm(model: torch.nn.Module) -> bool:
    """Whether a BatchNorm layer of `model` normalizes by batch statistics in training.

    Frozen ones stay in eval mode (`train_mode`).
    """
    norms = (m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    return any(not _frozen(m) for m in norms)


def classifier_of(model: torch.nn.Module) -> torch.nn.Module:
    """A timm model's classifier (`get_classifier`)."""
    return getattr(model, "get_classifier")()  # noqa: B009 - timm's, untyped on nn.Module


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The stack of stages a `last:K` counts from: ViT blocks, ResNet layers, else children."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, torch.nn.Module):
        return list(blocks.children())
    layers = [m for name, m in model.named_children() if name.startswith("layer")]
    return layers or list(model.children())[:-1]


def _final_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    modules = (getattr(model, name, None) for name in ("norm", "fc_norm"))
    return [m for m in modules if isinstance(m, torch.nn.Module)]
