"""A split of volumes seen as a split of 2D slices, so a 2D backbone extracts them as images.

A 3D dataset's volume (D, H, W), a cube of S voxels a side, is cut along each asked axis into S
slices of S x S. Slices are rows in volume-major order: volume v, axis a (the a-th of the asked
axes), slice i is row (v * A + a) * S + i. Extraction then runs unchanged (batches of slices of
many volumes together, resumable by row); `probe fit` reshapes the rows back to (volume, axis,
slice) and aggregates (`slice_features`). Memory stays O(batch + one volume): the volume file is
read once from the front, and a volume two batches share is kept until both are done.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from medprobe.data.splits import SplitFile
from medprobe.errors import UserError

AXES = {"first": (0,), "all": (0, 1, 2)}  # the volume's array axes whose slices are extracted
AGGREGATIONS = ("mean", "max", "mean+max")
LEARNED = ("attention",)  # aggregations learned on train when fitting (`probe.attention`)


@dataclass(frozen=True)
class SliceView:
    """The slices of a split of volumes, with the interface of a `SplitFile` of images."""

    volumes: SplitFile
    axes: tuple[int, ...]

    @property
    def side(self) -> int:
        """S: slices per axis, and the side of each slice."""
        return self.volumes.shape[1]

    @property
    def per_volume(self) -> int:
        """Rows of one volume: A axes x S slices."""
        return len(self.axes) * self.side

    @property
    def split(self) -> str:
        """The split's name."""
        return self.volumes.split

    @property
    def shape(self) -> tuple[int, ...]:
        """(N x A x S, S, S, 1): the slices as grayscale images."""
        return (self.volumes.shape[0] * self.per_volume, self.side, self.side, 1)

    @property
    def labels(self) -> np.ndarray:
        """Each slice's row: its volume's labels."""
        return np.repeat(self.volumes.labels, self.per_volume, axis=0)

    @property
    def nbytes(self) -> int:
        """Bytes of all the slices."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def chunk_rows(self) -> int:
        """Slices of the volumes in one of the volume file's chunks."""
        return self.volumes.chunk_rows * self.per_volume

    def cut(self, volume: np.ndarray) -> np.ndarray:
        """One volume (S, S, S) -> its rows (A x S, S, S, 1), axis by axis."""
        return np.concatenate([np.moveaxis(volume, axis, 0) for axis in self.axes])[..., None]

    def chunks(
        self, ranges: list[tuple[int, int]] | None = None, *, chunk: int = 256
    ) -> Generator[tuple[int, int, np.ndarray], None, None]:
        """Yield (start, stop, slices (stop - start, S, S, 1) uint8) for each of `ranges`."""
        per = self.per_volume
        if ranges is None:
            ranges = [(i, min(i + chunk, self.shape[0])) for i in range(0, self.shape[0], chunk)]
        reads, done = [], 0  # the volumes each range reads first: disjoint, in file order
        for start, stop in ranges:
            first, end = max(start // per, done), -(-stop // per)
            reads.append((first, end))
            done = max(done, end)
        file = self.volumes.chunks([r for r in reads if r[1] > r[0]])
        held: dict[int, np.ndarray] = {}  # volume -> its rows, until no later range needs it
        for (start, stop), (first, end) in zip(ranges, reads, strict=True):
            if end > first:
                _, _, volumes = next(file)
                held |= {first + i: self.cut(v) for i, v in enumerate(volumes)}
            v0 = start // per
            rows = np.concatenate([held[v] for v in range(v0, -(-stop // per))])
            yield start, stop, rows[start - v0 * per : stop - v0 * per]
            for v in [v for v in held if v < stop // per]:
                del held[v]

    def head(self, n: int) -> np.ndarray:
        """The first `n` slices."""
        return next(self.chunks([(0, min(n, self.shape[0]))]))[2]

    def load(self) -> np.ndarray:
        """All slices, read whole."""
        return np.concatenate([rows for _, _, rows in self.chunks(chunk=self.chunk_rows)])


def slice_features(
    rows: np.ndarray, *, n_axes: int, axes: str, slices: str, side: int
) -> np.ndarray:
    """Per-slice features (N x A x S, D) -> one row per volume (N, D') as `axes` and `slices` say.

    Args:
        n_axes: A, the axes the entry holds (1: the first; 3: all).
        axes: "first" (the first array axis) or "all" (each axis aggregated, then concatenated).
        slices: "mean", "max" or "mean+max" (both, concatenated) over an axis's slices.
    """
    if axes not in AXES or slices not in AGGREGATIONS:
        raise UserError(
            f"--axes {axes} --slices {slices}: choose --axes from {', '.join(AXES)} and --slices "
            f"from {', '.join(AGGREGATIONS)}"
        )
    if len(AXES[axes]) > n_axes:
        raise UserError(
            f"--axes {axes}: the entry holds the slices of the first axis only; extract it again "
            "with --axes all"
        )
    per_volume = rows.reshape(-1, n_axes, side, rows.shape[-1])[:, : len(AXES[axes])]
    parts = []
    if slices in ("mean", "mean+max"):
        parts.append(per_volume.astype(np.float32).mean(axis=2))
    if slices in ("max", "mean+max"):
        parts.append(per_volume.max(axis=2).astype(np.float32))
    pooled = np.concatenate(parts, axis=-1)  # (N, axes, D x aggregations)
    return pooled.reshape(len(pooled), -1)
