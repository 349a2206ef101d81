"""Crash-safe file writes.

Small files go through a unique temporary sibling, fsync'd and renamed over the target on success
(`atomic_path`): concurrent writers of one file each write their own temporary and the last rename
wins, so a reader sees an old complete file or a new complete one, never half of one; a kill -9 or
a full disk leaves at most a hidden temporary behind (removed on the way out when Python still
runs).

Large files that are written over minutes and resumed after a crash are `PartialFile`s: written in
place under `{name}.partial`, their progress in notes beside it, renamed whole when complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from medprobe.errors import UserError


class DiskError(UserError, OSError):
    """A file could not be written (disk full, no permission); nothing half-written is left."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` if the block succeeds, else is removed.

    With `durable`, the temporary is flushed to disk before the rename and the folder after it, so
    even a power loss never leaves an empty or torn file under the target's name (progress notes
    rewritten after every chunk skip that: losing one only repeats the chunk). The result gets the
    permissions of any other new file (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        with disk_errors(path):
            yield tmp
            if durable:
                fsync(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
            if durable:
                fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def disk_errors(what: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk (or a read-only or forbidden folder) under `what` into a `DiskError`.

    Some writers report a full disk as another exception (torch.save: a RuntimeError from its zip
    writer); any exception raised while the disk under `what` is full is taken for that.
    """
    try:
        yield
    except OSError as e:
        error = disk_error(e, what)
        if error is e:
            raise
        raise error from e
    except Exception as e:
        if isinstance(e, UserError) or not disk_full(Path(what).parent):
            # a user error already says what to do; anything else on a disk with room is a bug
            raise
        reason = f"no space left on device ({type(e).__name__} from the writer)"
        raise DiskError(f"could not write {what}: {reason}; free some space and run again") from e


FULL_BYTES = 1 << 20  # a filesystem with less free space than this is full for any file we write


def disk_full(folder: Path) -> bool:
    """Whether the filesystem holding `folder` (or its nearest existing parent) is full."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < FULL_BYTES
    except OSError:
        return False


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS)


def disk_error(e: OSError, what: str | os.PathLike) -> OSError:
    """`e` as a one-line user error when it is the disk's fault (full, read-only, no permission).

    h5py reports a full disk as an OSError without errno, so its message is read too.
    """
    if isinstance(e, DiskError):
        return e
    reason = e.strerror or str(e)
    if e.errno in DISK_ERRNOS or "No space left on device" in reason:
        return DiskError(f"could not write {what}: {reason}; free some space and run again")
    return e


_Files = TypeVar("_Files", bound="PartialFile")


@dataclass(frozen=True)
class PartialFile:
    """A large file written in place and resumed after a crash, in one layout everywhere.

    `{final}.partial` holds the data while it is written; `{final}.partial.{note}.json` notes say
    how far each writer got (rewritten atomically after each chunk is on disk, so a kill -9 loses
    at most that chunk); `{final}.lock` keeps a second process off the file. `finish` renames the
    partial file into place only when it is whole.
    """

    final: Path

    @classmethod
    def of(cls: type[_Files], path: str | os.PathLike) -> _Files:
        """The files of `path`, given by its final or its `.partial` name."""
        return cls(Path(str(path).removesuffix(PARTIAL)))

    @property
    def partial(self) -> Path:
        """The file the data are written to until they are whole."""
        return self.final.with_name(self.final.name + PARTIAL)

    @property
    def lock(self) -> Path:
        """The lock that the one process writing (or removing) the file holds."""
        return self.final.with_name(self.final.name + ".lock")

    def note(self, name: str) -> Path:
        """The progress note called `name` (one per writing process)."""
        return self.partial.with_name(f"{self.partial.name}.{name}.json")

    def notes(self) -> list[Path]:
        """Every progress note, sorted."""
        return sorted(self.final.parent.glob(_glob_escape(self.partial.name) + ".*.json"))

    def read_note(self, name: str) -> dict:
        """The progress note `name`, or {} when there is none."""
        path = self.note(name)
        return json.loads(path.read_text()) if path.exists() else {}

    def write_note(self, name: str, progress: dict) -> None:
        """Replace the note `name` atomically; the data it vouches for must be on disk already."""
        with atomic_path(self.note(name), durable=False) as tmp:
            tmp.write_text(json.dumps(progress))

    def finish(self) -> Path:
        """Flush the whole partial file, rename it into place, then drop its notes."""
        fsync(self.partial)
        os.replace(self.partial, self.final)
        fsync(self.final.parent)
        for note in self.notes():
            note.unlink()
        return self.final

    def discard(self) -> None:
        """Delete the partial file and its notes (never the complete file or the lock)."""
        for stale in [self.partial, *self.notes()]:
            stale.unlink(missing_ok=True)


PARTIAL = ".partial"


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
    return Path(path)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
