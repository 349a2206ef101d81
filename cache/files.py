"""An entry's files and their names, in one place.

An entry is `{digest}.h5` once complete (`digest`: the first 16 hex digits of its key's sha256),
`{digest}.h5.partial` while it is written, with a progress note per writing process,
`{digest}.h5.partial.progress-{rank}.json`, and `{digest}.h5.lock`, held by the process that writes
or removes it (the layout of every `medprobe.atomic.PartialFile`). Nothing else under the cache
root belongs to an entry, and nothing else is deleted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medprobe.atomic import PARTIAL, PartialFile

DIGEST_CHARS = 16
ENTRY_NAME = re.compile(rf"^([0-9a-f]{{{DIGEST_CHARS}}})\.h5({re.escape(PARTIAL)})?$")
PATTERNS = ("*.h5", f"*.h5{PARTIAL}")  # what `list_entries` looks for, before checking the name


def name_digest(path: str | os.PathLike) -> str | None:
    """The key digest an entry's file name carries (`{digest}.h5[.partial]`), or None if none."""
    match = ENTRY_NAME.match(Path(path).name)
    return match.group(1) if match else None


def entry_name(digest: str) -> str:
    """The complete entry's file name for a key digest."""
    return f"{digest[:DIGEST_CHARS]}.h5"


class EntryFiles(PartialFile):
    """The files of one entry, named from its complete file's path (or its partial file's)."""

    def progress(self, rank: int) -> Path:
        """The progress note of the process of this rank."""
        return self.note(f"progress-{rank}")

    def existing(self) -> list[Path]:
        """The entry's files that exist: complete, partial, lock, progress notes."""
        return [p for p in (self.final, self.partial, self.lock, *self.notes()) if p.exists()]

    def delete(self) -> None:
        """Delete the entry's files but its lock, which the caller holds."""
        self.final.unlink(missing_ok=True)
        self.discard()
