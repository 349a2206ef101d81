"""Experiment tracking: runs logged to TensorBoard (local event files, offline) as well as recorded.

`--tracker tensorboard` on `finetune run` and `probe fit` writes `{out}/tensorboard/{run name}/`,
so `tensorboard --logdir runs/tensorboard` shows every run of a folder side by side. TensorBoard is
an optional extra (`pip install 'medprobe[tensorboard]'`), imported only when asked for.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from medprobe.errors import UserError
from medprobe.metrics import SCALARS

TRACKERS = ("tensorboard",)


class NoTracker:
    """What a run logs to when no tracker is asked for (and on every rank but 0)."""

    def params(self, params: dict) -> None:
        """Log the run's configuration."""
        pass

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log scalars at `step`."""
        pass

    def finish(self, params: dict, metrics: dict[str, float]) -> None:
        """Log the configuration with the final metrics, and close."""
        pass


class TensorBoard(NoTracker):
    """TensorBoard: scalars, the configuration, and hyper-parameters with final metrics.

    Scalars per step or epoch, the configuration as text, and the run's hyper-parameters with
    its final metrics in the HPARAMS tab.
    """

    def __init__(self, log_dir: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch has the writer; it needs the tensorboard package
            raise UserError(
                "--tracker tensorboard needs the tensorboard package: pip install "
                "'medprobe[tensorboard]'"
            ) from e
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def params(self, params: dict) -> None:
        """Log the configuration as a text panel."""
        text = json.dumps(params, indent=2, default=str)
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log the finite values at `step`."""
        for name, value in values.items():
            if _finite(value):
                self.writer.add_scalar(name, value, step)

    def finish(self, params: dict, metrics: dict[str, float]) -> None:
        """Log configuration and metrics as hparams, and close the writer."""
        hparams = {
            k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in params.items()
        }
        self.writer.add_hparams(
            hparams, {k: v for k, v in metrics.items() if _finite(v)}, run_name="."
        )
        self.writer.close()


def open_tracker(name: str | None, out: str | os.PathLike, run_name: str) -> NoTracker:
    """The tracker `name` logging run `run_name` under `{out}/tensorboard/`; None: no tracking."""
    if name is None:
        return NoTracker()
    if name not in TRACKERS:
        raise ValueError(f"unknown --tracker {name!r}; choose one of {', '.join(TRACKERS)}")
    return TensorBoard(Path(out) / "tensorboard" / run_name)


def split_scalars(metrics: dict, prefix: str) -> dict[str, float]:
    """{prefix/acc: ..., prefix/auc: ...} of an `evaluate` dict: what a tracker plots."""
    return {f"{prefix}/{k}": metrics[k] for k in SCALARS if metrics.get(k) is not None}


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
