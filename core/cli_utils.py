"""Pieces both command-line tools share: logging setup and options that mean the same everywhere."""

from __future__ import annotations

import logging

import click

from core.backbones import BACKBONES
from core.data import DATASETS


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


def list_datasets() -> None:
    """Print every dataset with its task, channels and split sizes."""
    for flag, spec in DATASETS.items():
        sizes = "/".join(str(spec.n_samples[s]) for s in ("train", "val", "test"))
        click.echo(f"{flag:15} {spec.task:26} {spec.n_channels}ch {spec.n_classes:3d} classes  {sizes}")


def list_backbones() -> None:
    """Print every registered backbone with its timm id and feature kinds."""
    for name, spec in BACKBONES.items():
        size = spec.img_size or "native"
        click.echo(f"{name:20} {spec.model_id:40} {spec.family:4} {'+'.join(spec.features):9} {size}")
    click.echo("timm:<model_name>    any other timm model")
