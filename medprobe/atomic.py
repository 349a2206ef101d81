"""Crash-safe file writes: a unique temporary sibling, fsync'd, renamed over the target on success.

Concurrent writers of one file each write their own temporary and the last rename wins, so a
reader sees an old complete file or a new complete one, never half of one; a kill -9 or a full
disk leaves at most a hidden temporary behind (removed on the way out when Python still runs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
    """Turn a full disk (or a read-only or forbidden folder) while writing `what` into a `DiskError`.

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
            raise  # a user error already says what to do; anything else on a disk with room is a bug
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
