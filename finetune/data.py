"""Where a run's images live: in memory, or on disk in an uncompressed copy read a batch at a time.

`auto` keeps the three splits in memory when they take at most half of the available memory (the
common 28 px case) and reads them from disk otherwise (PathMNIST-224 is 16 GB), so memory stays
O(batch). A batch from disk is read in row order, for locality, and handed over in the order
asked, so both modes train on the same bytes in the same order and give the same numbers.
"""

from __future__ import annotations

import logging

import torch

from medprobe.data import SPLITS, DatasetSpec, file_md5
from medprobe.data.disk_copy import NpyRows, available_memory, disk_images
from medprobe.data.splits import CHUNK_BYTES, open_splits
from medprobe.device import fits_on
from medprobe.errors import DataError

log = logging.getLogger(__name__)

MEMORY_SHARE = 0.5  # `auto` keeps data in memory up to this share of the available memory


def training_data(dspec: DatasetSpec, *, size: int, root, mode: str, cache_root) -> dict:
    """Each split's images (N, H, W, C) uint8 and labels (N, L) int64, by split name.

    The images are in memory or on disk (`NpyRows`), as `mode` says.
    """
    sources = open_splits(dspec, SPLITS, size=size, root=root)
    total, free = sum(s.nbytes for s in sources.values()), available_memory()
    if mode == "auto":
        mode = "memory" if free is None or total <= MEMORY_SHARE * free else "disk"
        log.debug("data: %.2f GB of images, %s", total / 1e9, mode)
    if mode == "memory":
        if free is not None and total > free:
            raise DataError(
                f"{sources['train'].path.name}: its images take {total / 1e9:.1f} GB and "
                f"{free / 1e9:.1f} GB of memory is available; use --data-mode disk (or auto)"
            )
        return {split: (source.load(), source.labels) for split, source in sources.items()}
    md5 = file_md5(sources["train"].path)
    return {
        split: (disk_images(source.path, split, md5=md5, root=cache_root), source.labels)
        for split, source in sources.items()
    }


class DiskImages:
    """Images on disk indexed like a tensor on the host: `images[idx]` is the batch of `idx`."""

    device = torch.device("cpu")

    def __init__(self, rows: NpyRows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.rows[idx.cpu().numpy()])


def place_data(data: dict, device: torch.device) -> dict:
    """Each split's (images, labels) as tensors.

    On the GPU when they fit there (`fits_on`), so a step gathers its batch in place (no copy, no
    host wait); else on the host (images on disk stay there), copied per batch.
    """
    size = sum(x.nbytes + y.nbytes for x, y in data.values())
    if fits_on(device, size):
        return {
            s: (_upload(x, device), torch.from_numpy(y).to(device)) for s, (x, y) in data.items()
        }
    return {
        s: (DiskImages(x) if isinstance(x, NpyRows) else torch.from_numpy(x), torch.from_numpy(y))
        for s, (x, y) in data.items()
    }


def _upload(images, device: torch.device) -> torch.Tensor:
    """Copy images to the device a chunk at a time (images on disk never land whole in memory)."""
    if not isinstance(images, NpyRows):
        return torch.from_numpy(images).to(device)
    out = torch.empty(images.shape, dtype=torch.uint8, device=device)
    chunk = max(1, CHUNK_BYTES // images.row_bytes)
    for start in range(0, len(images), chunk):
        out[start : start + chunk] = torch.from_numpy(
            images.read(start, min(start + chunk, len(images)))
        )
    return out
