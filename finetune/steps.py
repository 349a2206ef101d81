"""How batches run.

Data placed once, one optimizer step per batch, predictions gathered across ranks.

Data stay uint8 tensors; augmentation, resizing and normalization happen on the device. A batch
may go through the network in micro-batches whose gradients add up to the batch's: less memory,
the same step.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from finetune.augment import augment, augment_volumes
from finetune.model import train_mode
from medprobe.backbones.preprocess import PreprocessConfig, preprocess, preprocess_volumes
from medprobe.device import autocast
from medprobe.outputs import TaskLoss
from medprobe.progress import progress_bar


@dataclass(kw_only=True)
class TrainSteps:
    """What every training step uses, built once per run.

    The network as stepped (DDP-wrapped and/or compiled), the bare model, optimizer, schedule, loss
    and how pixels become input.
    """

    net: Any  # the network as stepped: the model, DDP-wrapped and/or compiled
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: TaskLoss
    pcfg: PreprocessConfig
    channels_last: bool
    device: torch.device
    precision: str
    flips: str  # the mirror images augmentation may draw (`medprobe.data.FLIPS`)
    micro_batch: int | None = None  # images per forward and backward pass; None: the whole batch
    volumes: bool = False  # the rows are volumes (B, D, H, W) for a network for volumes
    # of the last epoch, on the CPU
    step_losses: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    def epoch(
        self,
        images,
        labels,
        order,
        draws,
        *,
        batch_size: int,
        progress: bool | None = False,
        desc: str = "",
    ) -> tuple[float, int]:
        """One pass over `order` (this rank's shuffled rows) in batches.

        Returns (mean loss, images).

        Step losses stay on the device and are read once at the end (`step_losses`, for a tracker),
        so no step waits for the GPU.
        `progress`: a bar of images, images/s and ETA within the epoch (None: when stderr is a
            terminal).
        """
        train_mode(self.net)
        order = order.to(images.device)
        draws = draws.to(self.device) if draws is not None else None
        losses, sizes = [], []
        with progress_bar(
            show=progress, total=len(order), unit="img", desc=desc, leave=False
        ) as bar:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch_draws = draws[start : start + batch_size] if draws is not None else None
                losses.append(
                    self.step(images[idx].to(self.device), labels[idx].to(self.device), batch_draws)
                )
                sizes.append(len(idx))
                bar.update(len(idx))
        # one wait
        self.step_losses = torch.stack(losses).float().cpu() if losses else torch.zeros(0)
        return float((self.step_losses * torch.tensor(sizes)).sum()) / max(len(order), 1), len(
            order
        )

    def step(
        self, images: torch.Tensor, labels: torch.Tensor, draws: torch.Tensor | None
    ) -> torch.Tensor:
        """One optimizer step on a uint8 batch; returns the loss, still on the device.

        Each micro-batch's loss is scaled by its share of the batch's loss total, so the gradients
        add up to the whole batch's (ranks synchronise on the last micro-batch only).
        """
        if draws is not None:
            images = (augment_volumes if self.volumes else augment)(images, draws, flips=self.flips)
        self.optimizer.zero_grad(set_to_none=True)
        size = self.micro_batch or len(images)
        parts = list(zip(images.split(size), labels.split(size), strict=True))
        total = self.loss_fn.total(labels) if len(parts) > 1 else None  # whole batches skip it
        loss = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(parts):
            no_sync = getattr(self.net, "no_sync", None) if i < len(parts) - 1 else None
            with no_sync() if no_sync else contextlib.nullcontext():
                with autocast(self.device, self.precision):
                    logits = self.net(self.to_input(x))
                part = self.loss_fn(logits.float(), y)
                if len(parts) > 1:
                    assert total is not None, "micro-batches share the batch's total"
                    part = part * (self.loss_fn.total(y) / total)
                part.backward()
            loss += part.detach()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss

    @torch.inference_mode()
    def predict(
        self, images: torch.Tensor, *, rank: int, world: int, batch_size: int = 256
    ) -> np.ndarray:
        """Logits (N, n_out) of the bare model for all images.

        Each rank does its shard, gathered in order on every rank.
        """
        self.model.eval()
        rows = torch.arange(rank, len(images), world)
        out = []
        for idx in rows.split(batch_size):
            with autocast(self.device, self.precision):
                out.append(self.model(self.to_input(images[idx].to(self.device))).float())
        # one copy, one wait
        logits = torch.cat(out).cpu().numpy() if out else np.zeros((0, 0), np.float32)
        return logits if world == 1 else _gather_rows(rows.numpy(), logits, len(images), world)

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 batch on the device -> the network's input (`to_input`, or volumes')."""
        if self.volumes:
            return preprocess_volumes(batch, self.pcfg)
        return to_input(batch, self.pcfg, self.channels_last)


def to_input(images: torch.Tensor, pcfg, channels_last: bool) -> torch.Tensor:
    """uint8 (B, H, W[, C]) on the device -> the network's normalized float input."""
    x = preprocess(images, pcfg)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Learning-rate factor per step: linear warmup to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _gather_rows(rows: np.ndarray, logits: np.ndarray, n: int, world: int) -> np.ndarray:
    """Every rank's (rows, logits) shard put back in row order, on every rank."""
    shards: list[tuple[np.ndarray, np.ndarray]] = [(rows, logits)] * world
    dist.all_gather_object(shards, (rows, logits))
    full = np.zeros((n, max(s[1].shape[1] for s in shards)), np.float32)
    for shard_rows, shard_logits in shards:
        full[shard_rows] = shard_logits
    return full
