"""The `probe` command: extract frozen features once, fit heads on them, report.

Only light modules are imported here; each command imports what it runs (torch, timm, h5py,
sklearn, matplotlib), so `probe --help` and the listings start at once.
"""

from __future__ import annotations

from pathlib import Path

import click

from medprobe import __version__
from medprobe.choices import HEAD_NAMES, PRECISIONS, RESIZE_MODES, STORAGE_DTYPES
from medprobe.cli_utils import (
    clean_errors_of,
    dataset_options,
    int_list,
    list_backbones,
    list_datasets,
    setup_logging,
    split_list,
)
from medprobe.data import SPLITS
from medprobe.errors import UserError
from medprobe.metrics import SELECT_METRICS

USER_ERRORS = (UserError, ValueError, FileNotFoundError, TimeoutError, OSError)  # CacheError is a UserError


clean_errors = clean_errors_of(USER_ERRORS)


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
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per forward [default: 512 on GPU, 16 on CPU].",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: bf16 on CUDA and on CPUs with bf16 units, else fp32.",
)
@click.option("--resize", type=click.Choice(RESIZE_MODES), default="bicubic", show_default=True)
@click.option("--img-size", type=int, default=None, help="Backbone input size [default: the backbone's].")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local .safetensors/.pth weights (offline stand-in for hub weights).",
)
@click.option("--pretrained/--no-pretrained", default=True, show_default=True)
@click.option("--dtype", type=click.Choice(STORAGE_DTYPES), default="float16", show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@click.option("--download/--no-download", default=True, show_default=True)
@click.option("--overwrite", is_flag=True, help="Rebuild the entry even if it exists.")
@clean_errors
def extract_command(backbone, dataset, size, task, data_root, cache_root, **options):
    """Push a dataset through a frozen backbone once and cache every feature kind."""
    from cache.extract import extract

    result = extract(
        backbone, dataset, size=size, task=task, data_root=data_root, cache_root=cache_root, **options
    )
    rate = f" ({result.images_per_second:.0f} img/s)" if result.images_per_second else ""
    if result.rank == 0:
        click.echo(f"{'reused' if result.reused else 'wrote'} {result.path}{rate}")


@main.command("fit")
@click.option("--backbone", default=None, help="Fit this backbone's entry [default: every cached backbone].")
@dataset_options
@click.option(
    "--head",
    "heads",
    default="logreg",
    show_default=True,
    callback=split_list,
    help=f"Comma-separated heads: {', '.join(HEAD_NAMES)}.",
)
@click.option(
    "--features",
    default=None,
    help="cls, mean, cls+mean or pool [default: cls+mean for ViTs, pool for CNNs].",
)
@click.option(
    "--select",
    type=click.Choice(list(SELECT_METRICS)),
    default="acc",
    show_default=True,
    help="Val metric that picks the hyper-parameters.",
)
@click.option("--seeds", default="0", show_default=True, callback=int_list, help="Comma-separated seeds.")
@click.option(
    "--train-fraction", type=float, default=None, help="Label efficiency: fit on this fraction of train."
)
@click.option(
    "--shots", type=click.IntRange(min=1), default=None, help="Label efficiency: K examples per class."
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for 95% intervals on test.",
)
@click.option("--out", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option(
    "--extract", "do_extract", is_flag=True, help="Extract the features first if they are not cached."
)
@click.option(
    "--weights", type=click.Path(dir_okay=False), default=None, help="Entries of these local weights."
)
@click.option(
    "--pretrained/--no-pretrained",
    default=None,
    help="Entries of pretrained or random-init weights [default: any; with --extract: pretrained].",
)
@click.option("--resize", type=click.Choice(RESIZE_MODES), default=None, help="Entries of this resize mode.")
@click.option("--img-size", type=int, default=None, help="Entries of this backbone input size.")
@click.option("--dtype", type=click.Choice(STORAGE_DTYPES), default=None, help="Entries of this dtype.")
@clean_errors
def fit_command(backbone, dataset, size, task, data_root, cache_root, heads, do_extract, **options):
    """Fit heads on cached features; choose on val, score test once, write one record per run.

    Entries are matched by the content of the data file; when several match (say two resize
    modes), each is fitted into its own record. --weights, --resize, --img-size, --dtype and
    --[no-]pretrained pick among them, or say how --extract builds a missing one.
    """
    from probe.entries import EntryFilter
    from probe.fit import run_probe
    from probe.summary import summary_table

    wanted = {k: options.pop(k) for k in ("weights", "pretrained", "resize", "img_size", "dtype")}
    if do_extract:
        extract_options = {k: v for k, v in wanted.items() if v is not None}
        extract_options.setdefault("pretrained", True)
    results = run_probe(
        dataset,
        size=size,
        backbone=backbone,
        heads=heads,
        task=task,
        cache_root=cache_root,
        data_root=data_root,
        extract=extract_options if do_extract else None,
        where=EntryFilter(**wanted),
        **options,
    )
    click.echo(summary_table(results))
    once = sorted({r.method for r in results if r.hparams.get("deterministic")})
    if once and len(options["seeds"]) > 1:
        click.echo(
            f"{', '.join(once)} on all of train: deterministic, so fitted once (seed 0); seeds vary nothing"
        )
    click.echo(f"{len(results)} result record(s) in {options['out']}/")


@main.command("report")
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Resamples of the paired tests against the best row.",
)
@clean_errors
def report_command(runs_dir, out, bootstrap):
    """Compare every result under RUNS_DIR: report.md, report.csv, report.html with figures."""
    from medprobe.report import write_report

    path = write_report(runs_dir, out, n_resamples=bootstrap)
    click.echo(f"wrote {path}, {Path(out) / 'report.md'} and {Path(out) / 'report.csv'}")


@main.command("suite")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Result records [default: the recipe's]."
)
@click.option(
    "--report", type=click.Path(file_okay=False), default=None, help="Report folder [default: the recipe's]."
)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def suite_command(recipe, **overrides):
    """Run a recipe's matrix (skipping finished runs), then write its report."""
    from probe.suite import load_recipe, run_suite

    plan = load_recipe(recipe, **overrides)
    click.echo(
        f"{recipe}: {len(plan.datasets)} dataset(s) x {len(plan.sizes)} size(s), "
        f"{len(plan.probes)} probe and {len(plan.finetunes)} finetune entries, seeds {plan.seeds}"
    )
    path = run_suite(plan)
    click.echo(f"wrote {path}")


@main.group("cache")
def cache_group() -> None:
    """Inspect and manage the feature cache."""


@cache_group.command("ls")
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def cache_ls(cache_root):
    """List entries: backbone, dataset, size, kinds, dtype, rows, size on disk, state."""
    from cache import store

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
    """Show one entry's key JSON, versions and extraction timings (KEY: path or key prefix)."""
    import json

    from cache import store

    info = store.resolve_entry(key, cache_root)
    click.echo(json.dumps(store.read_attrs(info.path), indent=2, sort_keys=True))


@cache_group.command("verify")
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@clean_errors
def cache_verify(cache_root):
    """Check every entry against its checksums; exit 1 if any is corrupt or unfinished."""
    from cache import store

    infos = [store.verify_entry(info.path) for info in store.list_entries(cache_root)]
    bad = [info for info in infos if not info.complete]
    for info in bad:
        click.echo(f"{info.path}: {info.problem}; {store.rebuild_hint(info.path)}")
    if bad:
        raise click.ClickException(f"{len(bad)} bad entr{'y' if len(bad) == 1 else 'ies'} of {len(infos)}")
    click.echo(f"all {len(infos)} entries complete, checksums match")


@cache_group.command("rm")
@click.argument("keys", nargs=-1, required=True)
@click.option("--cache-root", type=click.Path(file_okay=False), default=None)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@clean_errors
def cache_rm(keys, cache_root, yes):
    """Remove entries (KEYS: entry paths or key prefixes of at least 8 hex digits).

    Only the entries and their partial, progress and lock files go; an entry that an extraction
    holds is refused.
    """
    from cache import store

    infos = [store.resolve_entry(key, cache_root) for key in keys]
    size = sum(info.bytes for info in infos) / 1e6
    if not yes:
        names = ", ".join(str(info.path) for info in infos)
        if not click.confirm(f"remove {names} ({size:.1f} MB)?", default=False):
            raise click.ClickException("nothing removed")
    for info in infos:
        store.remove_entry(info.path)
        click.echo(f"removed {info.path}")


@main.command()
def datasets() -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets()


@main.command()
def backbones() -> None:
    """List the registered backbones."""
    list_backbones()
