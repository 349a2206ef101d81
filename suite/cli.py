"""`probe suite`: a recipe's runs (skipping finished ones), then its report.

`suite.programs` adds it to the `probe` program.
"""

from __future__ import annotations

import json
import shlex

import click

from medprobe.cli.common import cache_root_option, json_option, print_rows
from medprobe.cli.hints import command_line
from medprobe.cli.options import click_options, field_names
from probe.cli import clean_errors
from suite.values import SlurmOptions


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
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Units (a probe table's extraction and fits; a fine-tune) run at once, each in its own "
    "process, one GPU each when there are GPUs; logs in {out}/logs/.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="slurm: submit one job per unit (then one for the report) through submitit.",
)
@click_options(SlurmOptions)
@click.option("--status", "show_status", is_flag=True,
              help="Per unit: done, running, queued, failed (its log's last line).")  # fmt: skip
@click.option("--collect", is_flag=True, help="Write the report from the records there are.")
@click.option(
    "--baselines",
    is_flag=True,
    help="Fit every [[probe]] table's null baselines too (as its `baselines = true` would).",
)
@clean_errors
def suite_command(
    recipe, plan_only, baselines, jobs, datasets, sizes, as_json, executor, show_status, collect,
    **overrides,
):  # fmt: skip
    """Run a recipe's matrix (skipping finished runs), then write its report.

    RECIPE is a .toml file or the name of a packaged recipe: tiny, notebook_bloodmnist,
    lpft_breastmnist, breastmnist_in_context, resolution_sweep, medmnist_plus.
    """
    from suite.recipe import load_recipe

    slurm_args = {k: overrides.pop(k) for k in field_names(SlurmOptions)}
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
        if executor == "slurm" and not as_json:
            from suite.slurm import plan_lines

            click.echo("\n".join(["", *plan_lines(loaded, _slurm_options(loaded, slurm_args))]))
        return
    if show_status:
        from suite.slurm import status

        print_rows(status(loaded), as_json=as_json)
        return
    if collect:
        from medprobe.report import write_report

        click.echo(f"wrote {write_report(loaded.out, loaded.report)}")
        return
    if executor == "slurm":
        given = overrides | {"datasets": datasets, "sizes": sizes}
        hint = command_line(f"probe suite {shlex.quote(recipe)}", **given)
        _submit(loaded, slurm_args, status_hint=hint)
        return
    from suite.runner import run_suite

    click.echo(f"wrote {run_suite(loaded, jobs=jobs)}")


def _slurm_options(recipe, slurm_args: dict) -> SlurmOptions:
    """The recipe's [executor] values, those given on the command line winning."""
    context = click.get_current_context()
    given = {
        k: v
        for k, v in slurm_args.items()
        if context.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE
    }
    return SlurmOptions(**(recipe.executor | given))


def _submit(recipe, slurm_args: dict, *, status_hint: str) -> None:
    from suite.slurm import submit

    options = _slurm_options(recipe, slurm_args)
    ids = submit(recipe, options)
    for unit, job in ids.items():
        click.echo(f"{job}  {unit}")
    click.echo(
        f"submitted {len(ids)} job(s); logs in {recipe.out}/slurm/<job>/; "
        f"see `{status_hint} --status`"
    )


def _listed(text: str | None, kind=str) -> list | None:
    """`a,b` as a list (None when the option is not given)."""
    if text is None:
        return None
    try:
        return [kind(item) for item in text.split(",") if item]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated values, e.g. 28,64") from None
