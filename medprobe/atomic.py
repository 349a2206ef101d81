"""Crash-safe file writes: write a temporary sibling, rename it over the target only on success."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `{path}.partial` to write; it replaces `path` if the block succeeds, else is removed.

    A reader sees the old file or the complete new one, never half of it; a kill -9 leaves at
    most a `.partial` file behind.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
