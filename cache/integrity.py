"""Checksums of a cache entry's arrays: stamped when the entry is finalized, checked on every read.

Each array (`{split}/labels`, `{split}/features/{kind}`) carries the CRC-32 of its stored bytes in
row order. Stamping happens once every row is in, so resumed and sharded extractions get the same
checksum as uninterrupted ones; a read recomputes it over the bytes it loads anyway (a few ms per
100 MB), so a flipped bit is refused instead of fitted.
"""

from __future__ import annotations

import zlib

import h5py
import numpy as np

CHECKSUM = "crc32"
BLOCK_ROWS = 1 << 15


def arrays(f: h5py.File, splits) -> dict[str, h5py.Dataset]:
    """Every checksummed array of an entry, by its path in the file."""
    found = {}
    for split in splits:
        found[f"{split}/labels"] = f[split]["labels"]
        for kind, dataset in f[split]["features"].items():
            found[f"{split}/features/{kind}"] = dataset
    return found


def stamp(f: h5py.File, splits) -> None:
    """Store each array's checksum in its attributes (the file must be open for writing)."""
    for dataset in arrays(f, splits).values():
        dataset.attrs[CHECKSUM] = _streamed_crc(dataset)


def problem_with(name: str, dataset: h5py.Dataset, values: np.ndarray | None = None) -> str | None:
    """Why an array cannot be trusted (checksum, non-finite features), or None.

    Args:
        values: the array as read, to check without reading it again; None streams it from disk.
    """
    expected = dataset.attrs.get(CHECKSUM)
    if expected is None:
        return f"{name} has no checksum"
    actual = _streamed_crc(dataset) if values is None else zlib.crc32(np.ascontiguousarray(values))
    if actual != int(expected):
        return f"{name} does not match its checksum (the file is corrupt)"
    if values is not None and values.dtype.kind == "f" and not np.isfinite(values).all():
        return f"{name} holds non-finite values"
    return None


def _streamed_crc(dataset: h5py.Dataset) -> int:
    crc = 0
    for start in range(0, len(dataset), BLOCK_ROWS):
        crc = zlib.crc32(np.ascontiguousarray(dataset[start : start + BLOCK_ROWS]), crc)
    return crc
