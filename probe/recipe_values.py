"""What each recipe value must be, so a bad type or range fails before the first run, naming its line."""

from __future__ import annotations

from collections.abc import Callable

from medprobe.choices import PRECISIONS, RESIZE_MODES, STORAGE_DTYPES
from medprobe.metrics import SELECT_METRICS
from medprobe.tasks import TASKS

Rule = tuple[Callable[[object], bool], str]  # (check, what a valid value is)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def one_of(choices) -> Rule:
    return (lambda v: isinstance(v, str) and v in choices, f"one of {', '.join(choices)}")


def integer(low: int) -> Rule:
    return (lambda v: _is_int(v) and v >= low, f"an integer >= {low}")


def list_of(rule: Rule, what: str) -> Rule:
    check, _ = rule
    return (
        lambda v: isinstance(v, list) and bool(v) and all(check(x) for x in v),
        f"a non-empty list of {what}",
    )


TEXT: Rule = (lambda v: isinstance(v, str) and bool(v), "a non-empty string")
BOOLEAN: Rule = (lambda v: isinstance(v, bool), "true or false")
FRACTION: Rule = (lambda v: (_is_int(v) or isinstance(v, float)) and 0 < v <= 1, "a number in (0, 1]")

SUITE: dict[str, Rule] = {
    "datasets": list_of(TEXT, "dataset names"),
    "sizes": list_of(integer(1), "integers (image sizes)"),
    "seeds": list_of(integer(0), "integers"),
    "out": TEXT,
    "report": TEXT,
    "data_root": TEXT,
    "cache_root": TEXT,
    "task": one_of(TASKS),
}
PROBE: dict[str, Rule] = {
    "backbone": TEXT,
    "heads": list_of(TEXT, "head names"),
    "weights": TEXT,
    "pretrained": BOOLEAN,
    "features": TEXT,
    "select": one_of(tuple(SELECT_METRICS)),
    "batch_size": integer(1),
    "precision": one_of(PRECISIONS),
    "resize": one_of(RESIZE_MODES),
    "img_size": integer(1),
    "dtype": one_of(STORAGE_DTYPES),
    "bootstrap": integer(0),
    "train_fraction": FRACTION,
    "shots": integer(1),
}
