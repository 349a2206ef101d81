"""The `finetune` command: train from scratch or fine-tune end to end."""

from __future__ import annotations

import json
import os

import click

from finetune.config import TrainConfig
from medprobe import __version__
from medprobe.backbones.registry import RECIPES
from medprobe.cli.common import (
    add_verbosity,
    clean_errors_of,
    dataset_options,
    json_option,
    list_backbones,
    list_datasets,
    setup_logging,
)
from medprobe.cli.options import click_options
from medprobe.errors import UserError
from medprobe.results import json_safe

USER_ERRORS = (UserError, ValueError, FileNotFoundError, OSError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="finetune")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Train ResNet-18 from scratch or fine-tune ViT / DINOv2 end to end on MedMNIST+."""
    setup_logging(verbose)


def _recipes_epilog() -> str:
    """The per-family defaults, as `finetune run --help` ends them ("\b": click keeps the lines)."""
    lines = [f"  {recipe.describe()}" for recipe in RECIPES.values()]
    return "\n".join(
        [
            "\b",
            "Recipes: the defaults marked so, from scratch, else by the model's family (CNN or ViT):",
            *lines,
            "Selection on val AUC falls back to ACC where a class is absent from val.",
        ]
    )


@main.command("run", epilog=_recipes_epilog())
@click_options(TrainConfig)
@dataset_options
@json_option
@clean_errors_of(USER_ERRORS)
def run(as_json: bool, **options) -> None:
    """Train one model on one dataset; best epoch on val, test scored once."""
    from finetune.train import train

    # `--init-head probe` needs the probe, which the `finetune` program (`suite.cli`) hands down.
    init_head = (click.get_current_context().find_root().obj or {}).get("init_head")
    result = train(TrainConfig(**options), init_head=init_head)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    if as_json:
        brief = result.brief(options["out"]) | {k: result.hparams[k] for k in ("best_epoch", "recipe")}
        click.echo(json.dumps(json_safe(brief), indent=2))
        return
    test = {k: _number(result.metrics["test"].get(k)) for k in ("acc", "auc", "macro_f1", "balanced_acc")}
    best = f"best epoch {result.hparams['best_epoch']} on val {result.hparams['selected_on']}"
    click.echo(
        f"{result.run_name}: {best}, "
        f"test ACC {test['acc']}, AUC {test['auc']}, macro-F1 {test['macro_f1']}, "
        f"bal.ACC {test['balanced_acc']} -> {options['out']}/{result.run_name}/"
    )


def _number(value: float | None) -> str:
    """A metric as printed; undefined ones (NaN, or null in a record read back) as n/a."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


@main.command()
@json_option
def backbones(as_json: bool) -> None:
    """List the backbones that can be trained."""
    list_backbones(as_json=as_json)


main.add_command(click.Command("models", callback=backbones.callback, params=backbones.params, hidden=True))


@main.command()
@json_option
def datasets(as_json: bool) -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets(as_json=as_json)


add_verbosity(main)
