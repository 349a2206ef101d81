"""The usual notebook pipeline, reimplemented faithfully as the baseline to beat.

Images are decoded one at a time through PIL and timm's eval transform, batched by a DataLoader
(batch 128, 2 workers) and run in fp32 on the GPU when there is one, as the seed notebook does
(model and every batch moved to `cuda`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

BATCH_SIZE = 128
WORKERS = 2
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class PilDataset(torch.utils.data.Dataset):
    """One PIL image per item, transformed on the CPU, as torchvision-style datasets do."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        image = Image.fromarray(
            self.images[i].squeeze(-1) if self.images.shape[-1] == 1 else self.images[i]
        )
        return self.transform(image.convert("RGB")), int(self.labels[i, 0])


def loader(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    input_size: int,
    shuffle=False,
):
    """Timm's eval transform from the model's data config, at the size the model runs at."""
    config = resolve_model_data_config(model) | {"input_size": (3, input_size, input_size)}
    transform = create_transform(**config, is_training=False)
    dataset = PilDataset(images, labels, transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=shuffle,
        num_workers=WORKERS,
        persistent_workers=True,
    )


@torch.no_grad()
def frozen_features(model: torch.nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """One fp32 pass of the frozen backbone over a loader.

    (N, D) pooled features, (N,) labels, on the model's device (`DEVICE`).
    """
    feats, ys = [], []
    for x, y in batches:
        feats.append(model(x.to(DEVICE)))
        ys.append(y.to(DEVICE))
    return torch.cat(feats), torch.cat(ys)
