"""What each recipe value must be.

A bad key, type or range fails before the first run, naming its line.

`[suite]` rules are declared here; `[[probe]]`, `[[finetune]]` and `[executor]` tables take
theirs from the dataclasses that own those options (`ProbeOptions`, `ExtractOptions`,
`TrainConfig`, and `SlurmOptions`, declared here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from cache.options import ENTRY_FIELDS, ExtractOptions
from finetune.config import TrainConfig
from medprobe.cli.options import check_fields, check_value, field_names, option
from medprobe.data.validate import TASKS
from probe.options import ProbeOptions

Rule = Callable[[object], str | None]  # value -> what a valid value is, or None when it is one


def _rule(check: Callable[[object], bool], what: str) -> Rule:
    return lambda value: None if check(value) else what


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(low: int):
    return lambda value: _is_int(value) and value >= low


def _list_of(check: Callable[[object], bool], what: str) -> Rule:
    return _rule(lambda v: isinstance(v, list) and bool(v) and all(check(x) for x in v), what)


TEXT = _rule(lambda v: isinstance(v, str) and bool(v), "a non-empty string")

SUITE: dict[str, Rule] = {
    "datasets": _list_of(
        lambda v: isinstance(v, str) and bool(v), "a non-empty list of dataset names"
    ),
    "sizes": _list_of(_int_at_least(1), "a non-empty list of integers (image sizes)"),
    "seeds": _list_of(_int_at_least(0), "a non-empty list of integers"),
    "out": TEXT,
    "report": TEXT,
    "data_root": TEXT,
    "cache_root": TEXT,
    "task": _rule(lambda v: v in TASKS, f"one of {', '.join(TASKS)}"),
}

SUITE_SETS = ("seeds",)  # set per run by the suite, not by a [[probe]] or [[finetune]] table
PROBE_FIT_KEYS = tuple(k for k in field_names(ProbeOptions) if k not in SUITE_SETS)
PROBE_EXTRACT_KEYS = (*ENTRY_FIELDS, "batch_size")
PROBE: dict[str, Rule] = (
    {"backbone": TEXT}
    | {k: (lambda v, k=k: check_value(ProbeOptions, k, v)) for k in PROBE_FIT_KEYS}
    | {k: (lambda v, k=k: check_value(ExtractOptions, k, v)) for k in PROBE_EXTRACT_KEYS}
)


def extract_options(probe: dict) -> ExtractOptions:
    """How a [[probe]] table's entry is extracted."""
    return ExtractOptions(**{k: probe[k] for k in PROBE_EXTRACT_KEYS if k in probe})


def probe_options(probe: dict, seeds: tuple[int, ...]) -> ProbeOptions:
    """How a [[probe]] table's heads are fitted, over the suite's seeds."""
    return ProbeOptions(**{k: probe[k] for k in PROBE_FIT_KEYS if k in probe}, seeds=seeds)


# A [[finetune]] table sets `finetune run`'s options, except those the suite sets for every run.
FINETUNE: dict[str, Rule] = {
    k: functools.partial(check_value, TrainConfig, k)
    for k in field_names(TrainConfig)
    if k not in ("seed", "out", "resume", "skip_existing")
}


@dataclass(frozen=True)
class SlurmOptions:
    """What every job asks Slurm for: `--slurm-*` flags, or a recipe's `[executor]` table."""

    partition: str | None = option(None, "Partition of every job.", flag="slurm-partition")
    gpus_per_job: int = option(0, "GPUs of every job.", min=0, flag="slurm-gpus-per-job")
    time_min: int = option(60, "Minutes a job may run.", min=1, flag="slurm-time")
    mem_gb: int | None = option(None, "GB of memory per job.", min=1, flag="slurm-mem")
    array_parallelism: int = option(
        64, "Jobs of the array running at once.", min=1, flag="slurm-array-parallelism"
    )
    opts: tuple[str, ...] = option(
        (), "Other sbatch options as KEY=VALUE, comma-separated (e.g. account=lab).",
        flag="slurm-opt",
    )  # fmt: skip

    def __post_init__(self):
        """Refuse bad values before anything is submitted."""
        object.__setattr__(self, "opts", tuple(self.opts))
        check_fields(self)
        bad = [o for o in self.opts if not o.partition("=")[0] or "=" not in o]
        if bad:
            raise ValueError(f"--slurm-opt {bad[0]!r}: give KEY=VALUE, e.g. account=lab")

    @property
    def extra(self) -> dict[str, str]:
        """The other sbatch options, by name."""
        return {k.lstrip("-"): v for k, _, v in (o.partition("=") for o in self.opts)}


# A recipe's [executor] table: the `--slurm-*` options, by field name.
EXECUTOR: dict[str, Rule] = {
    k: functools.partial(check_value, SlurmOptions, k) for k in field_names(SlurmOptions)
}
