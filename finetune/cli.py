"""The `finetune` command: train from scratch or fine-tune end to end."""

from __future__ import annotations

import click

from core import __version__
from core.cli_utils import list_backbones, list_datasets, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="finetune")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Train ResNet-18 from scratch or fine-tune ViT / DINOv2 end to end on MedMNIST+."""
    setup_logging(verbose)


@main.command()
def models() -> None:
    """List the models that can be trained."""
    list_backbones()


@main.command()
def datasets() -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets()
