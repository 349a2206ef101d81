"""The embedding store: content keys, where entries live, and validated reads that speak numpy.

An entry is one HDF5 file `{root}/{backbone}/{flag}_{size}/{digest}.h5` with groups `train`, `val`,
`test`, each holding `features/<kind>` (N, D) and `labels` (N, L). Its attributes carry the key JSON,
versions and extraction timings, so a file explains itself. Writing lives in `cache.writer`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import filelock
import h5py
import numpy as np

from cache import integrity
from medprobe.choices import STORAGE_DTYPES
from medprobe.data_cache import cache_home as cache_root  # one cache folder for features and data
from medprobe.errors import UserError

FORMAT_VERSION = 2  # 2: a CRC-32 per array


class CacheError(UserError, RuntimeError):
    """A cache entry is missing, incomplete or damaged; the message says how to rebuild it."""


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes the cached numbers. Any change is a new entry, never a reuse."""

    backbone: str
    model_id: str
    weights: str
    dataset: str
    size: int
    data_md5: str
    preprocess: dict
    features: tuple[str, ...]
    splits: tuple[str, ...]
    precision: str
    dtype: str = "float16"
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"unknown storage dtype {self.dtype!r}; choose one of {STORAGE_DTYPES}")

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, so equal keys give equal bytes."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CacheKey:
        data = json.loads(text)
        return cls(**data | {"features": tuple(data["features"]), "splits": tuple(data["splits"])})

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


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
    folder = key.backbone.replace(":", "-").replace("/", "-")
    return cache_root(root) / folder / f"{key.dataset}_{key.size}" / f"{key.digest[:16]}.h5"


def rebuild_hint(path: Path) -> str:
    return f"delete {path} (or run `probe extract ... --overwrite`) and extract again"


def read_split(
    path: str | os.PathLike, split: str, *, kinds: tuple[str, ...] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features and labels of one split of a complete entry.

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
            raise CacheError(f"{path} has no feature kind {missing}; it holds {', '.join(available)}")
        stored = {
            k: _checked(path, f"{split}/features/{k}", group["features"][k]) for k in kinds or available
        }
        labels = _checked(path, f"{split}/labels", group["labels"])
    return {k: v.astype(np.float32) for k, v in stored.items()}, labels


def _checked(path: Path, name: str, dataset: h5py.Dataset) -> np.ndarray:
    values = dataset[...]
    problem = integrity.problem_with(name, dataset, values)
    if problem:
        raise CacheError(f"{path}: {problem}; {rebuild_hint(path)}")
    return values


def read_key(path: str | os.PathLike) -> CacheKey:
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
            info.key = CacheKey.from_json(f.attrs["key"])
            if info.key.format_version != FORMAT_VERSION:
                info.problem = f"written in cache format {info.key.format_version}, not {FORMAT_VERSION}"
                return info
            info.rows = {split: len(f[split]["labels"]) for split in info.key.splits if split in f}
            info.problem = _structure_problem(f, info.key, info.bytes)
            info.complete = bool(f.attrs.get("complete", False)) and info.problem is None
            if info.problem is None and not info.complete:
                info.problem = "extraction not finished"
    except (OSError, KeyError, ValueError, CacheError) as e:
        info.problem = f"unreadable: {e}"
    return info


def verify_entry(path: str | os.PathLike) -> EntryInfo:
    """`inspect_entry`, then every array against its checksum (reads the whole file)."""
    info = inspect_entry(path)
    if not info.complete:
        return info
    with _open(info.path) as f:
        for name, dataset in integrity.arrays(f, info.key.splits).items():
            info.problem = integrity.problem_with(name, dataset)
            if info.problem:
                info.complete = False
                break
    return info


def list_entries(root: str | os.PathLike | None = None, *, partial: bool = True) -> list[EntryInfo]:
    """Every entry under the cache root, complete ones and (with `partial`) unfinished ones."""
    root = cache_root(root)
    patterns = ("*.h5", "*.h5.partial") if partial else ("*.h5",)
    paths = sorted(p for pattern in patterns for p in root.rglob(pattern))
    return [inspect_entry(p) for p in paths]


def find_entries(
    root: str | os.PathLike | None, *, dataset: str, size: int, backbone: str | None = None
) -> list[tuple[Path, CacheKey]]:
    """Complete entries holding all three splits for a dataset and size (and backbone, if given)."""
    found = []
    for info in list_entries(root, partial=False):
        key = info.key
        if not info.complete or key.dataset != dataset or key.size != size:
            continue
        if (backbone is None or key.backbone == backbone) and set(key.splits) >= {"train", "val", "test"}:
            found.append((info.path, key))
    return found


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
        raise CacheError(f"{path} is damaged or not an HDF5 file ({e}); {rebuild_hint(path)}") from e


def _open_complete(path: Path) -> h5py.File:
    if not path.exists():
        raise CacheError(f"no cache entry at {path}; create it with `probe extract`")
    info = inspect_entry(path)
    if not info.complete:
        raise CacheError(f"{path} is not a complete cache entry ({info.problem}); {rebuild_hint(path)}")
    return _open(path)


def _decode(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)
    return value.item() if isinstance(value, np.generic) else value


def entry_files(path: str | os.PathLike) -> list[Path]:
    """An entry's file and the exact companions it may have left: partial, progress, lock."""
    final = Path(str(path).removesuffix(".partial"))
    partial = final.with_name(final.name + ".partial")
    companions = [final, partial, final.with_name(final.name + ".lock")]
    companions += sorted(final.parent.glob(_glob_escape(partial.name) + ".progress-*.json"))
    return [p for p in companions if p.exists()]


def delete_files(path: str | os.PathLike, *, partial_only: bool = False) -> None:
    """Delete an entry's files, never its lock: all of them, or only the partial file and its
    progress sidecars (a rebuild's leftovers). The caller holds the lock."""
    final = Path(str(path).removesuffix(".partial"))
    for stale in entry_files(final):
        if stale.name == final.name + ".lock" or (partial_only and stale == final):
            continue
        stale.unlink()


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def remove_entry(path: str | os.PathLike) -> None:
    """Delete an entry and its companions, holding its lock; refuse while an extraction holds it."""
    final = Path(str(path).removesuffix(".partial"))
    lock = filelock.FileLock(str(final) + ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as e:
        raise CacheError(f"{final} is being extracted by another process; remove it when that ends") from e
    try:
        delete_files(final)
    finally:
        lock.release()
        Path(str(final) + ".lock").unlink(missing_ok=True)


def resolve_entry(ref: str, root: str | os.PathLike | None = None) -> EntryInfo:
    """The one entry `ref` names: its path, or a prefix of at least 8 hex digits of its key digest.

    Raises:
        CacheError: `ref` names no entry, names several, or is too short to name one safely.
    """
    entries = list_entries(root)
    by_path = [info for info in entries if str(info.path) == ref or str(info.path.resolve()) == ref]
    if by_path:
        return by_path[0]
    if len(ref) < 8 or any(c not in "0123456789abcdef" for c in ref.lower()):
        raise CacheError(
            f"{ref!r} is not an entry path or a key prefix of at least 8 hex digits; see `probe cache ls`"
        )
    matches = [info for info in entries if info.key is not None and info.key.digest.startswith(ref.lower())]
    if len(matches) != 1:
        found = "no entry" if not matches else f"{len(matches)} entries"
        raise CacheError(f"{found} under {cache_root(root)} match {ref!r}; see `probe cache ls`")
    return matches[0]
