"""A 3D entry's slice rows become one row per volume, as a probe run's settings say.

By a fixed aggregation (`cache.slices.slice_features`: mean, max) or by an attention over the
slices learned on train (`probe.attention`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache.key import CacheKey
from cache.slices import AXES, slice_features
from medprobe.data import DatasetSpec
from medprobe.data.npz import member_info
from probe.attention import attention_pool
from probe.settings import FitSettings


def volume_side(npz: Path) -> int:
    """Voxels a side of a 3D data file's volumes (from its header; a user's own may be any)."""
    return member_info(npz, "train_images").shape[1]


def volume_rows(
    splits: dict, key: CacheKey, settings: FitSettings, npz: Path, dspec: DatasetSpec
) -> tuple[dict, dict]:
    """A 3D entry's splits with one row per volume (a 2D entry's unchanged), and how, if learned.

    Returns:
        (split -> (kind -> rows, labels), the learned pooling's choices for the record, or {}).
    """
    if settings.volume is None or key.slices is None:
        return splits, {}
    axes, how = settings.volume
    n_axes, side = len(AXES[key.slices]), volume_side(npz)
    labels = {split: y[:: n_axes * side] for split, (_, y) in splits.items()}
    if how != "attention":
        return {
            split: (
                {
                    kind: slice_features(f, n_axes=n_axes, axes=axes, slices=how, side=side)
                    for kind, f in features.items()
                },
                labels[split],
            )
            for split, (features, _) in splits.items()
        }, {}
    kept = len(AXES[axes])  # the axes pooled: the first, or all three
    cubes = {
        split: {
            kind: features[kind].reshape(-1, n_axes, side, features[kind].shape[-1])[:, :kept]
            for kind in settings.kinds
        }
        for split, (features, _) in splits.items()
    }
    bags = {
        split: (np.concatenate([cube[k] for k in settings.kinds], axis=-1), labels[split])
        for split, cube in cubes.items()
    }
    pooled, chosen = attention_pool(
        bags, cubes, task=dspec.task, n_classes=dspec.n_classes, seed=settings.seed
    )
    return {split: (rows, labels[split]) for split, rows in pooled.items()}, chosen
