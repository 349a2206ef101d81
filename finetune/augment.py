"""On-device augmentation of uint8 batches: random flips and a small random affine, no PIL.

Volumes are flipped only: a 3D affine would resample every voxel of a 28-voxel cube.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

N_DRAWS = 6  # uniform numbers per image: two flips, angle, scale, two shifts


def draw_params(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, N_DRAWS) uniform draws from a CPU generator, for a whole epoch.

    The generator's state is checkpointed, so a resumed run draws the same augmentations. A
    whole epoch is drawn at once and moved to the device once: a copy per batch would make the
    host wait for the GPU at every step.
    """
    return torch.rand(n, N_DRAWS, generator=generator)


def augment(
    images: torch.Tensor,
    draws: torch.Tensor,
    *,
    flips: str,
    max_degrees: float = 10.0,
    max_shift: float = 0.05,
    max_scale: float = 0.05,
) -> torch.Tensor:
    """Flip and slightly transform a batch of images on its device.

    Each image is flipped left-right (h) and/or up-down (v) with p=0.5, as `flips` allows, then
    given a small random affine.

    Args:
        images: (B, H, W, C) uint8 on any device.
        draws: (B, N_DRAWS) uniform [0, 1) numbers on the same device (`draw_params`).
        flips: the mirror images that keep the label (`medprobe.data.FLIPS`): "hv", "h", "v" or
            "none".

    Returns:
        (B, H, W, C) uint8 on the same device.
    """
    x = images.permute(0, 3, 1, 2).float()
    if "h" in flips:
        x = torch.where(draws[:, 0, None, None, None] < 0.5, x.flip(-1), x)
    if "v" in flips:
        x = torch.where(draws[:, 1, None, None, None] < 0.5, x.flip(-2), x)
    angle = (draws[:, 2] * 2 - 1) * math.radians(max_degrees)
    scale = 1 + (draws[:, 3] * 2 - 1) * max_scale
    shift = (draws[:, 4:6] * 2 - 1) * max_shift * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def augment_volumes(volumes: torch.Tensor, draws: torch.Tensor, *, flips: str) -> torch.Tensor:
    """Flip each volume (B, D, H, W) left-right (h: W) and/or up-down (v: H) with p=0.5.

    As `flips` allows, with the same draws as `augment` (`draw_params`); uint8 in and out.
    """
    x = volumes
    if "h" in flips:
        x = torch.where(draws[:, 0, None, None, None] < 0.5, x.flip(-1), x)
    if "v" in flips:
        x = torch.where(draws[:, 1, None, None, None] < 0.5, x.flip(-2), x)
    return x
