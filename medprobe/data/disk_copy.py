"""Uncompressed copies of npz images on disk, read a batch at a time: data larger than memory.

A split's images are converted once, streamed from the npz in chunks, into
`{cache}/npy/{npz md5}/{split}_images.npy`, a `medprobe.atomic.PartialFile`: written into its
`.partial` file allocated up front, with the rows done in a progress note rewritten after each
fsync, so a `kill -9` loses at most one chunk and the next run resumes. The file is renamed into
place only when complete; its lock keeps a second process off the same conversion.

Rows are written and read with positioned reads and writes, not through a memory map: the pages
of a mapped file count toward the process's resident memory as it is read, so an epoch over a
16 GB map looks like 16 GB resident. The page cache still speeds up re-reads, outside the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

import filelock
import numpy as np

from medprobe.atomic import PartialFile, disk_errors
from medprobe.data.files import cache_home
from medprobe.data.npz import member_info, read_header, read_rows
from medprobe.errors import DataError

log = logging.getLogger(__name__)

FLUSH_BYTES = 64 << 20  # rows reach the disk (and the progress note) at least this often
NOTE = "progress"


def disk_images(
    npz: Path, split: str, *, md5: str, root: str | os.PathLike | None = None, chunk: int = 64
) -> NpyRows:
    """The images of `split` as rows of an uncompressed .npy copy, converting them first if needed.

    Args:
        npz: the dataset file; md5: its MD5 (what the copy is keyed by, so a changed file never
            reuses an old copy).
    """
    path = cache_home(root) / "npy" / md5 / f"{split}_images.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        copy = PartialFile(path)
        with filelock.FileLock(copy.lock), disk_errors(copy.partial):
            if not path.exists():
                _convert(npz, f"{split}_images", copy, chunk=chunk)
    return NpyRows(path)


class NpyRows:
    """An uncompressed .npy of images (N, H, W[, C]) uint8, read by rows.

    `images[idx]` returns the rows of `idx` (N, H, W, C) in the order asked, read in row order with
    one read per run of consecutive rows; `images.read(start, stop)` a contiguous range.
    """

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            member = read_header(f, path.name)
            self.offset = f.tell()
        self.dtype, self.row_bytes = member.dtype, member.row_bytes
        self.shape = (*member.shape, 1) if len(member.shape) == 3 else member.shape
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of all the rows."""
        return self.shape[0] * self.row_bytes

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` as an array, read from disk now."""
        data = os.pread(
            self._fd, (stop - start) * self.row_bytes, self.offset + start * self.row_bytes
        )
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.asarray(idx).reshape(-1)
        order = np.argsort(idx, kind="stable")
        rows = idx[order]
        batch = np.empty((len(idx), *self.shape[1:]), self.dtype)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows: one read each
        for run_positions in np.split(np.arange(len(rows)), breaks):
            if len(run_positions):
                first, last = rows[run_positions[0]], rows[run_positions[-1]]
                block = self.read(first, last + 1)
                batch[order[run_positions]] = (
                    block
                    if len(block) == len(run_positions)
                    else block[rows[run_positions] - first]
                )
        return batch

    def __del__(self):
        with contextlib.suppress(OSError, AttributeError):
            os.close(self._fd)


def _convert(npz: Path, key: str, copy: PartialFile, *, chunk: int) -> None:
    partial = copy.partial
    member = member_info(npz, key)
    done = copy.read_note(NOTE).get("rows", 0) if partial.exists() else 0
    if done == 0:
        _check_space(partial.parent, member.nbytes)
        header = np.lib.format.open_memmap(
            partial, mode="w+", dtype=member.dtype, shape=member.shape
        )
        offset = header.offset  # the file is allocated (sparse); no page of it was touched
        del header
    else:
        offset = NpyRows(partial).offset
        log.info(
            "resuming the copy of %s %s after %d of %d rows", npz.name, key, done, member.shape[0]
        )
    n, flush_rows = member.shape[0], max(1, FLUSH_BYTES // max(1, member.row_bytes))
    fd = os.open(partial, os.O_WRONLY)
    try:
        for start, stop, rows in read_rows(
            npz, key, [(s, min(s + chunk, n)) for s in range(done, n, chunk)]
        ):
            os.pwrite(fd, rows.tobytes(), offset + start * member.row_bytes)
            if stop - done >= flush_rows or stop == n:
                os.fsync(fd)
                copy.write_note(NOTE, {"rows": stop})
                done = stop
    finally:
        os.close(fd)
    copy.finish()


def _check_space(folder: Path, size: int) -> None:
    free = shutil.disk_usage(folder).free
    if size > free * 0.95:
        raise DataError(
            f"the uncompressed copy for training needs {size / 1e9:.1f} GB in {folder}, which has "
            f"{free / 1e9:.1f} GB free; free space there, point $MEDPROBE_CACHE elsewhere, or "
            "train with the data in memory (--data-mode memory)"
        )


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
