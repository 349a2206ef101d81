"""The `finetune` command: train from scratch or fine-tune end to end."""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from finetune.config import AUGMENTS, FREEZE_HELP, TrainConfig
from medprobe import __version__
from medprobe.choices import PRECISIONS
from medprobe.cli_utils import clean_errors_of, dataset_options, list_backbones, list_datasets, setup_logging
from medprobe.errors import UserError
from medprobe.metrics import SELECT_METRICS

USER_ERRORS = (UserError, ValueError, FileNotFoundError, OSError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="finetune")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Train ResNet-18 from scratch or fine-tune ViT / DINOv2 end to end on MedMNIST+."""
    setup_logging(verbose)


@main.command("run")
@click.option("--model", default="resnet18", show_default=True, help="Registry name (see `finetune models`).")
@functools.partial(dataset_options, cache=False)
@click.option(
    "--img-size",
    type=int,
    default=None,
    help="Input size [default: dataset size for CNNs from scratch, else the model's].",
)
@click.option(
    "--pretrained/--no-pretrained",
    default=None,
    help="[default: scratch for resnet18, pretrained for the others]",
)
@click.option(
    "--weights", type=click.Path(dir_okay=False), default=None, help="Local .safetensors/.pth weights."
)
@click.option("--freeze", default="none", show_default=True, help=FREEZE_HELP)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=1e-5, show_default=True)
@click.option("--warmup", type=float, default=1.0, show_default=True, help="Epochs of linear warmup.")
@click.option("--layer-decay", type=float, default=None, help="Layer-wise lr decay (ViTs), e.g. 0.75.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--augment", type=click.Choice(AUGMENTS), default="basic", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=None, help="Early stopping [default: off].")
@click.option("--select", type=click.Choice(list(SELECT_METRICS)), default="acc", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--skip-existing", is_flag=True, help="Do nothing if this configuration's record exists.")
@click.option("--keep-checkpoint", is_flag=True, help="Keep checkpoint.pt after a successful run.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@click.option(
    "--compile", is_flag=True, help="torch.compile the network: pays on a GPU for runs of many steps."
)
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


@main.command("plan")
def plan() -> None:
    """Check `run` argument lists (JSON lines on stdin); print `{"ok": true}` or the error of each.

    One process checks a whole recipe: what `probe suite` asks before it starts any run.
    """
    from finetune.train import check_config

    for line in sys.stdin:
        try:
            with run.make_context("run", json.loads(line)) as ctx:
                check_config(TrainConfig(**ctx.params))
                click.echo(json.dumps({"ok": True}))
        except (click.ClickException, *USER_ERRORS) as e:
            message = e.format_message() if isinstance(e, click.ClickException) else str(e)
            click.echo(json.dumps({"error": message}))


@main.command()
def models() -> None:
    """List the models that can be trained."""
    list_backbones()


@main.command()
def datasets() -> None:
    """List the MedMNIST+ 2D datasets."""
    list_datasets()
