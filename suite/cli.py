"""`probe suite`: a recipe's runs (skipping finished ones), then its report.

`suite.programs` adds it to the `probe` program.
"""

from __future__ import annotations

import click

from medprobe.cli.common import cache_root_option
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
    "--baselines",
    is_flag=True,
    help="Fit every [[probe]] table's null baselines too (as its `baselines = true` would).",
)
@clean_errors
def suite_command(recipe, plan_only, baselines, **overrides):
    """Run a recipe's matrix (skipping finished runs), then write its report.

    RECIPE is a .toml file or the name of a packaged recipe: tiny, notebook_bloodmnist,
    lpft_breastmnist, breastmnist_in_context, resolution_sweep, medmnist_plus.
    """
    from suite.recipe import load_recipe

    loaded = load_recipe(recipe, **overrides)
    if baselines:
        loaded.probes = [probe | {"baselines": True} for probe in loaded.probes]
    click.echo(
        f"{recipe}: {len(loaded.datasets)} dataset(s) x {len(loaded.sizes)} size(s), "
        f"{len(loaded.probes)} probe and {len(loaded.finetunes)} finetune entries, seeds "
        f"{loaded.seeds}"
    )
    if plan_only:
        from suite.plan import plan_suite

        click.echo("\n".join(plan_suite(loaded).lines()))
        return
    from suite.runner import run_suite

    click.echo(f"wrote {run_suite(loaded)}")
