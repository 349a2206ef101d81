"""The embedding store: content keys, where entries live, and validated reads that speak numpy.

An entry is one HDF5 file `{root}/{backbone}/{flag}_{size}/{digest}.h5` with groups `train`, `val`,
`test`, each holding `features/<kind>` (N, D) and `labels` (N, L). Its attributes carry the key
JSON, versions and extraction timings, so a file explains itself. Writing lives in `cache.writer`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import h5py
import numpy as np

from cache import integrity
from cache.files import DIGEST_CHARS, PATTERNS, EntryFiles, entry_name, name_digest
from cache.key import FORMAT_VERSION, CacheKey, key_digest
from medprobe.data.files import cache_home as cache_root  # one cache folder for features and data
from medprobe.errors import UserError

UNFINISHED = "extraction not finished"


class CacheError(UserError, RuntimeError):
    """A cache entry is missing, incomplete or damaged; the message says how to rebuild it."""


@dataclass
class EntryInfo:
    """What `probe cache ls` shows of one file."""

    path: Path
    complete: bool
    key: CacheKey | None = None
    rows: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    problem: str | None = None


def entry_path(key: CacheKey, root: str | os.PathLike | None = None) -> Path:
    """Where the entry of `key` lives under the cache root."""
    folder = key.backbone.replace(":", "-").replace("/", "-")
    return cache_root(root) / folder / f"{key.dataset}_{key.size}" / entry_name(key.digest)


def rebuild_hint(path: Path) -> str:
    """How a user replaces a bad entry: the words every refusal ends with."""
    return (
        f"remove it (`probe cache rm {path}`, or `probe extract ... --overwrite`) and extract again"
    )


def read_split(
    path: str | os.PathLike,
    split: str,
    *,
    kinds: tuple[str, ...] | None = None,
    labels: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features and labels of one split of a complete entry.

    Args:
        labels: (N, L) the split's labels in the data file the entry is used for; the entry's must
            equal them (an entry whose labels were edited, or that belongs to other data, is
            refused).

    Returns:
        ({kind: (N, D) float32}, (N, L) int64 labels).
    """
    path = Path(path)
    with _open_complete(path) as f:
        if split not in f:
            raise CacheError(f"{path} has no split {split!r} (it holds {', '.join(f)})")
        group = f[split]
        available = tuple(group["features"])
        missing = [k for k in kinds or () if k not in available]
        if missing:
            raise CacheError(
                f"{path} has no feature kind {missing}; it holds {', '.join(available)}"
            )
        stored = {
            k: _checked(path, f"{split}/features/{k}", group["features"][k])
            for k in kinds or available
        }
        stored_labels = _checked(path, f"{split}/labels", group["labels"])
    if labels is not None and not np.array_equal(stored_labels, labels):
        raise CacheError(
            f"{path}: its {split} labels differ from the data file's (the entry was edited or "
            f"belongs to other data); {rebuild_hint(path)}"
        )
    return {k: v.astype(np.float32) for k, v in stored.items()}, stored_labels


def _checked(path: Path, name: str, dataset: h5py.Dataset) -> np.ndarray:
    values = dataset[...]
    problem = integrity.problem_with(name, dataset, values)
    if problem:
        raise CacheError(f"{path}: {problem}; {rebuild_hint(path)}")
    return values


def read_key(path: str | os.PathLike) -> CacheKey:
    """The key stored in a finished entry."""
    with _open_complete(Path(path)) as f:
        return CacheKey.from_json(f.attrs["key"])


def read_attrs(path: str | os.PathLike) -> dict:
    """Every attribute of an entry (key JSON, versions, timings), JSON-decoded where possible."""
    with _open(Path(path)) as f:
        return {name: _decode(value) for name, value in f.attrs.items()}


def inspect_entry(path: str | os.PathLike) -> EntryInfo:
    """Check one file: readable, complete, shapes consistent, data within the file."""
    path = Path(path)
    info = EntryInfo(path=path, complete=False, bytes=path.stat().st_size)
    try:
        with _open(path) as f:
            text = f.attrs["key"]
            info.key = CacheKey.from_json(text)
            if key_digest(text)[:DIGEST_CHARS] != name_digest(path):
                info.problem = (
                    "its key does not hash to its file name: the key was edited, or the file "
                    "renamed"
                )
                return info
            if info.key.format_version != FORMAT_VERSION:
                info.problem = (
                    f"written in cache format {info.key.format_version}, not {FORMAT_VERSION}"
                )
                return info
            info.rows = {split: len(f[split]["labels"]) for split in info.key.splits if split in f}
            info.problem = _structure_problem(f, info.key, info.bytes)
            info.complete = bool(f.attrs.get("complete", False)) and info.problem is None
            if info.problem is None and not info.complete:
                info.problem = UNFINISHED
    except (OSError, KeyError, ValueError, TypeError, AttributeError, CacheError) as e:
        info.problem = f"unreadable: {e}"
    return info


def verify_entry(path: str | os.PathLike) -> EntryInfo:
    """`inspect_entry`, then every array against its checksum (reads the whole file)."""
    info = inspect_entry(path)
    if not info.complete:
        return info
    assert info.key is not None, "a complete entry has a key"
    splits = info.key.splits
    with _open(info.path) as f:
        problems = (integrity.problem_with(n, d) for n, d in integrity.arrays(f, splits).items())
        info.problem = next((p for p in problems if p), None) or integrity.labels_problem(f, splits)
    info.complete = info.problem is None
    return info


def list_entries(root: str | os.PathLike | None = None, *, partial: bool = True) -> list[EntryInfo]:
    """Every entry under the cache root, complete ones and (with `partial`) unfinished ones.

    Only files named like entries (`{digest}.h5[.partial]`) are entries; any other file there is
    not medprobe's and is left out (and alone).
    """
    root = cache_root(root)
    patterns = PATTERNS if partial else PATTERNS[:1]
    paths = sorted(
        p for pattern in patterns for p in root.rglob(pattern) if name_digest(p) and p.is_file()
    )
    return [inspect_entry(p) for p in paths]


def find_entries(
    root: str | os.PathLike | None, *, dataset: str, size: int, backbone: str | None = None
) -> list[tuple[Path, CacheKey]]:
    """Complete entries holding all three splits for a dataset and size (and backbone, if given)."""
    found = []
    for info in list_entries(root, partial=False):
        key = info.key
        if key is None or not info.complete or key.dataset != dataset or key.size != size:
            continue
        if (backbone is None or key.backbone == backbone) and set(key.splits) >= {
            "train",
            "val",
            "test",
        }:
            found.append((info.path, key))
    return found


def damaged_entries(root: str | os.PathLike | None, *, dataset: str, size: int) -> list[EntryInfo]:
    """Finished entries of `dataset`/`size` (by their folder) that cannot be used.

    Edited, corrupt, unreadable. Unfinished extractions are not damaged: they resume.
    """
    return [
        info
        for info in list_entries(root, partial=False)
        if info.path.parent.name == f"{dataset}_{size}" and info.problem not in (None, UNFINISHED)
    ]


def _structure_problem(f: h5py.File, key: CacheKey, file_bytes: int) -> str | None:
    for split in key.splits:
        if split not in f:
            return f"split {split} missing"
        n = len(f[split]["labels"])
        for kind in key.features:
            dataset = f[split]["features"].get(kind)
            if dataset is None or dataset.shape[0] != n:
                return f"{split}/features/{kind} missing or not {n} rows"
            offset = dataset.id.get_offset()
            if offset is None or offset + dataset.id.get_storage_size() > file_bytes:
                return f"{split}/features/{kind} extends past the end of the file (truncated)"
    return None


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CacheError(
            f"{path} is damaged or not an HDF5 file ({e}); {rebuild_hint(path)}"
        ) from e


def _open_complete(path: Path) -> h5py.File:
    if not path.exists():
        raise CacheError(f"no cache entry at {path}; create it with `probe extract`")
    info = inspect_entry(path)
    if not info.complete:
        raise CacheError(
            f"{path} is not a complete cache entry ({info.problem}); {rebuild_hint(path)}"
        )
    return _open(path)


def _decode(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)
    return value.item() if isinstance(value, np.generic) else value


def remove_entry(path: str | os.PathLike) -> None:
    """Delete an entry and its companions, holding its lock; refuse while an extraction holds it."""
    files = EntryFiles.of(path)
    lock = filelock.FileLock(str(files.lock))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as e:
        raise CacheError(
            f"{files.final} is being extracted by another process; remove it when that ends"
        ) from e
    try:
        files.delete()
    finally:
        lock.release()
        files.lock.unlink(missing_ok=True)


def resolve_entry(ref: str, root: str | os.PathLike | None = None) -> EntryInfo:
    """The one entry `ref` names: its path, or a prefix of at least 8 hex digits of its key digest.

    An entry is a file named `{digest}.h5[.partial]` under the cache root holding a readable key;
    no other file is ever resolved (so never deleted), whatever its name or place.

    Raises:
        CacheError: `ref` names no entry, names several, or is too short to name one safely.
    """
    entries = [info for info in list_entries(root) if info.key is not None]
    if ref and Path(ref).is_file():
        path = Path(ref).resolve()
        found = [info for info in entries if info.path.resolve() == path]
        if not found:
            raise CacheError(
                f"{ref} is not a medprobe cache entry (a `{{digest}}.h5` file under "
                f"{cache_root(root)} with a readable key); it is left as it is. See `probe cache "
                "ls` for the entries"
            )
        return found[0]
    if len(ref) < 8 or any(c not in "0123456789abcdef" for c in ref.lower()):
        raise CacheError(
            f"{ref!r} is not an entry path or a key prefix of at least 8 hex digits; see `probe "
            "cache ls`"
        )
    matches = [info for info in entries if (name_digest(info.path) or "").startswith(ref.lower())]
    if len(matches) != 1:
        how_many = "no entry" if not matches else f"{len(matches)} entries"
        raise CacheError(f"{how_many} under {cache_root(root)} match {ref!r}; see `probe cache ls`")
    return matches[0]
