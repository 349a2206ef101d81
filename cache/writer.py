"""Atomic, resumable, shardable writes of one cache entry.

The HDF5 structure (every dataset at its final shape, contiguous, allocated up front) is written
once into `{digest}.h5.partial`. After that the file's HDF5 metadata never changes: feature rows are
written straight to their byte offsets, by any process, and each process records the row ranges it
has finished in a small JSON sidecar replaced atomically after every chunk. A kill -9 therefore
loses at most the chunk in flight; the entry is renamed to `{digest}.h5` only when every row is in.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path

import h5py
import numpy as np

from cache import integrity
from cache.files import EntryFiles
from cache.key import CacheKey
from cache.store import CacheError
from medprobe.atomic import DiskError, disk_error


class PartialEntry:
    """An entry under construction. Create (or reopen) it with `open_partial`."""

    def __init__(self, final_path: Path, key: CacheKey):
        self.final_path = final_path
        self.files = EntryFiles(final_path)
        self.path = self.files.partial
        self.key = key
        # (split, kind) -> (offset, row bytes)
        self.offsets: dict[tuple[str, str], tuple[int, int]] = {}
        self.rows: dict[str, int] = {}

    def write(self, split: str, start: int, features: dict[str, np.ndarray]) -> None:
        """Write rows `start:start+len` of every feature kind of `split` in place."""
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for kind, array in features.items():
                offset, row_bytes = self.offsets[split, kind]
                data = np.ascontiguousarray(array, dtype=np.dtype(self.key.dtype).newbyteorder("<"))
                if data.nbytes != len(data) * row_bytes:
                    raise ValueError(
                        f"{kind} rows have {data.shape[1:]} values, expected {row_bytes}"
                    )
                os.pwrite(fd, data.tobytes(), offset + start * row_bytes)
        finally:
            os.close(fd)

    def mark_done(self, split: str, start: int, stop: int, *, rank: int = 0) -> None:
        """Record rows [start, stop) of `split` as written (atomic sidecar replace).

        A range that continues the last one extends it: one process writing in order keeps one
        range per split, so the note stays small however many batches there are (a list of every
        batch made each rewrite O(batches): the whole extraction quadratic).
        """
        note = f"progress-{rank}"
        progress = self.files.read_note(note)
        ranges = progress.setdefault(split, [])
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = stop
        else:
            ranges.append([start, stop])
        self.files.write_note(note, progress)

    def done_ranges(self, split: str) -> list[tuple[int, int]]:
        """Finished row ranges of `split` over every process's sidecar, sorted."""
        ranges = []
        for sidecar in self.files.notes():
            ranges += [tuple(r) for r in json.loads(sidecar.read_text()).get(split, [])]
        return sorted(ranges)

    def todo(self, split: str, batch_size: int) -> list[tuple[int, int]]:
        """Batches (start, stop) still to write: the gaps between done ranges, cut into batches."""
        batches, cursor = [], 0
        for start, stop in [*self.done_ranges(split), (self.rows[split], self.rows[split])]:
            batches += [(b, min(b + batch_size, start)) for b in range(cursor, start, batch_size)]
            cursor = max(cursor, stop)
        return batches

    def finalize(self, attrs: dict) -> Path:
        """Check every row is in, stamp the attributes, rename to the final path, drop sidecars."""
        for split, n in self.rows.items():
            if sum(stop - start for start, stop in self.done_ranges(split)) != n:
                raise RuntimeError(f"{self.path}: {split} is not fully written; cannot finalize")
        with h5py.File(self.path, "r+") as f:
            integrity.stamp(f, self.key.splits)
            for name, value in attrs.items():
                f.attrs[name] = value if isinstance(value, str | int | float) else json.dumps(value)
            f.attrs["complete"] = True
        return self.files.finish()

    def discard(self) -> None:
        """Delete the partial file and its progress sidecars (not a finished entry nor the lock)."""
        self.files.discard()


class BackgroundWriter:
    """A thread that turns features into numpy and writes them while the next batch computes.

    `put` takes (split, start, stop, (features, ready_event_or_None)); an error in the thread is
    raised in the producer at its next `put` or on exit.
    """

    def __init__(self, entry: PartialEntry, rank: int):
        self.entry, self.rank = entry, rank
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def put(self, split, start, stop, features) -> None:
        """Queue the features of rows `start:stop` of `split` for the writer thread."""
        if self.error is not None:
            raise self._failure() from self.error
        self.queue.put((split, start, stop, features))

    def __exit__(self, *exc):
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self._failure() from self.error

    def _failure(self) -> Exception:
        """A full disk or non-finite features are the user's to fix (the entry stays resumable).

        Anything else is a bug.
        """
        if isinstance(self.error, CacheError):
            return CacheError(str(self.error))  # a new exception, chained to the thread's
        if isinstance(self.error, OSError):
            error = disk_error(self.error, self.entry.path)
            if isinstance(error, DiskError):
                return DiskError(str(error))  # a new exception, chained to the thread's
        return RuntimeError("writing the cache failed")

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain so the producer never blocks on a dead writer
            try:
                split, start, stop, (features, ready) = item
                if ready is not None:
                    ready.synchronize()
                arrays = {k: v.numpy() for k, v in features.items()}
                problem = non_finite(arrays, self.entry.key.dtype)
                if problem:
                    raise CacheError(f"{split} images {start}..{stop - 1}: {problem}")
                self.entry.write(split, start, arrays)
                self.entry.mark_done(split, start, stop, rank=self.rank)
            except BaseException as e:  # noqa: BLE001 - re-raised in the producer thread
                self.error = e


def non_finite(features: dict[str, np.ndarray], dtype: str) -> str | None:
    """What is wrong with features that are not all finite numbers, and the fix; None if they are.

    NaN comes from the network (weights holding NaN, or arithmetic that overflowed in fp16); inf
    alone from values beyond what the storage dtype holds.
    """
    if all(np.isfinite(a).all() for a in features.values()):
        return None
    if any(np.isnan(a).any() for a in features.values()):
        return (
            "the backbone's features are NaN: its weights hold NaN (check the --weights file) or "
            "its arithmetic overflowed (with --precision fp16, pass --precision fp32)"
        )
    return f"features overflow {dtype} storage (beyond its largest number); pass --dtype float32"


def open_partial(
    final_path: Path, key: CacheKey, *, labels: dict[str, np.ndarray], dims: dict[str, int]
) -> PartialEntry:
    """Reopen a matching unfinished entry to resume it, or lay out a fresh one.

    Args:
        labels: split -> (N, L) labels, stored at creation.
        dims: feature kind -> feature dimension.
    """
    entry = PartialEntry(final_path, key)
    if not _matches(entry.path, key, labels, dims):
        entry.discard()
        _create_layout(entry.path, key, labels, dims)
    return attach_partial(final_path, key)


def attach_partial(final_path: Path, key: CacheKey) -> PartialEntry:
    """Open an existing partial entry (laid out by this or another process) for writing rows."""
    entry = PartialEntry(final_path, key)
    with h5py.File(entry.path, "r") as f:
        for split in key.splits:
            entry.rows[split] = len(f[split]["labels"])
            for kind in key.features:
                dataset = f[split]["features"][kind]
                row_bytes = dataset.shape[1] * dataset.dtype.itemsize
                entry.offsets[split, kind] = (dataset.id.get_offset(), row_bytes)
    return entry


def _create_layout(
    path: Path, key: CacheKey, labels: dict[str, np.ndarray], dims: dict[str, int]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    # all bytes placed now: writes never touch metadata
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    with h5py.File(path, "w") as f:
        f.attrs["key"] = key.to_json()
        f.attrs["complete"] = False
        integrity.stamp_labels(f, {split: labels[split] for split in key.splits})
        for split in key.splits:
            group = f.create_group(split)
            group.create_dataset("labels", data=labels[split])
            for kind in key.features:
                shape = (len(labels[split]), dims[kind])
                group.create_dataset(f"features/{kind}", shape=shape, dtype=key.dtype, dcpl=dcpl)


def _matches(
    path: Path, key: CacheKey, labels: dict[str, np.ndarray], dims: dict[str, int]
) -> bool:
    """Is there a readable partial file of exactly this key and layout to resume?"""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            if f.attrs["key"] != key.to_json():
                return False
            return all(
                np.array_equal(f[split]["labels"][...], labels[split])
                and f[split]["features"][kind].shape == (len(labels[split]), dims[kind])
                for split in key.splits
                for kind in key.features
            )
    except (OSError, KeyError):
        return False
