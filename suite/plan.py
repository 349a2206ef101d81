"""`probe suite RECIPE --plan`: the runs a recipe makes, the data they read and the cache they fill.

Nothing runs and nothing is downloaded: sizes come from the registries (image counts, feature
widths on the meta device) and from the files already present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medprobe.data import SPLITS, DatasetSpec, data_root, get_dataset
from medprobe.data.npz import member_info
from suite.recipe import Recipe

FLOAT_BYTES = {"float16": 2, "float32": 4}


@dataclass
class Plan:
    """What a recipe would do: one line per run, the data files, the bytes of cache entries."""

    runs: list[str] = field(default_factory=list)
    files: list[tuple[str, bool, int]] = field(default_factory=list)  # (path, present, bytes)
    cache_bytes: int = 0
    images_bytes: int = 0  # the data uncompressed: what memory or the disk copy of `finetune` holds

    def summary(self) -> dict:
        """The totals, as `--plan --json` prints them (bytes)."""
        return {
            "runs": len(self.runs),
            "data_files": len(self.files),
            "data_files_missing": sum(not present for _, present, _ in self.files),
            "data_bytes_present": sum(size for _, present, size in self.files if present),
            "images_bytes": self.images_bytes,
            "cache_bytes": self.cache_bytes,
        }

    def to_dict(self) -> dict:
        """Totals first, then every run and data file."""
        files = [{"path": p, "present": present, "bytes": size} for p, present, size in self.files]
        return self.summary() | {"run_list": self.runs, "files": files}

    def lines(self) -> list[str]:
        """The plan as printed: its totals first, then the runs and the missing data files."""
        present = [f for f in self.files if f[1]]
        missing = [f for f in self.files if not f[1]]
        totals = [
            f"{len(self.runs)} run(s)",
            f"data: {len(self.files)} file(s), {len(present)} present "
            f"({_gb(sum(f[2] for f in present))}), {len(missing)} to download"
            + (f" (~{_gb(sum(f[2] for f in missing))} uncompressed at most)" if missing else ""),
            f"images uncompressed: {_gb(self.images_bytes)}",
            f"feature cache: {_gb(self.cache_bytes)} of new entries at most",
        ]
        return [*totals, "", *self.runs, *(f"missing {path}" for path, _, _ in missing)]


def plan_suite(recipe: Recipe) -> Plan:
    """Every run of the recipe, its data files and the cache space its probes take."""
    from medprobe.backbones.factory import feature_dims  # torch (meta device only)

    plan = Plan()
    widths = [
        sum(feature_dims(p["backbone"], img_size=p.get("img_size")).values()) for p in recipe.probes
    ]
    for dataset in recipe.datasets:
        spec = get_dataset(dataset, task=recipe.task)
        for size in recipe.sizes:
            rows = _add_data(plan, spec, size, recipe)
            for probe, width in zip(recipe.probes, widths, strict=True):
                heads = ",".join(probe.get("heads", ["logreg"]))
                plan.runs.append(f"probe    {probe['backbone']} [{heads}] on {spec.flag}_{size}")
                value_bytes = FLOAT_BYTES[probe.get("dtype", "float16")]
                plan.cache_bytes += rows * width * value_bytes
            for options in recipe.finetunes:
                for seed in recipe.seeds:
                    given = " ".join(f"{k}={v}" for k, v in options.items() if k != "model")
                    plan.runs.append(
                        f"finetune {options['model']} on {spec.flag}_{size} seed {seed} [{given}]"
                    )
    return plan


def _add_data(plan: Plan, spec: DatasetSpec, size: int, recipe: Recipe) -> int:
    """Count one data file (its rows and bytes from its npy headers when present).

    Returns the rows a cache entry of it holds: one per image, or per slice of a volume along each
    of its three axes.
    """
    path = spec.path or data_root(recipe.data_root) / spec.filename(size)
    if path.exists():
        shapes = [member_info(path, f"{split}_images").shape for split in SPLITS]
        n_images, images = sum(s[0] for s in shapes), sum(math.prod(s) for s in shapes)
        side = shapes[0][1]
    else:
        n_images, side = sum(spec.n_samples.values()), size
        values = side**3 if spec.volumetric else side * side * (spec.n_channels or 3)
        images = n_images * values
    plan.images_bytes += images
    plan.files.append((str(path), path.exists(), path.stat().st_size if path.exists() else images))
    return n_images * (3 * side if spec.volumetric else 1)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n / 1e6:.1f} MB"
