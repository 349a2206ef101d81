"""The `probe` command: extract frozen features once, fit heads on them, report."""

from __future__ import annotations

import functools

import click
import torch.distributed as dist

from cache import store
from cache.extract import PRECISIONS, extract
from cache.store import CacheError
from core import __version__
from core.backbones import WeightsUnavailableError
from core.cli_utils import list_backbones, list_datasets, setup_logging
from core.data import SIZES, SPLITS
from core.preprocess import RESIZE_MODES

USER_ERRORS = (ValueError, FileNotFoundError, CacheError, WeightsUnavailableError, TimeoutError, OSError)


def clean_errors(command):
    """Turn the library's known exceptions into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as e:
            raise click.ClickException(str(e)) from e
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    return wrapper


def split_list(ctx, param, value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items


def dataset_options(command):
    """--dataset / --size / --task / --data-root, the same for every command that reads data."""
    options = [
        click.option("--dataset", default="bloodmnist", show_default=True,
                     help="MedMNIST flag (see `probe datasets`) or a path to your own .npz."),
        click.option("--size", type=click.Choice([str(s) for s in SIZES]), default="28", show_default=True,
                     callback=lambda ctx, p, v: int(v), help="Image size of the dataset files."),
        click.option("--task", default=None, help="Task of a custom .npz (e.g. multi-class)."),
        click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Folder of the npz files [default: $MEDMNIST_ROOT, else ~/.medmnist]."),
        click.option("--cache-root", type=click.Path(file_okay=False), default=None,
                     help="Feature cache [default: $MEDPROBE_CACHE, else ~/.cache/medprobe]."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="probe")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Frozen-backbone probes on MedMNIST+: extract features once, then fit heads in seconds."""
    setup_logging(verbose)


@main.command("extract")
@click.option("--backbone", required=True, help="Registry name (see `probe backbones`) or timm:<model>.")
@dataset_options
@click.option("--splits", default=",".join(SPLITS), show_default=True, callback=split_list)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: bf16 on CUDA and on CPUs with bf16 units, else fp32.")  # fmt: skip
@click.option("--resize", type=click.Choice(RESIZE_MODES), default="bicubic", show_default=True)
@click.option("--img-size", type=int, default=None, help="Backbone input size [default: the backbone's].")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Local .safetensors/.pth weights (offline stand-in for hub weights).")  # fmt: skip
@click.option("--pretrained/--no-pretrained", default=True, show_default=True)
@click.option("--dtype", type=click.Choice(store.STORAGE_DTYPES), default="float16", show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@click.option("--download/--no-download", default=True, show_default=True)
@click.option("--overwrite", is_flag=True, help="Rebuild the entry even if it exists.")
@clean_errors
def extract_command(backbone, dataset, size, task, data_root, cache_root, **options):
    """Push a dataset through a frozen backbone once and cache every feature kind."""
    result = extract(
        backbone, dataset, size=size, task=task, data_root=data_root, cache_root=cache_root, **options
    )
    rate = f" ({result.images_per_second:.0f} img/s)" if result.images_per_second else ""
    if result.rank == 0:
        click.echo(f"{'reused' if result.reused else 'wrote'} {result.path}{rate}")


@main.group("cache")
def cache_group() -> None:
    """Inspect and manage the feature cache."""


@cache_group.command("ls")
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def cache_ls(cache_root):
    """List entries: backbone, dataset, size, kinds, dtype, rows, size on disk, state."""
    entries = store.list_entries(cache_root)
    if not entries:
        click.echo(f"no entries under {store.cache_root(cache_root)}")
    for info in entries:
        key = info.key
        state = "complete" if info.complete else f"INCOMPLETE ({info.problem})"
        if key is None:
            click.echo(f"{info.path.name}  {state}")
            continue
        rows = "/".join(str(info.rows.get(s, 0)) for s in key.splits)
        click.echo(
            f"{key.digest[:16]}  {key.backbone:16} {key.dataset}_{key.size:<4} {'+'.join(key.features):9} "
            f"{key.dtype:8} {key.precision:5} rows {rows:18} {info.bytes / 1e6:8.1f} MB  {state}"
        )


@cache_group.command("info")
@click.argument("key")
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def cache_info(key, cache_root):
    """Show one entry's key JSON, versions and extraction timings (KEY: digest prefix or path)."""
    import json

    info = _find_one(key, cache_root)
    click.echo(json.dumps(store.read_attrs(info.path), indent=2, sort_keys=True))


@cache_group.command("verify")
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def cache_verify(cache_root):
    """Check every entry; exit 1 if any is damaged or unfinished."""
    bad = [info for info in store.list_entries(cache_root) if not info.complete]
    for info in bad:
        click.echo(f"{info.path}: {info.problem}; {store.rebuild_hint(info.path)}")
    if bad:
        raise click.ClickException(f"{len(bad)} bad entr{'y' if len(bad) == 1 else 'ies'}")
    click.echo("all entries complete")


@cache_group.command("rm")
@click.argument("keys", nargs=-1, required=True)
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def cache_rm(keys, cache_root):
    """Remove entries (KEYS: digest prefixes or paths), with their partial and lock files."""
    for key in keys:
        info = _find_one(key, cache_root)
        store.remove_entry(info.path)
        click.echo(f"removed {info.path}")


def _find_one(key: str, cache_root) -> store.EntryInfo:
    matches = [
        info
        for info in store.list_entries(cache_root)
        if str(info.path) == key or info.path.name.startswith(key)
    ]
    if len(matches) != 1:
        raise click.ClickException(f"{len(matches)} entries match {key!r}; see `probe cache ls`")
    return matches[0]


@main.command()
def datasets() -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets()


@main.command()
def backbones() -> None:
    """List the registered backbones."""
    list_backbones()
