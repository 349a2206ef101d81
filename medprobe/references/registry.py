"""The published reference figures shipped with medprobe, loaded and checked.

A table file (`medmnist_plus.csv`) holds one line per dataset, scheme, model and metric, with a
cell per image size (`85.26±1.05` in percent, or `74.36` without a spread); `sources.toml` says
where each table was read and how its numbers were made. Loading checks every cell: a known
dataset, scheme, model and metric, a number in [0, 100], a spread only where the source reports
seeds.
"""

from __future__ import annotations

import csv
import functools
import io
import sys
from dataclasses import dataclass
from importlib import resources

from medprobe.data.specs import DATASETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

METRICS = ("acc", "auc")


@dataclass(frozen=True, kw_only=True)
class Scheme:
    """How a source trained a model: its name there, and the medprobe methods it corresponds to."""

    name: str
    label: str
    training: str
    medprobe: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Source:
    """One published table: the paper, the file and commit it was read from, and its protocol."""

    key: str
    title: str
    doi: str
    repository: str
    file: str
    commit: str
    metrics: str
    seeds: int
    input: str
    weights: str
    schemes: dict[str, Scheme]
    models: dict[str, str]  # the paper's model name -> the timm model it ran

    def url(self, dataset: str) -> str:
        """Where one dataset's table of this source is, at the commit it was read at."""
        path = self.file.format(dataset=dataset)
        return f"{self.repository}/blob/{self.commit}/{path}"


@dataclass(frozen=True, kw_only=True)
class Reference:
    """One published result: a model trained one way on one dataset at one size.

    `acc` and `auc` are (mean, std) as fractions, like medprobe's metrics; std is None where the
    source reports one value, and a metric is None where it reports none.
    """

    source: Source
    scheme: Scheme
    dataset: str
    size: int
    model: str
    acc: tuple[float, float | None] | None
    auc: tuple[float, float | None] | None

    @property
    def timm_id(self) -> str:
        """The timm model the source ran."""
        return self.source.models[self.model]

    @property
    def label(self) -> str:
        """`MedMNIST+ · DINO ViT-B/16 · linear probe`."""
        return f"{SOURCE_NAMES[self.source.key]} · {self.model} · {self.scheme.label}"

    def to_dict(self) -> dict:
        """The reference as plain JSON values, its source and protocol spelled out."""
        return {
            "dataset": self.dataset,
            "size": self.size,
            "source": SOURCE_NAMES[self.source.key],
            "model": self.model,
            "timm_id": self.timm_id,
            "scheme": self.scheme.name,
            "acc": self.acc and list(self.acc),
            "auc": self.auc and list(self.auc),
            "protocol": protocol(self),
            "cite": f"{self.source.title}, doi:{self.source.doi}",
            "url": self.source.url(self.dataset),
        }


SOURCE_NAMES = {"medmnist_plus": "MedMNIST+"}


def protocol(reference: Reference) -> str:
    """One line on how the reference was made."""
    source = reference.source
    return (
        f"{reference.scheme.training}; {source.weights}; input {source.input}; "
        f"{source.seeds} seeds; {source.metrics}"
    )


def load_references(dataset: str | None = None, size: int | None = None) -> list[Reference]:
    """Every shipped reference, or those of one dataset (and size)."""
    return [
        r
        for r in _all()
        if (dataset is None or r.dataset == dataset) and (size is None or r.size == size)
    ]


@functools.cache
def _all() -> tuple[Reference, ...]:
    found = []
    for source in _sources().values():
        text = resources.files(__package__).joinpath(source_table(source)).read_text()
        found += _parse(source, text)
    return tuple(found)


def source_table(source: Source) -> str:
    """The package file that holds a source's cells."""
    return f"{source.key}.csv"


@functools.cache
def _sources() -> dict[str, Source]:
    data = tomllib.loads(resources.files(__package__).joinpath("sources.toml").read_text())
    return {key: _source(key, entry) for key, entry in data.items()}


def _source(key: str, entry: dict) -> Source:
    schemes = {
        name: Scheme(
            name=name,
            label=s["label"],
            training=s["training"],
            medprobe=tuple(s["medprobe"]),
        )
        for name, s in entry["schemes"].items()
    }
    fields = ("title", "doi", "repository", "file", "commit", "metrics", "seeds", "input")
    return Source(
        key=key,
        **{f: entry[f] for f in fields},
        weights=entry["weights"],
        schemes=schemes,
        models=dict(entry["models"]),
    )


def _parse(source: Source, text: str) -> list[Reference]:
    """A table file's cells as references (one per dataset, scheme, model and size)."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    sizes = [int(s) for s in (reader.fieldnames or [])[4:]]
    cells: dict[tuple, dict] = {}
    for number, line in enumerate(reader, start=2):
        where = f"{source_table(source)} line {number}"
        key = _check_line(source, line, where)
        for size in sizes:
            cells.setdefault((*key, size), {})[line["metric"]] = _value(
                line[str(size)], source, where
            )
    return [
        Reference(
            source=source,
            scheme=source.schemes[scheme],
            dataset=dataset,
            size=size,
            model=model,
            acc=metrics.get("acc"),
            auc=metrics.get("auc"),
        )
        for (dataset, scheme, model, size), metrics in cells.items()
    ]


def _check_line(source: Source, line: dict, where: str) -> tuple[str, str, str]:
    checks = (
        ("dataset", DATASETS),
        ("scheme", source.schemes),
        ("model", source.models),
        ("metric", METRICS),
    )
    for column, known in checks:
        if line[column] not in known:
            raise ValueError(f"{where}: unknown {column} {line[column]!r}; known: {list(known)}")
    return line["dataset"], line["scheme"], line["model"]


def _value(cell: str, source: Source, where: str) -> tuple[float, float | None]:
    """`85.26±1.05` or `74.36` (percent) as (mean, std) fractions."""
    mean, _, std = cell.partition("±")
    values = [float(mean)] + ([float(std)] if std else [])
    if not all(0 <= v <= 100 for v in values):
        raise ValueError(f"{where}: {cell!r} is not a percentage")
    if std and source.seeds < 2:
        raise ValueError(f"{where}: {cell!r} has a spread, but its source reports one seed")
    return round(values[0] / 100, 6), round(values[1] / 100, 6) if std else None
