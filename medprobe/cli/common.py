"""Pieces both command-line tools share: logging setup and options that mean the same everywhere."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from typing import TypeVar

import click

from medprobe.backbones.registry import BACKBONES
from medprobe.data import DATASETS, DEFAULT_DATASET, DEFAULT_SIZE, SIZES
from medprobe.results import json_safe

log = logging.getLogger(__name__)
_Command = TypeVar("_Command", bound=click.Command)


# Libraries whose INFO lines ("Loading pretrained weights ...", "Resized position embedding")
# are noise to a user: shown only with -v.
THIRD_PARTY = (
    "timm",
    "huggingface_hub",
    "urllib3",
    "filelock",
    "matplotlib",
    "PIL",
    "h5py",
    "mlflow",
    "alembic",
    "transformers",
)


def setup_logging(verbose: bool = False) -> None:
    """Log lines as plain messages: INFO, or DEBUG with `-v`; other libraries' at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    _third_party(verbose)


def _third_party(verbose: bool) -> None:
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def extended(group: click.Group, *commands: click.Command) -> click.Group:
    """A new group: `group`'s options, callback and commands, and `commands` too.

    `group` is left as it is: this is how a layer above adds its commands to a program below it.
    """
    every = {**group.commands, **{str(command.name): command for command in commands}}
    return click.Group(
        name=group.name,
        commands=every,
        callback=group.callback,
        context_settings=group.context_settings,
        help=group.help,
        params=group.params,
    )


def add_verbosity(command: _Command) -> _Command:
    """Accept -v/--verbose and -q/--quiet on `command` and on every subcommand below it.

    They then work after the subcommand too (`probe fit -v`), not only before it.
    """
    names = {p.name for p in command.params}
    for flags, help in (
        (["-v", "--verbose"], "Debug logging."),
        (["-q", "--quiet"], "Warnings and results only."),
    ):
        if flags[1][2:] not in names:
            option = click.Option(
                flags, is_flag=True, expose_value=False, callback=_verbosity, help=help
            )
            command.params.append(option)
    for sub in getattr(command, "commands", {}).values():
        add_verbosity(sub)
    return command


def _verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    ctx.meta[f"medprobe.{param.name}"] = True
    logging.basicConfig(format="%(message)s")  # then the group's own setup leaves the level alone
    logging.getLogger().setLevel(logging.DEBUG if param.name == "verbose" else logging.WARNING)
    _third_party(param.name == "verbose")
    if param.name == "quiet":
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch: no progress bars


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def print_rows(rows: list[dict], *, as_json: bool) -> None:
    """Rows as a JSON list, or as a table with a header, each column as wide as its widest cell."""
    if as_json:
        click.echo(json.dumps(json_safe(rows), indent=2))
        return
    if not rows:
        return
    header = list(rows[0])
    cells = [header] + [[_cell(row[k]) for k in header] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cell(value) -> str:
    if isinstance(value, list | tuple):
        return (
            "+".join(map(str, value))
            if all(isinstance(v, str) for v in value)
            else "/".join(map(str, value))
        )
    return "" if value is None else str(value)


def list_datasets(*, as_json: bool = False) -> None:
    """Print every dataset.

    Task, channels, classes, split sizes and the flips augmentation may draw.
    """
    rows = [
        {
            "dataset": flag,
            "3d": spec.volumetric,
            "task": spec.task,
            "channels": spec.n_channels,
            "classes": spec.n_classes,
            **{split: spec.n_samples[split] for split in ("train", "val", "test")},
            "sizes": list(spec.sizes),
            "flips": spec.flips,
        }
        for flag, spec in DATASETS.items()
    ]
    print_rows(rows, as_json=as_json)


def list_backbones(*, as_json: bool = False, details: bool = False) -> None:
    """Print every registered backbone: its source and id, family, features and input size.

    `details` adds each one's card (`medprobe.backbones.cards`: params, GFLOPs, feature widths,
    pretraining data, licence), which builds the models on the meta device (loads torch).
    """
    if details:
        from medprobe.backbones.cards import backbone_card

        cards = [backbone_card(name) for name in BACKBONES]
        print_rows(cards if as_json else [_card_row(c) for c in cards], as_json=as_json)
        if not as_json and any(c.get("unavailable") for c in cards):
            click.echo("–: the model's config is not here (offline); --json says why")
        return
    rows = [
        {
            "name": name,
            "source": spec.source,
            "id": spec.model_id,
            "family": spec.family,
            "features": list(spec.features),
            "input_size": spec.img_size,
            "medical": spec.about.medical if spec.about else None,
        }
        for name, spec in BACKBONES.items()
    ]
    print_rows(rows, as_json=as_json)
    if not as_json:
        click.echo(
            "timm:<model>, hf:<repo or folder>, open_clip:<model>[:<tag>]: any other model of "
            "those libraries; --details: params, GFLOPs, licence"
        )


def _card_row(card: dict) -> dict:
    """A card as one table row (the JSON keeps every field)."""
    dims = card["feature_dims"]
    return {
        "name": card["name"],
        "source": card["source"],
        "params (M)": "–" if card["params_m"] is None else f"{card['params_m']:.1f}",
        "GFLOPs": "–" if card["gflops"] is None else f"{card['gflops']:.2f}",
        "input": card["input_size"] or "–",
        "widths": "/".join(f"{k} {v}" for k, v in dims.items()) if dims else "–",
        "medical": {True: "yes", False: "no"}.get(card["medical"], ""),
        "licence": card["licence"],
        "gated": {True: "yes", False: "no"}.get(card["gated"], ""),
        "pretraining": card["pretraining"],
    }


def clean_errors_of(errors: tuple[type[Exception], ...]):
    """A decorator that turns `errors` into one line for the user.

    `errors` become a one-line message and exit status 1 (with -v they keep their traceback, like
    every other exception); a process group (torchrun) is closed either way.
    """

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
    return bool(
        context
        and (context.find_root().params.get("verbose") or context.meta.get("medprobe.verbose"))
    )


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
    help=(
        "Cache of features and mapped data copies "
        "[default: $MEDPROBE_CACHE, else ~/.cache/medprobe]."
    ),
)
