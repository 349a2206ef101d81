"""`probe suite RECIPE.toml`: a declared matrix of runs, skipping finished ones, ending in a report.

A recipe has a `[suite]` table (datasets, sizes, seeds, out, report, data_root, cache_root),
`[[probe]]` tables (a frozen backbone and its heads: extracted once, fitted in seconds) and
`[[finetune]]` tables (options of `finetune run`, which runs in its own process so a crash in
one run never takes the suite down and `--resume` picks it up). Every run whose result record
exists is skipped, so a re-run after a crash does only what is missing. The whole recipe is
checked before the first run starts.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from medprobe.data import get_dataset
from medprobe.metrics import SELECT_METRICS
from medprobe.registry import get_backbone
from medprobe.report import write_report
from probe import recipe_values
from probe.fit import run_probe
from probe.heads import HEADS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

SUITE_KEYS = set(recipe_values.SUITE)
PROBE_KEYS = set(recipe_values.PROBE)
EXTRACT_KEYS = ("weights", "pretrained", "batch_size", "precision", "resize", "img_size", "dtype")


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the recipe line and the valid values."""


@dataclass
class Recipe:
    path: Path
    datasets: list[str]
    sizes: list[int]
    seeds: list[int]
    out: Path
    report: Path
    data_root: str | None = None
    cache_root: str | None = None
    task: str | None = None
    probes: list[dict] = field(default_factory=list)
    finetunes: list[dict] = field(default_factory=list)


def load_recipe(path: str | Path, **overrides) -> Recipe:
    """Parse and check a recipe; `overrides` (out, data_root, cache_root, report) win over it."""
    path = Path(path)
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: {e}") from e
    unknown_tables = set(data) - {"suite", "probe", "finetune"}
    if unknown_tables:
        raise RecipeError(
            f"{path}: unknown table(s) {sorted(unknown_tables)}; use [suite], [[probe]], [[finetune]]"
        )
    suite = data.get("suite", {})
    _check_keys(suite, SUITE_KEYS, path, text, "[suite]")
    _check_values(suite, recipe_values.SUITE, path, text, "[suite]")
    name = path.stem
    values = (
        {
            "datasets": ["bloodmnist"],
            "sizes": [28],
            "seeds": [0],
            "out": f"runs/{name}",
            "report": f"report/{name}",
        }
        | suite
        | {k: v for k, v in overrides.items() if v is not None}
    )
    recipe = Recipe(
        path=path,
        **{k: v for k, v in values.items() if k not in ("out", "report")},
        out=Path(values["out"]),
        report=Path(values["report"]),
        probes=data.get("probe", []),
        finetunes=data.get("finetune", []),
    )
    _validate(recipe, text)
    return recipe


def run_suite(recipe: Recipe) -> Path:
    """Run every missing run of the recipe, then write the report; returns report.html's path."""
    for dataset in recipe.datasets:
        for size in recipe.sizes:
            for probe in recipe.probes:
                _run_probe(recipe, probe, dataset, size)
            for options in recipe.finetunes:
                for seed in recipe.seeds:
                    _run_finetune(recipe, options, dataset, size, seed)
    return write_report(recipe.out, recipe.report)


def _run_probe(recipe: Recipe, probe: dict, dataset: str, size: int) -> None:
    """Extract (instant when cached), then fit every configuration whose record is missing."""
    options = {
        k: probe[k] for k in ("features", "select", "bootstrap", "train_fraction", "shots") if k in probe
    }
    run_probe(
        dataset,
        size=size,
        backbone=probe["backbone"],
        heads=tuple(probe.get("heads", ["logreg"])),
        seeds=tuple(recipe.seeds),
        task=recipe.task,
        out=recipe.out,
        cache_root=recipe.cache_root,
        data_root=recipe.data_root,
        extract={k: probe[k] for k in EXTRACT_KEYS if k in probe},
        skip_existing=True,
        **options,
    )


def _run_finetune(recipe: Recipe, options: dict, dataset: str, size: int, seed: int) -> None:
    args = _finetune_args(recipe, options, dataset, size, seed)
    log.info("finetune %s on %s_%d seed %d", options["model"], dataset, size, seed)
    done = subprocess.run([sys.executable, "-m", "finetune", "run", *args, "--resume", "--skip-existing"])
    if done.returncode != 0:
        raise ChildProcessError(
            f"`finetune run {' '.join(args)}` failed (exit {done.returncode}); re-run the suite to resume it"
        )


def _finetune_args(recipe: Recipe, options: dict, dataset: str, size: int, seed: int) -> list[str]:
    """`finetune run` arguments of one run (without the command itself)."""
    args = ["--dataset", dataset, "--size", str(size), "--seed", str(seed), "--out", str(recipe.out)]
    for name, value in [("data_root", recipe.data_root), ("task", recipe.task), *options.items()]:
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args


def _plan_finetunes(recipe: Recipe, text: str) -> None:
    """Have `finetune plan` (the owner of its options) check every fine-tune run in one process."""
    runs = [
        (options, d, size, seed)
        for options in recipe.finetunes
        for d in recipe.datasets
        for size in recipe.sizes
        for seed in recipe.seeds
    ]
    if not runs:
        return
    lines = "".join(json.dumps(_finetune_args(recipe, *run)) + "\n" for run in runs)
    plan = subprocess.run(
        [sys.executable, "-m", "finetune", "plan"], input=lines, capture_output=True, text=True
    )
    if plan.returncode != 0:
        raise RecipeError(f"`finetune plan` failed: {plan.stderr.strip()[-500:]}")
    for run, answer in zip(runs, map(json.loads, plan.stdout.splitlines()), strict=True):
        options = run[0]
        if "error" in answer:
            line = _line(text, "model", options["model"])
            raise RecipeError(
                f"{recipe.path}:{line}: [[finetune]] model {options['model']!r}: {answer['error']}"
            )


def _validate(recipe: Recipe, text: str) -> None:
    where = str(recipe.path)
    for dataset in recipe.datasets:
        spec = _checked(get_dataset, dataset, task=recipe.task, at=(where, text, "datasets", None))
        bad = [s for s in recipe.sizes if spec.sizes and s not in spec.sizes]
        if bad:
            raise RecipeError(
                f"{where}:{_line(text, 'sizes')}: sizes {bad} not available; choose from {spec.sizes}"
            )
    for probe in recipe.probes:
        _check_keys(probe, PROBE_KEYS, recipe.path, text, "[[probe]]")
        _check_values(probe, recipe_values.PROBE, recipe.path, text, "[[probe]]")
        if "backbone" not in probe:
            raise RecipeError(f"{where}: a [[probe]] table needs `backbone = ...`")
        _checked(get_backbone, probe["backbone"], at=(where, text, "backbone", probe["backbone"]))
        unknown = [h for h in probe.get("heads", []) if h not in HEADS]
        if unknown:
            raise RecipeError(
                f"{where}:{_line(text, 'heads')}: unknown head(s) {unknown}; choose from {list(HEADS)}"
            )
        if probe.get("select", "acc") not in SELECT_METRICS:
            raise RecipeError(
                f"{where}:{_line(text, 'select')}: select must be one of {list(SELECT_METRICS)}"
            )
    for options in recipe.finetunes:
        if "model" not in options:
            raise RecipeError(f"{where}: a [[finetune]] table needs `model = ...`")
    _plan_finetunes(recipe, text)


def _check_keys(table: dict, valid: set[str], path: Path, text: str, name: str) -> None:
    unknown = sorted(set(table) - valid)
    if unknown:
        raise RecipeError(
            f"{path}:{_line(text, unknown[0])}: unknown key {unknown[0]!r} in {name}; "
            f"valid keys: {', '.join(sorted(valid))}"
        )


def _check_values(table: dict, rules: dict, path: Path, text: str, name: str) -> None:
    for key, value in table.items():
        check, what = rules[key]
        if not check(value):
            raise RecipeError(f"{path}:{_line(text, key)}: {key} in {name} must be {what}; got {value!r}")


def _checked(function, *args, at: tuple, **kwargs):
    """Call a registry lookup; its error becomes a RecipeError at the recipe line `at` names."""
    where, text, key, value = at
    try:
        return function(*args, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        raise RecipeError(f"{where}:{_line(text, key, value)}: {e}") from e


def _line(text: str, key: str, value: str | None = None) -> int:
    """1-based line of `key = ...` (with `value` on it, if given), or 0 when not found."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line) and (value is None or value in line):
            return number
    return 0
