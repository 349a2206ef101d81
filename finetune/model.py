"""Classifiers for fine-tuning: a registry backbone with a fresh head, and what stays frozen."""

from __future__ import annotations

import torch

from finetune.config import parse_freeze


def apply_freeze(model: torch.nn.Module, freeze: str) -> int:
    """Turn off gradients outside the trainable part; returns the number of trainable parameters."""
    blocks_to_train = parse_freeze(freeze)
    if blocks_to_train is not None:
        model.requires_grad_(False)
        trainable = [model.get_classifier()]
        if blocks_to_train:
            trainable += [*_final_norms(model), *_blocks(model)[::-1][:blocks_to_train]]
        for module in trainable:
            module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_mode(model: torch.nn.Module) -> None:
    """model.train(), except frozen layers with parameters (BatchNorm keeps its running stats)."""
    model.train()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.eval()


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The stack of stages a `last:K` counts from: ViT blocks, ResNet layers, else children."""
    if hasattr(model, "blocks"):
        return list(model.blocks)
    layers = [m for name, m in model.named_children() if name.startswith("layer")]
    return layers or list(model.children())[:-1]


def _final_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    modules = (getattr(model, name, None) for name in ("norm", "fc_norm"))
    return [m for m in modules if isinstance(m, torch.nn.Module)]
