"""An entry's files and their names, in one place.

An entry is `{digest}.h5` once complete (`digest`: the first 16 hex digits of its key's sha256),
`{digest}.h5.partial` while it is written, with a progress note per writing process,
`{digest}.h5.partial.progress-{rank}.json`, and `{digest}.h5.lock`, held by the process that writes
or removes it. Nothing else under the cache root belongs to an entry, and nothing else is deleted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DIGEST_CHARS = 16
ENTRY_NAME = re.compile(rf"^([0-9a-f]{{{DIGEST_CHARS}}})\.h5(\.partial)?$")
PATTERNS = ("*.h5", "*.h5.partial")  # what `list_entries` looks for, before checking the name


def name_digest(path: str | os.PathLike) -> str | None:
    """The key digest an entry's file name carries (`{digest}.h5[.partial]`), or None: not an entry."""
    match = ENTRY_NAME.match(Path(path).name)
    return match.group(1) if match else None


def entry_name(digest: str) -> str:
    """The complete entry's file name for a key digest."""
    return f"{digest[:DIGEST_CHARS]}.h5"


@dataclass(frozen=True)
class EntryFiles:
    """The files of one entry, named from its complete file's path (or its partial file's)."""

    final: Path

    @classmethod
    def of(cls, path: str | os.PathLike) -> EntryFiles:
        return cls(Path(str(path).removesuffix(".partial")))

    @property
    def partial(self) -> Path:
        return self.final.with_name(self.final.name + ".partial")

    @property
    def lock(self) -> Path:
        return self.final.with_name(self.final.name + ".lock")

    def progress(self, rank: int) -> Path:
        """The progress note of the process of this rank."""
        return self.partial.with_name(f"{self.partial.name}.progress-{rank}.json")

    def progress_notes(self) -> list[Path]:
        """Every process's progress note, sorted."""
        return sorted(self.final.parent.glob(_glob_escape(self.partial.name) + ".progress-*.json"))

    def existing(self) -> list[Path]:
        """The entry's files that exist: complete, partial, lock, progress notes."""
        return [p for p in (self.final, self.partial, self.lock, *self.progress_notes()) if p.exists()]

    def delete(self, *, partial_only: bool = False) -> None:
        """Delete the entry's files, never its lock: all of them, or only the partial file and its
        progress notes (a rebuild's leftovers). The caller holds the lock."""
        for stale in self.existing():
            if stale != self.lock and not (partial_only and stale == self.final):
                stale.unlink()


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
