"""Pieces both command-line tools share: logging setup and options that mean the same everywhere."""

from __future__ import annotations

import functools
import logging
import sys

import click

from medprobe.data import DATASETS, DEFAULT_DATASET, DEFAULT_SIZE, SIZES
from medprobe.registry import BACKBONES


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


def clean_errors_of(errors: tuple[type[Exception], ...]):
    """A decorator: `errors` become a one-line message and exit status 1 (with -v they keep their
    traceback, like every other exception); a process group (torchrun) is closed either way."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except errors as e:
                if _verbose():
                    raise
                raise click.ClickException(" ".join(str(e).split())) from e
            finally:
                _close_process_group()

        return wrapper

    return decorate


def _close_process_group() -> None:
    """Leave torchrun's process group, if a command joined one (without importing torch if not)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _verbose() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().params.get("verbose"))


def split_list(ctx, param, value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def int_list(ctx, param, value: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in split_list(ctx, param, value))
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from e
    if not values:
        raise click.BadParameter(f"expected at least one integer, got {value!r}")
    return values


def dataset_options(command, *, cache: bool = True):
    """--dataset / --size / --task / --data-root (/ --cache-root): the same in every command."""
    options = [
        click.option(
            "--dataset",
            default=DEFAULT_DATASET,
            show_default=True,
            help="MedMNIST flag (see `probe datasets`) or a path to your own .npz.",
        ),
        click.option(
            "--size",
            type=click.Choice([str(s) for s in SIZES]),
            default=str(DEFAULT_SIZE),
            show_default=True,
            callback=lambda ctx, p, v: int(v),
            help="Image size of the dataset files.",
        ),
        click.option("--task", default=None, help="Task of a custom .npz (e.g. multi-class)."),
        click.option(
            "--data-root",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder of the npz files [default: $MEDMNIST_ROOT, else ~/.medmnist].",
        ),
    ]
    if cache:
        options.append(cache_root_option)
    for option in reversed(options):
        command = option(command)
    return command


cache_root_option = click.option(
    "--cache-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Cache of features and mapped data copies [default: $MEDPROBE_CACHE, else ~/.cache/medprobe].",
)
