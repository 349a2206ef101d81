"""The `finetune` program: train from scratch or fine-tune end to end.

`program()` builds it; `suite.programs` builds the installed one, handing down LP-FT's head
initializer by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import click

from finetune.config import TrainConfig
from finetune.defaults import TRAIN_DEFAULTS
from medprobe import __version__
from medprobe.cli.checks import check_inputs
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


def _defaults_epilog() -> str:
    r"""The per-family defaults that end `finetune run --help` (after "\b": kept line by line)."""
    lines = [f"  {defaults.describe()}" for defaults in TRAIN_DEFAULTS.values()]
    return "\n".join(
        [
            "\b",
            "Training defaults of the options marked so: from scratch, else by the model's family:",
            *lines,
            "Selection on val AUC falls back to ACC where a class is absent from val.",
        ]
    )


def program(*, head_initializer: Callable | None = None) -> click.Group:
    """The `finetune` program.

    `head_initializer` fits the head `--init-head probe` starts from (LP-FT:
    `suite.lpft.probe_head`, handed down by the layer that composes probe and finetune); without it
    that option fails with a message saying so.
    """

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="finetune")
    @click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
    def main(verbose: bool) -> None:
        """Train ResNet-18 from scratch or fine-tune ViT / DINOv2 end to end on MedMNIST+."""
        setup_logging(verbose)

    main.add_command(_run_command(head_initializer))
    for command in (backbones, models, datasets):
        main.add_command(command)
    return add_verbosity(main)


def _run_command(head_initializer: Callable | None) -> click.Command:
    @click.command("run", epilog=_defaults_epilog())
    @click_options(TrainConfig)
    @dataset_options
    @json_option
    @clean_errors_of(USER_ERRORS)
    def run(as_json: bool, **options) -> None:
        """Train one model on one dataset; best epoch on val, test scored once."""
        where = {k: options[k] for k in ("dataset", "size", "task", "weights")}
        cfg = TrainConfig(**options)  # contradicting flags first: they are the flags'
        check_inputs(**where, backbone=options["model"], training=True)
        _run(cfg, as_json=as_json, head_initializer=head_initializer)

    return run


def _run(cfg: TrainConfig, *, as_json: bool, head_initializer: Callable | None) -> None:
    from finetune.train import train

    result = train(cfg, init_head=head_initializer)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    if as_json:
        brief = result.brief(cfg.out) | {k: result.hparams[k] for k in ("best_epoch", "defaults")}
        click.echo(json.dumps(json_safe(brief), indent=2))
        return
    test = {
        k: _number(result.metrics["test"].get(k))
        for k in ("acc", "auc", "macro_f1", "balanced_acc")
    }
    best = f"best epoch {result.hparams['best_epoch']} on val {result.hparams['selected_on']}"
    click.echo(
        f"{result.run_name}: {best}, "
        f"test ACC {test['acc']}, AUC {test['auc']}, macro-F1 {test['macro_f1']}, "
        f"bal.ACC {test['balanced_acc']} -> {cfg.out}/{result.run_name}/"
    )


def _number(value: float | None) -> str:
    """A metric as printed; undefined ones (NaN, or null in a record read back) as n/a."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


@click.command()
@json_option
def backbones(as_json: bool) -> None:
    """List the backbones that can be trained."""
    list_backbones(as_json=as_json)


models = click.Command("models", callback=backbones.callback, params=backbones.params, hidden=True)


@click.command()
@json_option
def datasets(as_json: bool) -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets(as_json=as_json)


# `finetune` without LP-FT's head initializer (the installed one: `suite.programs`)
main = program()
