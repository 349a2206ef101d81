"""A cache entry's key.

Everything that changes its numbers, as canonical JSON; its sha256 names the entry's file
(`cache.files`), so a change of any field is a new entry, never a silent reuse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from cache.options import STORAGE_DTYPES

FORMAT_VERSION = 2  # 2: a CRC-32 per array


@dataclass(frozen=True, kw_only=True)
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
    # A 3D dataset's entry holds slices, not images: the axes cut ("all"; `cache.slices`).
    slices: str | None = None

    def __post_init__(self):
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(
                f"unknown storage dtype {self.dtype!r}; choose one of {STORAGE_DTYPES}"
            )

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, so equal keys give equal bytes."""
        fields = asdict(self)
        if fields["slices"] is None:  # a 2D entry's key is what it was before volumes existed
            del fields["slices"]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CacheKey:
        """The key a `to_json` text describes."""
        data = json.loads(text)
        return cls(**data | {"features": tuple(data["features"]), "splits": tuple(data["splits"])})

    @property
    def digest(self) -> str:
        """The sha256 of the key's JSON: the entry's identity."""
        return key_digest(self.to_json())


def key_digest(text: str) -> str:
    """The sha256 of a key's JSON text, as it names the entry (stored text is hashed as stored)."""
    return hashlib.sha256(text.encode()).hexdigest()
