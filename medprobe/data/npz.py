"""Arrays of an npz read as a stream: shape and dtype from the npy header, rows in chunks.

`np.load(path)[key]` decompresses a whole member into memory (13.5 GB for PathMNIST-224's train
images). A zip member decompresses as a stream, so reading it in chunks of rows keeps memory
O(chunk) whatever the dataset size; the bytes are the same, so the arrays are too.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Member:
    """What an npz member's header says: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def row_bytes(self) -> int:
        """Bytes of one image."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of all the images."""
        return self.shape[0] * self.row_bytes


@contextlib.contextmanager
def open_member(path: str | os.PathLike, key: str):
    """Yield (Member, file object positioned at the first row) for `key` of the npz at `path`."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
        yield read_header(f, key), f


def read_header(f, name: str) -> Member:
    """Read an .npy header from `f` (left at the first row).

    C order is required (rows are read as runs of bytes).
    """
    major, _ = np.lib.format.read_magic(f)
    header = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = header(f)
    if fortran and len(shape) > 1:
        raise ValueError(f"{name} is stored in Fortran order; re-save it with numpy.savez")
    return Member(tuple(shape), np.dtype(dtype))


def member_info(path: str | os.PathLike, key: str) -> Member:
    """Shape and dtype of one member, without reading its data."""
    with open_member(path, key) as (member, _):
        return member


def read_rows(
    path: str | os.PathLike,
    key: str,
    ranges: list[tuple[int, int]] | None = None,
    *,
    chunk: int = 256,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, rows) for each [start, stop) of `ranges`, reading the member once.

    `ranges` are sorted and do not overlap; None means every row in chunks of `chunk`. The member is
    read from the front; rows between the ranges are decompressed and dropped.
    """
    with open_member(path, key) as (member, f):
        n = member.shape[0]
        ranges = (
            ranges if ranges is not None else [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        )
        position = 0
        for start, stop in ranges:
            if start < position or stop > n:
                raise ValueError(
                    f"rows [{start}, {stop}) of {key}: ranges must be sorted and within {n}"
                )
            _skip(f, (start - position) * member.row_bytes)
            yield start, stop, _read(f, member, stop - start)
            position = stop


def _read(f, member: Member, rows: int) -> np.ndarray:
    size = rows * member.row_bytes
    buffer = bytearray(size)
    view, filled = memoryview(buffer), 0
    while filled < size:
        got = f.readinto(view[filled:])
        if not got:
            raise EOFError(f"the npz member ends after {filled} of {size} bytes")
        filled += got
    return np.frombuffer(buffer, dtype=member.dtype).reshape((rows, *member.shape[1:]))


def _skip(f, size: int, block: int = 1 << 24) -> None:
    while size > 0:
        got = len(f.read(min(block, size)))
        if not got:
            raise EOFError("the npz member ends early")
        size -= got
