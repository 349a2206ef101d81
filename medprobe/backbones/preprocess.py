"""Batched preprocessing on the model's device.

Uint8 images (B, H, W, C) -> normalized float (B, 3, S, S); volumes (B, D, H, W) -> (B, 1, D, H, W).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from medprobe.backbones.registry import RESIZE_MODES


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that turns stored pixels into model input; part of the cache key."""

    input_size: int
    mean: tuple[float, ...]  # per channel: 3 for images, 1 for volumes
    std: tuple[float, ...]
    resize: str = "bicubic"

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {self.resize!r}; choose one of {RESIZE_MODES}")

    def to_dict(self) -> dict:
        """The settings as a plain dict, for a record."""
        return asdict(self)


def preprocess(images: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Turn a uint8 batch into normalized model input, on whatever device `images` is on.

    Args:
        images: (B, H, W, C) uint8, C = 1 (grayscale, repeated to 3) or 3.
        cfg: input size, resize mode and the backbone's mean/std.

    Returns:
        (B, 3, S, S) float32 with S = cfg.input_size.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 (B, H, W, 1|3), got {images.dtype} {tuple(images.shape)}")
    # Resize the stored channels (one for grayscale), then normalize into 3 channels in one pass:
    # the work at the (large) output size is one interpolation, one clamp and one multiply-add.
    x = images.permute(0, 3, 1, 2).contiguous().float().div_(255.0)  # NCHW: the fast resize kernels
    x = resize(x, cfg.input_size, mode=cfg.resize)
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1)
    return torch.addcmul(-mean / std, x, 1.0 / std)


def preprocess_volumes(volumes: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Turn a uint8 batch of volumes (B, D, H, W) into normalized input (B, 1, D, H, W).

    At the volumes' own side: networks for volumes are trained at the data's size.
    """
    if volumes.dtype != torch.uint8 or volumes.ndim != 4:
        raise ValueError(f"expected uint8 (B, D, H, W), got {volumes.dtype} {tuple(volumes.shape)}")
    x = volumes.unsqueeze(1).float().div_(255.0)
    return x.sub_(cfg.mean[0]).div_(cfg.std[0])


def resize(x: torch.Tensor, size: int, *, mode: str = "bicubic") -> torch.Tensor:
    """Resize (B, C, H, W) floats in [0, 1] to (B, C, size, size).

    `pad` centres the image on a black canvas, as the MedMNIST+ paper does for small inputs.
    """
    height, width = x.shape[-2:]
    if (height, width) == (size, size):
        return x.contiguous()
    if mode == "pad":
        if height > size or width > size:
            raise ValueError(
                f"cannot zero-pad {height}x{width} images to {size}; use a resize mode"
            )
        top, left = (size - height) // 2, (size - width) // 2
        return F.pad(x, (left, size - width - left, top, size - height - top))
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest-exact")
    out = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)  # bicubic overshoots the pixel range at sharp edges
