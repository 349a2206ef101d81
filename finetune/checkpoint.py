"""Checkpoints that survive a kill -9, and the training state they carry.

A checkpoint is written to a temporary file and renamed, and read weights-only.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field, fields

import torch
from safetensors.torch import save_file

from medprobe.atomic import atomic_path
from medprobe.errors import UserError


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write `state` (tensors, numbers, strings, lists, dicts) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without unpickling arbitrary objects (`weights_only=True`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise UserError(
            f"checkpoint {path} is damaged ({type(e).__name__}); drop --resume to start the run "
            "over"
        ) from e


def save_weights(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Final weights as safetensors (contiguous CPU copies), atomically."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp))


def copy_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A real copy of a model's weights, not references to the live tensors."""
    return {k: v.detach().clone() for k, v in state_dict.items()}


@dataclass
class TrainState:
    """Where training stands after an epoch: what a checkpoint restores besides the weights."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None

    def improve(self, epoch: int, score: float, model: torch.nn.Module) -> None:
        """Keep a real copy of the weights when `score` beats the best so far (NaN never does)."""
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_state = copy_state(model.state_dict())


def snapshot(state: TrainState, config: dict, model, optimizer, scheduler, generators) -> dict:
    """Everything `restore` needs to continue a run exactly where it stopped."""
    shuffle, augment = generators
    return asdict(state) | {
        "config": config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "shuffle": shuffle.get_state(),
            "augment": augment.get_state(),
        },
    }


def restore(checkpoint: dict, model, optimizer, scheduler, generators) -> TrainState:
    """Load a `snapshot` into the live objects; returns the training state it held."""
    shuffle, augment = generators
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    shuffle.set_state(checkpoint["rng"]["shuffle"])
    augment.set_state(checkpoint["rng"]["augment"])
    return TrainState(**{f.name: checkpoint[f.name] for f in fields(TrainState)})
