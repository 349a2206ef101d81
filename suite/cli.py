"""`probe suite`: a recipe's runs (skipping finished ones), then its report.

`suite.programs` adds it to the `probe` program.
"""

from __future__ import annotations

import json

import click

from medprobe.cli.common import cache_root_option, json_option
from probe.cli import clean_errors


@click.command("suite")
@click.argument("recipe")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Result records [default: the recipe's].",
)
@click.option(
    "--report",
    type=click.Path(file_okay=False),
    default=None,
    help="Report folder [default: the recipe's].",
)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@cache_root_option
@click.option(
    "--plan", "plan_only", is_flag=True, help="Print the runs, data and cache space; run nothing."
)
@click.option(
    "--datasets",
    default=None,
    help="Comma-separated datasets instead of the recipe's (e.g. breastmnist,pneumoniamnist).",
)
@click.option("--sizes", default=None, help="Comma-separated image sizes instead of the recipe's.")
@json_option
@click.option(
    "--baselines",
    is_flag=True,
    help="Fit every [[probe]] table's null baselines too (as its `baselines = true` would).",
)
@clean_errors
def suite_command(recipe, plan_only, baselines, datasets, sizes, as_json, **overrides):
    """Run a recipe's matrix (skipping finished runs), then write its report.

    RECIPE is a .toml file or the name of a packaged recipe: tiny, notebook_bloodmnist,
    lpft_breastmnist, breastmnist_in_context, resolution_sweep, medmnist_plus.
    """
    from suite.recipe import load_recipe

    matrix = {"datasets": _listed(datasets), "sizes": _listed(sizes, int)}
    loaded = load_recipe(recipe, **overrides, **matrix)
    if baselines:
        loaded.probes = [probe | {"baselines": True} for probe in loaded.probes]
    if not as_json:
        click.echo(
            f"{recipe}: {len(loaded.datasets)} dataset(s) x {len(loaded.sizes)} size(s), "
            f"{len(loaded.probes)} probe and {len(loaded.finetunes)} finetune entries, seeds "
            f"{loaded.seeds}"
        )
    if plan_only:
        from suite.plan import plan_suite

        plan = plan_suite(loaded)
        click.echo(json.dumps(plan.to_dict(), indent=2) if as_json else "\n".join(plan.lines()))
        return
    from suite.runner import run_suite

    click.echo(f"wrote {run_suite(loaded)}")


def _listed(text: str | None, kind=str) -> list | None:
    """`a,b` as a list (None when the option is not given)."""
    if text is None:
        return None
    try:
        return [kind(item) for item in text.split(",") if item]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated values, e.g. 28,64") from None
