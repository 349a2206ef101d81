"""The `probe` command: extract frozen features once, fit heads on them, report."""

from __future__ import annotations

import click

from core import __version__
from core.cli_utils import list_backbones, list_datasets, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="probe")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Frozen-backbone probes on MedMNIST+: extract features once, then fit heads in seconds."""
    setup_logging(verbose)


@main.command()
def datasets() -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets()


@main.command()
def backbones() -> None:
    """List the registered backbones."""
    list_backbones()
