"""A probe run's settings besides its cache entry.

What its record is keyed by, seeds worth running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cache.key import CacheKey
from medprobe.backbones.registry import default_kinds
from medprobe.data import DatasetSpec
from medprobe.results import run_name, variant_of
from probe.heads import HEADS


def seeds_for(head: str, seeds: tuple[int, ...], *, subsampled: bool) -> tuple[int, ...]:
    """The seeds worth running: a deterministic head on all of train gives one fit (seed 0)."""
    return (0,) if HEADS[head].deterministic and not subsampled else tuple(seeds)


@dataclass(frozen=True, kw_only=True)
class FitSettings:
    """What, besides its cache entry, makes a probe run's numbers (and so its record)."""

    head: str
    kinds: tuple[str, ...]
    select: str
    fraction: float | None
    shots: int | None
    bootstrap: int
    seed: int
    refit: str = "none"
    baseline: str | None = None  # fitted as a null baseline (`probe.baselines`)
    volume: tuple[str, str] | None = None  # a 3D entry's (axes, slices) aggregation

    def config(self, key: CacheKey) -> dict:
        """The run's full configuration: the record's name ends in its digest.

        A refit is named only when asked for, so the runs of earlier versions keep their identity.
        """
        refit = {} if self.refit == "none" else {"refit": self.refit}
        refit |= {"baseline": self.baseline} if self.baseline else {}
        refit |= {"axes": self.volume[0], "slices": self.volume[1]} if self.volume else {}
        return {
            "entry": json.loads(key.to_json()),
            "head": self.head,
            "features": "+".join(self.kinds),
            "select": self.select,
            "train_fraction": self.fraction,
            "shots": self.shots,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
        } | refit

    @property
    def subset_flag(self) -> str | None:
        """The label-efficiency flag this run was given (`--shots 5`), or None for all of train."""
        if self.fraction is not None:
            return f"--train-fraction {self.fraction:g}"
        return f"--shots {self.shots}" if self.shots is not None else None

    def tag(self, entry_kinds: tuple[str, ...]) -> str:
        """The run's variant tag (a baseline, non-default kinds, fraction, shots, refit)."""
        tag = run_tag(self.kinds, default_kinds(entry_kinds), self.fraction, self.shots, self.refit)
        volume = f"{self.volume[1]}-{self.volume[0]}".replace("+", "") if self.volume else None
        return "-".join(filter(None, [self.baseline, volume, tag]))

    def run_name(self, dspec: DatasetSpec, key: CacheKey) -> str:
        """The run's folder-safe name on the entry of `key`."""
        variant = variant_of(self.head, self.tag(key.features))
        return run_name(dspec.flag, key.size, key.backbone, variant, self.seed, self.config(key))


def run_tag(
    kinds: tuple[str, ...],
    default: tuple[str, ...],
    fraction: float | None,
    shots: int | None,
    refit: str = "none",
) -> str:
    """What tells a run's variant apart in its name.

    Non-default features, label efficiency, a refit on train+val.
    """
    parts = [] if tuple(kinds) == tuple(default) else ["+".join(kinds)]
    parts += [f"frac{fraction:g}"] if fraction is not None else []
    parts += [f"shots{shots}"] if shots is not None else []
    parts += ["refit"] if refit != "none" else []
    return "-".join(parts)
