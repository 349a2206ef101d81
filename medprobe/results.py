"""The result record every run writes: one JSON per (dataset, size, model, method, seed)."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from medprobe.atomic import atomic_path

SCHEMA_VERSION = 1
METHODS = ("scratch", "finetune", "frozen-sgd", "logreg", "linear", "knn")


@dataclass
class RunResult:
    """What one run found, with enough context to compare and reproduce it.

    `metrics` maps split ("val", "test") to the dict of `medprobe.metrics.evaluate`. `predictions`
    (e.g. test scores and labels) are kept beside the JSON in `{run_name}.npz`, so intervals and
    paired tests can be computed later; `tag` tells label-efficiency and feature variants apart.
    """

    dataset: str
    size: int
    model: str
    method: str
    seed: int
    metrics: dict[str, dict]
    hparams: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cache_key: str | None = None
    tag: str = ""
    versions: dict[str, str] = field(default_factory=lambda: package_versions())
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    schema_version: int = SCHEMA_VERSION
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def variant(self) -> str:
        """The method with its tag, e.g. `logreg` or `logreg-frac0.1`: what tables group by."""
        return f"{self.method}-{self.tag}" if self.tag else self.method

    @property
    def run_name(self) -> str:
        return f"{self.dataset}_{self.size}__{self.model.replace(':', '-')}__{self.variant}__seed{self.seed}"

    def to_json(self) -> str:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"}
        return json.dumps(_finite(record), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"result schema {version} is not {SCHEMA_VERSION}; re-run to rewrite it")
        known = {f.name for f in fields(cls)} - {"predictions"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def load_predictions(self, runs_dir: str | os.PathLike) -> dict[str, np.ndarray]:
        """The arrays saved beside the record (empty when the run kept none)."""
        path = Path(runs_dir) / f"{self.run_name}.npz"
        if not path.exists():
            return {}
        with np.load(path) as npz:
            return dict(npz)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write `{out_dir}/{run_name}.json` atomically (a crash never leaves half a record)."""
        path = Path(out_dir) / f"{self.run_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.predictions:
            with atomic_path(path.with_suffix(".npz")) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, **self.predictions)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path


def load_results(runs_dir: str | os.PathLike) -> list[RunResult]:
    """Every result record under `runs_dir` with its saved predictions, sorted by run name."""
    results = []
    for path in sorted(Path(runs_dir).rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "schema_version" in data and "metrics" in data:
            result = RunResult.from_dict(data)
            result.predictions = result.load_predictions(path.parent)
            results.append(result)
    return sorted(results, key=lambda r: r.run_name)


def package_versions() -> dict[str, str]:
    """Versions that can change the numbers: python and the numeric stack."""
    versions = {"python": platform.python_version()}
    for name in ("medprobe", "torch", "timm", "numpy", "scikit-learn", "medmnist", "h5py"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _finite(value):
    """NaN/inf -> None, so the JSON stays standard (undefined metrics become null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
