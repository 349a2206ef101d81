"""A recipe file.

`[suite]` (datasets, sizes, seeds, folders), `[[probe]]` and `[[finetune]]` tables.

The whole recipe is checked before the first run starts: every key, type and range against the
dataclass that owns it, every dataset, size, backbone, head and model against its registry. An
error names the recipe line and the valid values.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from finetune.config import TrainConfig
from medprobe.backbones.registry import check_pairing, get_backbone
from medprobe.data import DEFAULT_DATASET, DEFAULT_SIZE, get_dataset
from suite import values

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


SPELLINGS = {"model": "backbone"}  # a [[finetune]] key -> the other word for it recipes may use
PACKAGED = Path(__file__).parent / "recipes"  # shipped with the package: `probe suite tiny`


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the recipe line and the valid values."""


def packaged_recipes() -> list[str]:
    """The names of the recipes shipped with medprobe."""
    return sorted(p.stem for p in PACKAGED.glob("*.toml"))


def find_recipe(name: str | Path) -> Path:
    """A recipe file's path.

    `name` itself when it is a file, else the packaged recipe of that name.
    """
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED / f"{path.stem if path.suffix == '.toml' else name}.toml"
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    known = ", ".join(packaged_recipes())
    raise RecipeError(
        f"no recipe file {name} and no packaged recipe of that name; packaged: {known}"
    )


@dataclass
class Recipe:
    """A checked recipe: its `[suite]` values and its probe and fine-tune tables."""

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
    executor: dict = field(default_factory=dict)  # [executor]: `suite.values.SlurmOptions` fields


def load_recipe(path: str | Path, **overrides) -> Recipe:
    """Parse and check a recipe (a file, or a packaged recipe's name).

    `overrides` (out, data_root, cache_root, report) win over it.
    """
    path = find_recipe(path)
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: {e}") from e
    unknown_tables = set(data) - {"suite", "probe", "finetune", "executor"}
    if unknown_tables:
        raise RecipeError(
            f"{path}: unknown table(s) {sorted(unknown_tables)}; use [suite], [[probe]], "
            "[[finetune]], [executor]"
        )
    at = _Where(path, text)
    suite = data.get("suite", {})
    at.check_table(suite, values.SUITE, "[suite]")
    at.check_table(data.get("executor", {}), values.EXECUTOR, "[executor]")
    defaults = {
        "datasets": [DEFAULT_DATASET],
        "sizes": [DEFAULT_SIZE],
        "seeds": [0],
        "out": f"runs/{path.stem}",
        "report": f"report/{path.stem}",
    }
    settings = defaults | suite | {k: v for k, v in overrides.items() if v is not None}
    settings["out"], settings["report"] = Path(settings["out"]), Path(settings["report"])
    # One word for the network in both tables: [[finetune]] takes `backbone` as [[probe]] does.
    finetunes = [_renamed(t, SPELLINGS["model"], "model") for t in data.get("finetune", [])]
    tables = {"probes": data.get("probe", []), "finetunes": finetunes}
    recipe = Recipe(path=path, **settings, **tables, executor=data.get("executor", {}))
    _check_datasets(recipe, at)
    if not recipe.probes and not recipe.finetunes:
        raise RecipeError(f"{path}: nothing to run; add a [[probe]] or [[finetune]] table")
    for probe in recipe.probes:
        _check_probe(probe, at)
    for options in recipe.finetunes:
        _check_finetune(recipe, options, at)
    return recipe


def _renamed(table: dict, old: str, new: str) -> dict:
    if old not in table or new in table:
        return table
    return {new if k == old else k: v for k, v in table.items()}


def finetune_config(
    recipe: Recipe, options: dict, dataset: str, size: int, seed: int
) -> TrainConfig:
    """The configuration of one fine-tune run of the recipe (resumed, or skipped when recorded)."""
    return TrainConfig(
        **options,
        dataset=dataset,
        size=size,
        seed=seed,
        task=recipe.task,
        data_root=recipe.data_root,
        out=str(recipe.out),
        resume=True,
        skip_existing=True,
    )


def _check_datasets(recipe: Recipe, at: _Where) -> None:
    for dataset in recipe.datasets:
        spec = at.call(get_dataset, dataset, task=recipe.task, key="datasets")
        bad = [s for s in recipe.sizes if spec.sizes and s not in spec.sizes]
        if bad:
            raise RecipeError(
                f"{at.line('sizes')}: sizes {bad} not available; choose from {spec.sizes}"
            )


def _check_probe(probe: dict, at: _Where) -> None:
    if "backbone" not in probe:
        raise RecipeError(f"{at.path}: a [[probe]] table needs `backbone = ...`")
    at.check_table(probe, values.PROBE, "[[probe]]")
    where = dict(key="backbone", value=probe["backbone"])
    spec = at.call(get_backbone, probe["backbone"], **where)
    at.call(check_pairing, spec, dataset="", volumes=False, training=False, **where)
    at.call(values.probe_options, probe, (0,), **where)
    extract = at.call(values.extract_options, probe, **where)
    if extract.weights is not None and not Path(extract.weights).is_file():
        raise RecipeError(f"{at.line('weights')}: weights file {extract.weights} does not exist")


def _check_finetune(recipe: Recipe, options: dict, at: _Where) -> None:
    """Check a [[finetune]] table as `finetune run` would, per dataset, before anything runs."""
    from finetune.setup import check_config  # torch: only for recipes that fine-tune

    if "model" not in options:
        raise RecipeError(
            f"{at.path}: a [[finetune]] table needs `backbone = ...` (or `model = ...`)"
        )
    what = f"[[finetune]] model {options['model']!r}"
    at.check_table(options, values.FINETUNE, what)
    for dataset in recipe.datasets:
        where = dict(key="model", value=options["model"], what=what)
        cfg = at.call(finetune_config, recipe, options, dataset, recipe.sizes[0], 0, **where)
        at.call(check_config, cfg, **where)


@dataclass(frozen=True)
class _Where:
    """The recipe's path and text, to name the line of a bad value."""

    path: Path
    text: str

    def line(self, key: str, value: str | None = None) -> str:
        """`path:N`, N the 1-based line of `key = ...` (with `value` on it, if given), or 0."""
        spellings = "|".join(map(re.escape, {key, SPELLINGS.get(key, key)}))
        pattern = re.compile(rf"^\s*(?:{spellings})\s*=")
        for number, line in enumerate(self.text.splitlines(), 1):
            if pattern.match(line) and (value is None or value in line):
                return f"{self.path}:{number}"
        return f"{self.path}:0"

    def check_table(self, table: dict, rules: dict[str, values.Rule], name: str) -> None:
        unknown = sorted(set(table) - set(rules))
        if unknown:
            raise RecipeError(
                f"{self.line(unknown[0])}: unknown key {unknown[0]!r} in {name}; "
                f"valid keys: {', '.join(sorted(rules))}"
            )
        for key, value in table.items():
            wanted = rules[key](value)
            if wanted:
                raise RecipeError(
                    f"{self.line(key)}: {key} in {name} must be {wanted}; got {value!r}"
                )

    def call(self, function, *args, key: str, value: str | None = None, what: str = "", **kwargs):
        """Call a lookup or check; its user error becomes a RecipeError at the line of `key`."""
        try:
            return function(*args, **kwargs)
        except (ValueError, FileNotFoundError) as e:
            raise RecipeError(f"{self.line(key, value)}: {what + ': ' if what else ''}{e}") from e
