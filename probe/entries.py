"""Which cache entries a fit uses: those built from the bytes of the file the user names.

An entry is matched by content (the MD5 of the npz, stored in its key) and by what the user asked
for (weights, resize, input size, storage dtype); never by name or age. When several entries
match (say bicubic and zero-padded inputs), each is fitted into its own record.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from cache.key import CacheKey
from cache.options import ENTRY_FIELDS, EntryFilter
from cache.store import CacheError, damaged_entries, find_entries, rebuild_hint
from medprobe.cli.hints import command_line


def superseding(entries: list[tuple[Path, CacheKey]]) -> list[tuple[Path, CacheKey]]:
    """Entries less those another entry supersedes.

    Built alike (the same key but for the feature kinds) and holding every kind they hold and more
    (e.g. cls+mean beside cls+mean+last4, written by a later version). Their shared kinds hold the
    same numbers, so fitting both would repeat runs.
    """

    def alike(key: CacheKey) -> str:
        return json.dumps(asdict(key) | {"features": None}, sort_keys=True)

    def superseded(key: CacheKey) -> bool:
        return any(
            alike(other) == alike(key) and set(other.features) > set(key.features)
            for _, other in entries
        )

    return [(path, key) for path, key in entries if not superseded(key)]


def matching_entries(
    cache_root: str | os.PathLike | None,
    *,
    dataset: str,
    size: int,
    data_md5: str,
    npz: Path,
    backbone: str | None = None,
    where: EntryFilter,
    data_root: str | os.PathLike | None = None,
    task: str | None = None,
) -> list[tuple[Path, CacheKey]]:
    """Complete entries of `dataset`/`size` built from the bytes whose MD5 is `data_md5`.

    `data_root` and `task` (a user's own npz) are the options the user gave, for the fix hint.

    Raises:
        CacheError: none matches; the message says whether entries exist for other bytes (the
            file changed, or another file of that name) and how to create the right one.
    """
    candidates = find_entries(cache_root, dataset=dataset, size=size, backbone=backbone)
    same_bytes = [(p, k) for p, k in candidates if k.data_md5 == data_md5]
    chosen = superseding([(p, k) for p, k in same_bytes if where.accepts(k)])
    if chosen:
        return sorted(chosen, key=lambda entry: (entry[1].backbone, entry[1].digest))
    damaged = damaged_entries(cache_root, dataset=dataset, size=size)
    if damaged:
        info = damaged[0]
        raise CacheError(
            f"no usable entry of {dataset}_{size}; {info.path} is damaged ({info.problem}): "
            f"{rebuild_hint(info.path)}"
        )
    flags = {"dataset": npz if task else dataset, "task": task, "size": size}
    create = _create_hint(cache_root, backbone, flags, where, data_root)
    if candidates and not same_bytes:
        raise CacheError(
            f"the cached features of {dataset}_{size} were extracted from other bytes than {npz} "
            f"(MD5 {data_md5[:12]}…): the file changed or is another file of that name; "
            f"extract from this file with {create}"
        )
    if same_bytes:
        raise CacheError(
            f"no cached entry of {dataset}_{size} matches the "
            "--weights/--resize/--img-size/--dtype given; see `probe cache ls`, or create it with "
            f"{create} and the same options"
        )
    raise CacheError(
        f"no cached features for {backbone or 'any backbone'} on {dataset}_{size}; create them "
        f"with {create}"
    )


def _create_hint(cache_root, backbone, data: dict, where: EntryFilter, data_root) -> str:
    """The `probe extract` that creates the missing entry, with every option the user gave."""
    built = {k: getattr(where, k) for k in ENTRY_FIELDS if getattr(where, k) is not None}
    if built.get("pretrained") is True:
        del built["pretrained"]  # the default
    line = command_line(
        "probe extract",
        backbone=backbone or "BACKBONE",
        **data,
        data_root=data_root,
        cache_root=cache_root,
        **built,
    )
    return f"`{line}` (or pass --extract)"
