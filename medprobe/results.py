"""The result record every run writes, named by its readable label and its configuration's digest.

`config` holds everything that changes a run's numbers (the cache key or training configuration,
head, features, selection, label-efficiency settings, seed). Its digest ends the record's name, so
two configurations never share a record and re-running one rewrites its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import platform
import shlex
import sys
import zipfile
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from medprobe.atomic import atomic_path
from medprobe.metrics import SCALARS, describe_collapse

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DIGEST_CHARS = 10


@dataclass(kw_only=True)
class RunResult:
    """What one run found, with enough context to compare and reproduce it.

    `metrics` maps split ("val", "test") to the dict of `medprobe.metrics.evaluate`. `predictions`
    (test scores and labels) are kept beside the JSON in `{run_name}.npz`, bound to the record by
    its sha256, so intervals and paired tests can be computed later; `tag` tells label-efficiency
    and feature variants apart; `task` and `class_names` let a report score and label a user's
    own data.
    """

    dataset: str
    size: int
    model: str
    method: str
    seed: int
    metrics: dict[str, dict]
    config: dict = field(default_factory=dict)
    task: str | None = None
    class_names: list[str] = field(default_factory=list)
    hparams: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # seconds and rates; the "device"s: where
    cache_key: str | None = None
    tag: str = ""
    versions: dict[str, str] = field(default_factory=lambda: package_versions())
    command: str | None = field(
        default_factory=lambda: shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    )
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    schema_version: int = SCHEMA_VERSION
    predictions_sha256: str | None = None  # of `{run_name}.npz`: the predictions are this run's
    collapsed: bool = False  # val or test predictions (nearly) one class, or no better than chance
    collapse: dict | None = None  # how: split, share, class (and its name), chance
    baseline: str | None = None  # a null baseline (`probe.baselines.BASELINES`), not a method
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def brief(self, out: str | os.PathLike) -> dict:
        """What a command prints of this run under --json: names, where it is, scalar metrics."""
        metrics = {
            split: {k: values[k] for k in SCALARS if k in values} | {"ci95": values.get("ci95")}
            for split, values in self.metrics.items()
        }
        return {
            "run": self.run_name,
            "record": str(Path(out) / f"{self.run_name}.json"),
            "dataset": self.dataset,
            "size": self.size,
            "model": self.model,
            "method": self.variant,
            "seed": self.seed,
            **metrics,
        }

    @property
    def variant(self) -> str:
        """The method with its tag, e.g. `logreg` or `logreg-frac0.1`: what tables group by."""
        return variant_of(self.method, self.tag)

    @property
    def group(self) -> str:
        """Digest of the configuration without the seed: the runs that are repeats of each other."""
        return config_digest({k: v for k, v in self.config.items() if k != "seed"})

    @property
    def run_name(self) -> str:
        """The run's folder-safe name (see `run_name`)."""
        return run_name(self.dataset, self.size, self.model, self.variant, self.seed, self.config)

    def to_json(self) -> str:
        """The record as JSON, predictions left out (they are saved beside it)."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"}
        return json.dumps(json_safe(record), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        """The record a `to_json` text describes."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        """A record as read back; a field of the wrong type is a ValueError naming it."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"result schema {version} is not {SCHEMA_VERSION}; re-run to rewrite it"
            )
        check_record(data)
        known = {f.name for f in fields(cls)} - {"predictions"}
        # none: not recorded
        return cls(**{"command": None} | {k: v for k, v in data.items() if k in known})

    def load_predictions(self, runs_dir: str | os.PathLike) -> dict[str, np.ndarray]:
        """The arrays saved beside the record, checked against the sha256 it names.

        Empty when the run kept none, or when the record predates the binding (not trusted).

        Raises:
            ValueError: the file is missing, damaged, or not the one written with the record.
        """
        path = Path(runs_dir) / f"{self.run_name}.npz"
        if self.predictions_sha256 is None:
            if path.exists():
                log.warning(
                    "%s: not bound to its record (an earlier version wrote it); left out", path
                )
            return {}
        if not path.exists():
            raise ValueError(f"its predictions file {path.name} is missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.predictions_sha256:
            raise ValueError(
                f"its predictions file {path.name} was replaced or edited since it was saved"
            )
        with np.load(io.BytesIO(data)) as npz:
            return dict(npz)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write `{out_dir}/{run_name}.json` and its predictions atomically.

        The predictions' `.npz` sits beside the record, which names its sha256; a crash
        never leaves half a record.
        """
        path = Path(out_dir) / f"{self.run_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.collapsed:
            log.warning("%s: %s", self.run_name, describe_collapse(self.collapse))
        if self.predictions:
            with atomic_path(path.with_suffix(".npz")) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **self.predictions)  # type: ignore[arg-type]
                self.predictions_sha256 = hashlib.sha256(tmp.read_bytes()).hexdigest()
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path


def variant_of(method: str, tag: str) -> str:
    """The method with its tag, as run names and reports show it."""
    return f"{method}-{tag}" if tag else method


def config_digest(config: dict) -> str:
    """Short sha256 of the canonical JSON of a configuration."""
    text = json.dumps(json_safe(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def run_name(dataset: str, size: int, model: str, variant: str, seed: int, config: dict) -> str:
    """`{dataset}_{size}__{model}__{variant}__seed{seed}__{digest}`.

    Readable, and unique per config.
    """
    label = f"{dataset}_{size}__{model.replace(':', '-').replace('/', '-')}__{variant}__seed{seed}"
    return f"{label}__{config_digest(config)}"


def load_results(runs_dir: str | os.PathLike) -> list[RunResult]:
    """Every result record under `runs_dir` with its saved predictions, sorted by run name.

    JSON files that are not records (history.json) are passed over; records that cannot be read
    (torn, foreign, another schema, a malformed field, predictions missing or not theirs) are
    skipped with one warning naming each file.
    """
    results = []
    for path in sorted(Path(runs_dir).rglob("*.json")):
        try:
            data = json.loads(path.read_text())
            if not (isinstance(data, dict) and "schema_version" in data and "metrics" in data):
                continue
            result = RunResult.from_dict(data)
            result.predictions = result.load_predictions(path.parent)
        except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as e:
            log.warning("skipping %s: not a readable result record (%s)", path, e)
            continue
        results.append(result)
    return sorted(results, key=lambda r: r.run_name)


# What a record's fields must be for the report to read them (None is allowed where listed).
RECORD_FIELDS = {
    "dataset": (str,),
    "size": (int,),
    "model": (str,),
    "method": (str,),
    "seed": (int,),
    "metrics": (dict,),
    "config": (dict,),
    "task": (str, type(None)),
    "class_names": (list,),
    "hparams": (dict,),
    "timings": (dict,),
    "tag": (str,),
    "predictions_sha256": (str, type(None)),
    "collapsed": (bool,),
    "collapse": (dict, type(None)),
    "baseline": (str, type(None)),
}


def check_record(data: dict) -> None:
    """Refuse a record whose fields the report could not read.

    Wrong types, a test split without metrics, metrics that are not numbers.
    """
    for name, types in RECORD_FIELDS.items():
        value = data.get(name)
        if name in data and (
            not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        ):
            raise ValueError(
                f"field {name!r} is {value!r}, not {' or '.join(t.__name__ for t in types)}"
            )
    if not isinstance(data.get("metrics", {}).get("test"), dict):
        raise ValueError("field 'metrics' has no 'test' metrics")
    for split, metrics in data["metrics"].items():
        if not isinstance(metrics, dict):
            raise ValueError(f"metrics of {split!r} are {metrics!r}, not a dict")
        _check_metrics(split, metrics)


def _check_metrics(split: str, metrics: dict) -> None:
    for name in SCALARS:
        if not _number_or_none(metrics.get(name)):
            raise ValueError(f"{split} {name} is {metrics[name]!r}, not a number")
    for name, bounds in (metrics.get("ci95") or {}).items():
        if not (
            isinstance(bounds, list) and len(bounds) == 2 and all(map(_number_or_none, bounds))
        ):
            raise ValueError(f"{split} ci95 of {name} is {bounds!r}, not [lower, upper]")
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and not (
        isinstance(matrix, list)
        and all(isinstance(r, list) and all(map(_is_number, r)) for r in matrix)
    ):
        raise ValueError(f"{split} confusion_matrix is not a matrix of counts")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_none(value) -> bool:
    return value is None or _is_number(value)


def package_versions() -> dict[str, str]:
    """Versions that can change the numbers: python and the numeric stack."""
    versions = {"python": platform.python_version()}
    for name in ("medprobe", "torch", "timm", "numpy", "scikit-learn", "medmnist", "h5py"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def json_safe(value):
    """NaN/inf -> None, so the JSON stays standard: undefined metrics become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
