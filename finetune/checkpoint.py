"""Checkpoints that survive a kill -9: written to a temporary file and renamed, read weights-only."""

from __future__ import annotations

import os
import pickle
import zipfile

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
            f"checkpoint {path} is damaged ({type(e).__name__}); drop --resume to start the run over"
        ) from e


def save_weights(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Final weights as safetensors (contiguous CPU copies), atomically."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp))


def copy_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A real copy of a model's weights, not references to the live tensors."""
    return {k: v.detach().clone() for k, v in state_dict.items()}
