"""Checksums of a cache entry's arrays: stamped when the entry is finalized, checked on every read.

Each array (`{split}/labels`, `{split}/features/{kind}`) carries the CRC-32 of its stored bytes in
row order. Stamping happens once every row is in, so resumed and sharded extractions get the same
checksum as uninterrupted ones; a read recomputes it over the bytes it loads anyway (a few ms per
100 MB), so a flipped bit is refused instead of fitted.
"""

from __future__ import annotations

import hashlib
import json
import zlib

import h5py
import numpy as np

CHECKSUM = "crc32"
LABELS = "labels_sha256"  # entry attribute: {split: sha256 of its labels as extracted}
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
        dataset.attrs[CHECKSUM] = _scan(_blocks(dataset))[0]


def problem_with(name: str, dataset: h5py.Dataset, values: np.ndarray | None = None) -> str | None:
    """Why an array cannot be trusted (checksum, non-finite features), or None.

    Args:
        values: the array as read, to check without reading it again; None streams it from disk.
    """
    expected = dataset.attrs.get(CHECKSUM)
    if expected is None:
        return f"{name} has no checksum"
    blocks = _blocks(dataset) if values is None else [np.ascontiguousarray(values)]
    crc, finite = _scan(blocks)
    if crc != int(expected):
        return f"{name} does not match its checksum (the file is corrupt)"
    return None if finite else f"{name} holds non-finite values"


def stamp_labels(f: h5py.File, labels: dict[str, np.ndarray]) -> None:
    """Store the sha256 of each split's labels in the entry, once, when it is laid out.

    `verify` can then tell labels edited after extraction even where their CRC was stamped
    again.
    """
    f.attrs[LABELS] = json.dumps(
        {split: _labels_digest(y) for split, y in labels.items()}, sort_keys=True
    )


def labels_problem(f: h5py.File, splits) -> str | None:
    """Why an entry's labels are not the ones it was extracted with, or None.

    None also for entries written before labels were stamped.
    """
    if LABELS not in f.attrs:
        return None
    stamped = json.loads(f.attrs[LABELS])
    for split in splits:
        if stamped.get(split) != _labels_digest(f[split]["labels"][...]):
            return f"{split}/labels are not the labels it was extracted with (edited)"
    return None


def _labels_digest(labels: np.ndarray) -> str:
    labels = np.ascontiguousarray(labels, dtype="<i8")
    return hashlib.sha256(repr(labels.shape).encode() + labels.tobytes()).hexdigest()


def _scan(blocks) -> tuple[int, bool]:
    """The CRC-32 of the blocks' bytes in order, and whether every float among them is finite."""
    crc, finite = 0, True
    for block in blocks:
        crc = zlib.crc32(block, crc)
        finite = finite and (block.dtype.kind != "f" or bool(np.isfinite(block).all()))
    return crc, finite


def _blocks(dataset: h5py.Dataset):
    for start in range(0, len(dataset), BLOCK_ROWS):
        yield np.ascontiguousarray(dataset[start : start + BLOCK_ROWS])
