"""The installed programs: `probe` with `suite` added, and `finetune` with LP-FT's probe head.

The suite composes probe and finetune, which know nothing of it (they sit below it): the installed
`probe` command and `python -m probe` run this module's `main`, which is `probe.cli.main` plus
`suite`; `finetune` and `python -m finetune` run `finetune_main`, which is `finetune.cli.main` given
`suite.lpft.probe_head` for `--init-head probe`.
"""

from __future__ import annotations

import click

from finetune.cli import main as finetune_cli
from medprobe.cli.common import add_verbosity, cache_root_option
from probe.cli import clean_errors
from probe.cli import main as probe_main


@click.command("suite")
@click.argument("recipe")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Result records [default: the recipe's]."
)
@click.option(
    "--report", type=click.Path(file_okay=False), default=None, help="Report folder [default: the recipe's]."
)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@cache_root_option
@click.option("--plan", "plan_only", is_flag=True, help="Print the runs, data and cache space; run nothing.")
@clean_errors
def suite_command(recipe, plan_only, **overrides):
    """Run a recipe's matrix (skipping finished runs), then write its report.

    RECIPE is a .toml file or the name of a packaged recipe: tiny, notebook_bloodmnist,
    lpft_breastmnist, resolution_sweep, medmnist_plus.
    """
    from suite.recipe import load_recipe

    loaded = load_recipe(recipe, **overrides)
    click.echo(
        f"{recipe}: {len(loaded.datasets)} dataset(s) x {len(loaded.sizes)} size(s), "
        f"{len(loaded.probes)} probe and {len(loaded.finetunes)} finetune entries, seeds {loaded.seeds}"
    )
    if plan_only:
        from suite.plan import plan_suite

        click.echo("\n".join(plan_suite(loaded).lines()))
        return
    from suite.runner import run_suite

    click.echo(f"wrote {run_suite(loaded)}")


probe_main.add_command(add_verbosity(suite_command))
main = probe_main


def finetune_main() -> None:
    """The `finetune` program."""
    finetune_cli(obj={"init_head": _probe_head})


def _probe_head(*args, **kwargs) -> dict:
    from suite.lpft import probe_head  # torch, timm, h5py: only when a run asks for it

    return probe_head(*args, **kwargs)
