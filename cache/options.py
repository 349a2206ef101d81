"""How an entry is extracted.

One dataclass that `probe extract`, `probe fit --extract` and recipes share.

Light (no torch, no h5py), so the CLIs declare their flags from it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from medprobe.backbones.registry import PRECISIONS, RESIZE_MODES
from medprobe.cli.options import check_fields, option, refuse_contradicting_weights
from medprobe.data import SPLITS

# of the cached features; `cache.store.CacheKey` enforces them
STORAGE_DTYPES = ("float16", "float32")
# The fields that make an entry what it is (its key); the others say how extraction runs.
ENTRY_FIELDS = ("weights", "pretrained", "precision", "resize", "img_size", "dtype")


@dataclass(frozen=True)
class ExtractOptions:
    """What `cache.extract.extract` builds and how: every field is a flag of `probe extract`."""

    splits: tuple[str, ...] = option(SPLITS, "Comma-separated splits to extract.", choices=SPLITS)
    batch_size: int | None = option(
        None, "Images per forward [default: 512 on GPU, 16 on CPU].", min=1
    )
    precision: str = option(
        "auto", "auto: bf16 on CUDA and on CPUs with bf16 units, else fp32.", choices=PRECISIONS
    )
    resize: str = option("bicubic", "How inputs reach the backbone's size.", choices=RESIZE_MODES)
    img_size: int | None = option(None, "Backbone input size [default: the backbone's].", min=1)
    weights: str | None = option(
        None, "Local .safetensors/.pth weights (offline stand-in for hub weights)."
    )
    pretrained: bool = option(True, "Pretrained weights, or a seeded random init.")
    dtype: str = option("float16", "Storage dtype of the features.", choices=STORAGE_DTYPES)
    device: str | None = option(None, "cpu, cuda, cuda:1 ... [default: cuda if available].")
    download: bool = option(True, "Download the dataset when it is missing.")
    overwrite: bool = option(False, "Rebuild the entry even if it exists.")

    def __post_init__(self):
        splits = (self.splits,) if isinstance(self.splits, str) else tuple(self.splits)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown or not splits:
            raise ValueError(
                f"unknown --splits {','.join(unknown) or '(none)'}; choose from {', '.join(SPLITS)}"
            )
        object.__setattr__(self, "splits", tuple(s for s in SPLITS if s in splits))
        check_fields(self)
        refuse_contradicting_weights(self.weights, self.pretrained)


@dataclass(frozen=True)
class EntryFilter:
    """Which entries a fit uses, by how they were built.

    None means "any". With `probe fit --extract` the same values say how to build a missing entry
    (`to_extract`).
    """

    weights: str | None = option(None, "Entries of these local weights.")
    pretrained: bool | None = option(
        None,
        "Entries of pretrained or random-init weights [default: any; with --extract: pretrained].",
    )
    precision: str | None = option(None, "Entries of this precision.", choices=PRECISIONS)
    resize: str | None = option(None, "Entries of this resize mode.", choices=RESIZE_MODES)
    img_size: int | None = option(None, "Entries of this backbone input size.", min=1)
    dtype: str | None = option(None, "Entries of this storage dtype.", choices=STORAGE_DTYPES)

    def __post_init__(self):
        check_fields(self)
        refuse_contradicting_weights(self.weights, self.pretrained)

    def accepts(self, key) -> bool:
        """Whether the entry of `key` (a `cache.store.CacheKey`) was built as asked."""
        # torch: only when entries are matched
        from medprobe.backbones.weights import weights_identity

        if self.weights is not None and key.weights != weights_identity(
            key.model_id, pretrained=True, weights=self.weights, seed=0
        ):
            return False
        if self.pretrained is not None and self.pretrained == key.weights.startswith("random-init"):
            return False
        wanted = {"resize": self.resize, "input_size": self.img_size}
        if any(v is not None and key.preprocess.get(k) != v for k, v in wanted.items()):
            return False
        if self.precision not in (None, "auto") and key.precision != self.precision:
            return False
        return self.dtype is None or key.dtype == self.dtype

    def to_extract(self) -> ExtractOptions:
        """The extraction that builds an entry this filter accepts (defaults for "any")."""
        return ExtractOptions(
            **{k: getattr(self, k) for k in ENTRY_FIELDS if getattr(self, k) is not None}
        )
