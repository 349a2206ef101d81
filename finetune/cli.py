"""The `finetune` command: train from scratch or fine-tune end to end."""

from __future__ import annotations

import os

import click

from finetune.config import TrainConfig
from medprobe import __version__
from medprobe.cli_utils import (
    add_verbosity,
    clean_errors_of,
    dataset_options,
    json_option,
    list_backbones,
    list_datasets,
    setup_logging,
)
from medprobe.errors import UserError
from medprobe.options import click_options

USER_ERRORS = (UserError, ValueError, FileNotFoundError, OSError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="finetune")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Train ResNet-18 from scratch or fine-tune ViT / DINOv2 end to end on MedMNIST+."""
    setup_logging(verbose)


@main.command("run")
@click_options(TrainConfig)
@dataset_options
@clean_errors_of(USER_ERRORS)
def run(**options) -> None:
    """Train one model on one dataset; best epoch on val, test scored once."""
    from finetune.train import train

    result = train(TrainConfig(**options))
    if int(os.environ.get("RANK", 0)) == 0:
        test = {k: _number(result.metrics["test"].get(k)) for k in ("acc", "auc", "macro_f1")}
        click.echo(
            f"{result.run_name}: best epoch {result.hparams['best_epoch']}, "
            f"test ACC {test['acc']}, AUC {test['auc']}, macro-F1 {test['macro_f1']} "
            f"-> {options['out']}/{result.run_name}/"
        )


def _number(value: float | None) -> str:
    """A metric as printed; undefined ones (NaN, or null in a record read back) as n/a."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


@main.command()
@json_option
def models(as_json: bool) -> None:
    """List the models that can be trained."""
    list_backbones(as_json=as_json)


@main.command()
@json_option
def datasets(as_json: bool) -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets(as_json=as_json)


add_verbosity(main)
