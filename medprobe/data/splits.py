"""One split of a dataset file, validated without reading its images: they are read in chunks.

Extraction streams a split through the backbone chunk by chunk, and training on data larger
than memory reads an uncompressed copy a batch at a time (`medprobe.data.disk_copy`), so memory
stays O(batch) whatever the dataset size. Small splits can still be read whole (`SplitFile.load`,
`load_split`).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medprobe.data.files import SPLITS, dataset_path, load_labels, unreadable
from medprobe.data.npz import member_info, read_rows
from medprobe.data.specs import DatasetSpec, get_dataset
from medprobe.data.validate import check_image_shape, check_volume_shape
from medprobe.errors import DataError

CHUNK_BYTES = 32 << 20
DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class SplitFile:
    """A split of an npz.

    Its labels in memory, its images' shape (N, H, W, C), their rows on demand.
    """

    path: Path
    split: str
    shape: tuple[int, ...]  # (N, H, W, C); a 3D dataset's volumes: (N, D, H, W)
    labels: np.ndarray  # (N, L) int64, validated

    @property
    def nbytes(self) -> int:
        """Bytes of the split's images."""
        return int(np.prod(self.shape, dtype=np.int64))

    def chunks(
        self, ranges: list[tuple[int, int]] | None = None, *, chunk: int = 256
    ) -> Generator[tuple[int, int, np.ndarray], None, None]:
        """Yield (start, stop, images (stop - start, H, W, C) uint8) for each of `ranges`.

        `ranges` are sorted; None means every row, `chunk` at a time. The file is read once
        from the front.
        """
        try:
            for start, stop, rows in read_rows(
                self.path, f"{self.split}_images", ranges, chunk=chunk
            ):
                yield start, stop, rows.reshape((stop - start, *self.shape[1:]))
        except DAMAGED as e:
            raise unreadable(self.path, e) from e

    def head(self, n: int) -> np.ndarray:
        """The first `n` images (fewer when the split is smaller)."""
        with contextlib.closing(self.chunks([(0, min(n, self.shape[0]))])) as rows:
            return next(rows)[2]

    @property
    def chunk_rows(self) -> int:
        """Rows in about `CHUNK_BYTES`: how many to read at a time when reading everything."""
        return max(1, CHUNK_BYTES // max(1, self.nbytes // self.shape[0]))

    def load(self) -> np.ndarray:
        """All images (N, H, W, C) uint8, read chunk by chunk into one array."""
        images = np.empty(self.shape, np.uint8)
        for start, stop, rows in self.chunks(chunk=self.chunk_rows):
            images[start:stop] = rows
        return images


def open_split(
    spec: DatasetSpec | str,
    split: str,
    *,
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> SplitFile:
    """Validate one split (labels read and checked, images by their header) without its images."""
    spec = get_dataset(spec) if isinstance(spec, str) else spec
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    path = dataset_path(spec, size=size, root=root, download=download)
    labels = load_labels(path, split, task=spec.task, n_classes=spec.n_classes)
    try:
        member = member_info(path, f"{split}_images")
    except DAMAGED as e:
        raise unreadable(path, e) from e
    check = check_volume_shape if spec.volumetric else check_image_shape
    shape = check(member.shape, member.dtype, where=f"{path.name} {split}")
    if shape[0] != len(labels):
        raise DataError(
            f"{path.name} {split}: {shape[0]} images but {len(labels)} label rows; one row per "
            "image"
        )
    if spec.path is None and shape[1:3] != (size, size):
        raise DataError(
            f"{path.name} {split}: images are {_pixels(shape)}, but {spec.flag} at --size {size} "
            f"has {size} x {size}; give the --size of this file, or put the official "
            f"{spec.filename(size)} there"
        )
    return SplitFile(path, split, shape, labels)


def open_splits(
    spec: DatasetSpec,
    splits,
    *,
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, SplitFile]:
    """`open_split` for each of `splits`, which must share one image shape (H, W, C)."""
    sources = {
        split: open_split(spec, split, size=size, root=root, download=download) for split in splits
    }
    first, *others = sources.values()
    for other in others:
        if other.shape[1:] != first.shape[1:]:
            raise DataError(
                f"{first.path.name}: {first.split} images are {_pixels(first.shape)} but "
                f"{other.split} images are {_pixels(other.shape)}; every split needs the same "
                "image shape"
            )
    return sources


def _pixels(shape: tuple[int, ...]) -> str:
    """(N, H, W, C) -> "H x W" (with " x C" channels when there are several)."""
    return f"{shape[1]} x {shape[2]}" + (f" x {shape[3]}" if shape[3] > 1 else "")


def load_split(
    spec: DatasetSpec | str,
    split: str,
    *,
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels, validated and read whole.

    Images (N, H, W, C) uint8 and labels (N, L) int64, validated by `open_split`.
    """
    source = open_split(spec, split, size=size, root=root, download=download)
    return source.load(), source.labels
