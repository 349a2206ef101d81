"""The `probe` command: extract frozen features once, fit heads on them, report.

Only light modules are imported here; each command imports what it runs (torch, timm, h5py,
sklearn, matplotlib), so `probe --help` and the listings start at once.
"""

from __future__ import annotations

from pathlib import Path

import click

from cache.options import EntryFilter, ExtractOptions
from medprobe import __version__
from medprobe.cli.checks import check_inputs
from medprobe.cli.common import (
    add_verbosity,
    cache_root_option,
    clean_errors_of,
    dataset_options,
    json_option,
    list_backbones,
    list_datasets,
    print_rows,
    setup_logging,
)
from medprobe.cli.options import click_options, field_names
from medprobe.errors import UserError
from medprobe.metrics import MAX_RESAMPLES
from probe.options import ProbeOptions

# CacheError is a UserError
USER_ERRORS = (UserError, ValueError, FileNotFoundError, TimeoutError, OSError)


clean_errors = clean_errors_of(USER_ERRORS)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="probe")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Frozen-backbone probes on MedMNIST+: extract features once, then fit heads in seconds."""
    setup_logging(verbose)


@main.command("extract")
@click.option(
    "--backbone",
    required=True,
    help="Registry name (see `probe backbones`), timm:<model>, hf:<repo or saved folder> or "
    "open_clip:<model>[:<tag>].",
)
@dataset_options
@click_options(ExtractOptions)
@clean_errors
def extract_command(backbone, dataset, size, task, data_root, cache_root, **options):
    """Push a dataset through a frozen backbone once and cache every feature kind."""
    extract_options = ExtractOptions(**options)  # contradicting flags first: they are the flags'
    check_inputs(
        dataset=dataset, size=size, task=task, backbone=backbone, weights=options["weights"]
    )
    from cache.extract import extract

    result = extract(
        backbone,
        dataset,
        size=size,
        task=task,
        data_root=data_root,
        cache_root=cache_root,
        options=extract_options,
    )
    rate = f" ({result.images_per_second:.0f} img/s)" if result.images_per_second else ""
    if result.rank == 0:
        click.echo(f"{'reused' if result.reused else 'wrote'} {result.path}{rate}")


@main.command("fit")
@click.option(
    "--backbone", default=None, help="Fit this backbone's entry [default: every cached backbone]."
)
@dataset_options
@click_options(ProbeOptions)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    help="Folder of the result records (one JSON and one .npz of predictions per run).",
)
@click.option(
    "--extract",
    "do_extract",
    is_flag=True,
    help="Extract the features first if they are not cached.",
)
@click_options(EntryFilter)
@json_option
@clean_errors
def fit_command(
    backbone, dataset, size, task, data_root, cache_root, out, do_extract, as_json, **options
):
    """Fit heads on cached features; choose on val, score test once, write one record per run.

    Entries are matched by the content of the data file; when several match (say two resize
    modes), each is fitted into its own record. --weights, --precision, --resize, --img-size,
    --dtype and --[no-]pretrained pick among them, or say how --extract builds a missing one.
    """
    wanted = EntryFilter(**{k: options.pop(k) for k in field_names(EntryFilter)})
    probe_options = ProbeOptions(**options)
    if do_extract:
        wanted.to_extract()  # contradicting flags are refused as the flags they are
    check_inputs(dataset=dataset, size=size, task=task, backbone=backbone, weights=wanted.weights)
    from probe.run import run_probe
    from probe.summary import summary_rows

    results = run_probe(
        dataset,
        size=size,
        backbone=backbone,
        options=probe_options,
        task=task,
        cache_root=cache_root,
        data_root=data_root,
        out=out,
        extract=wanted.to_extract() if do_extract else None,
        where=wanted,
    )
    if as_json:
        print_rows([r.brief(out) for r in results], as_json=True)
        return
    print_rows(summary_rows(results), as_json=False)
    once = sorted({r.method for r in results if r.hparams.get("deterministic")})
    if once and len(probe_options.seeds) > 1:
        click.echo(
            f"{', '.join(once)} on all of train: deterministic, so fitted once (seed 0); seeds "
            "vary nothing"
        )
    click.echo(f"{len(results)} result record(s) in {out}/")


@main.command("report")
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False),
    default="report",
    show_default=True,
    help="Folder for report.md, .csv, .tex, .html and figures/.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=100, max=MAX_RESAMPLES),
    default=1000,
    show_default=True,
    help="Resamples of the paired tests against the best row.",
)
@clean_errors
def report_command(runs_dir, out, bootstrap):
    """Compare every result under RUNS_DIR: report.md, report.csv, report.html with figures."""
    from medprobe.report import write_report

    path = write_report(runs_dir, out, n_resamples=bootstrap)
    names = ", ".join(str(Path(out) / f"report.{ext}") for ext in ("md", "csv", "tex"))
    click.echo(f"wrote {path}, {names} and {Path(out) / 'figures'}/ (PNG, PDF, SVG)")


@main.group("cache")
def cache_group() -> None:
    """Inspect and manage the feature cache."""


@cache_group.command("ls")
@cache_root_option
@json_option
@clean_errors
def cache_ls(cache_root, as_json):
    """List entries: key, backbone, dataset, size, kinds, dtype, precision, rows, MB, state."""
    from cache import store

    entries = store.list_entries(cache_root)
    if not entries and not as_json:
        click.echo(f"no entries under {store.cache_root(cache_root)}")
    print_rows([_entry_row(info) for info in entries], as_json=as_json)


def _entry_row(info) -> dict:
    from cache.files import name_digest

    key = info.key
    return {
        "key": name_digest(info.path),
        "backbone": key.backbone if key else None,
        "data": f"{key.dataset}_{key.size}" if key else None,
        "features": list(key.features) if key else None,
        "dtype": key.dtype if key else None,
        "precision": key.precision if key else None,
        "rows": [info.rows.get(s, 0) for s in key.splits] if key else None,
        "MB": round(info.bytes / 1e6, 1),
        "state": "complete" if info.complete else f"INCOMPLETE ({info.problem})",
        "path": str(info.path),
    }


@cache_group.command("info")
@click.argument("key")
@cache_root_option
@clean_errors
def cache_info(key, cache_root):
    """Show one entry's key JSON, versions and extraction timings (KEY: path or key prefix)."""
    import json

    from cache import store

    info = store.resolve_entry(key, cache_root)
    click.echo(json.dumps(store.read_attrs(info.path), indent=2, sort_keys=True))


@cache_group.command("verify")
@cache_root_option
@clean_errors
def cache_verify(cache_root):
    """Check every entry against its checksums; exit 1 if any is corrupt or unfinished."""
    from cache import store

    infos = [store.verify_entry(info.path) for info in store.list_entries(cache_root)]
    bad = [info for info in infos if not info.complete]
    for info in bad:
        click.echo(f"{info.path}: {info.problem}; {store.rebuild_hint(info.path)}")
    if bad:
        raise click.ClickException(
            f"{len(bad)} bad entr{'y' if len(bad) == 1 else 'ies'} of {len(infos)}"
        )
    click.echo(f"all {len(infos)} entries complete, checksums match")


@cache_group.command("rm")
@click.argument("keys", nargs=-1, required=True)
@cache_root_option
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
@json_option
def datasets(as_json: bool) -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets(as_json=as_json)


@main.command()
@click.option(
    "--details",
    is_flag=True,
    help="Each one's card: params, GFLOPs per image, feature widths, pretraining data, licence.",
)
@json_option
def backbones(details: bool, as_json: bool) -> None:
    """List the registered backbones."""
    list_backbones(as_json=as_json, details=details)


@main.command()
@click.argument("dataset", required=False)
@click.option("--size", type=click.Choice(["28", "64", "128", "224"]), help="Only this image size.")
@json_option
@clean_errors
def references(dataset, size, as_json) -> None:
    """List published reference figures (test ACC / AUC) with their source and protocol."""
    from medprobe.data import get_dataset
    from medprobe.references import load_references

    if dataset is not None:
        get_dataset(dataset)  # an unknown name is refused with the valid ones
    found = load_references(dataset, int(size) if size else None)
    if not found and not as_json:
        held = sorted({r.dataset for r in load_references()})
        click.echo(f"no reference figures for {dataset} here; the registry holds {', '.join(held)}")
        return
    if as_json:
        print_rows([r.to_dict() for r in found], as_json=True)
        return
    print_rows([_reference_row(r) for r in found], as_json=False)
    for url in sorted({r.source.url(r.dataset) for r in found}):
        click.echo(f"source: {url}")
    for note in sorted({f"{r.scheme.label}: {r.scheme.training}" for r in found}):
        click.echo(f"protocol, {note}")


def _reference_row(reference) -> dict:
    def cell(value):
        return (
            "–" if value is None else f"{value[0]:.4f}" + (f" ± {value[1]:.4f}" if value[1] else "")
        )

    return {
        "dataset": reference.dataset,
        "size": reference.size,
        "source": reference.label.split(" · ")[0],
        "model": reference.model,
        "scheme": reference.scheme.label,
        "test ACC": cell(reference.acc),
        "test AUC": cell(reference.auc),
        "input": reference.source.input,
    }


add_verbosity(main)
