"""Experiment tracking: runs logged to TensorBoard or MLflow as well as recorded.

`--tracker tensorboard` on `finetune run` and `probe fit` writes `{out}/tensorboard/{run name}/`,
so `tensorboard --logdir runs/tensorboard` shows every run of a folder side by side.
`--tracker mlflow` logs to `$MLFLOW_TRACKING_URI` when it is set (a server, a database), else to
the local SQLite file `{out}/mlflow.db` (`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`;
MLflow's plain-folder store is in maintenance mode and refuses new runs by default), in the
experiment `medprobe`. Both are optional packages, imported only when asked for.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from medprobe.errors import UserError
from medprobe.metrics import SCALARS

TRACKERS = ("tensorboard", "mlflow")
TRACKER_HELP = (
    "Also log to TensorBoard, in {out}/tensorboard/{run} (pip install tensorboard), or to MLflow: "
    "$MLFLOW_TRACKING_URI, else {out}/mlflow.db (pip install mlflow)."
)
EXPERIMENT = "medprobe"
PARAM_CHARS = 500  # the longest param value every MLflow version stores


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
                "--tracker tensorboard needs the tensorboard package: pip install tensorboard "
                "(from a clone: pip install -e '.[tensorboard]')"
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


class MLflow(NoTracker):
    """MLflow: the configuration as params, scalars per step or epoch, the final metrics."""

    def __init__(self, tracking_uri: str, run_name: str):
        try:
            from mlflow import MlflowClient
        except ImportError as e:
            raise UserError(
                "--tracker mlflow needs the mlflow package: pip install mlflow (or mlflow-skinny "
                "with sqlalchemy and alembic; from a clone: pip install -e '.[mlflow]')"
            ) from e
        self.client = MlflowClient(tracking_uri=tracking_uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(EXPERIMENT)
        )
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def params(self, params: dict, prefix: str = "") -> None:
        """Log the configuration, nested keys dotted (`entry.preprocess.resize`)."""
        from mlflow.entities import Param

        flat = _flatten(params, prefix)
        values = [Param(k, str(v)[:PARAM_CHARS]) for k, v in flat.items()]
        self.client.log_batch(self.run_id, params=values)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log the finite values at `step`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items() if _finite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, params: dict, metrics: dict[str, float]) -> None:
        """Log what the run chose (`chosen.C`, ...), the final metrics, and end the run."""
        self.params(params, prefix="chosen.")
        self.scalars({f"final/{k}": v for k, v in metrics.items()}, 0)
        self.client.set_terminated(self.run_id)


def open_tracker(name: str | None, out: str | os.PathLike, run_name: str) -> NoTracker:
    """The tracker `name` logging run `run_name` (see the module's docstring); None: no tracking."""
    if name is None:
        return NoTracker()
    if name not in TRACKERS:
        raise ValueError(f"unknown --tracker {name!r}; choose one of {', '.join(TRACKERS)}")
    if name == "mlflow":
        Path(out).mkdir(parents=True, exist_ok=True)
        local = f"sqlite:///{Path(out, 'mlflow.db').resolve()}"
        return MLflow(os.environ.get("MLFLOW_TRACKING_URI") or local, run_name)
    return TensorBoard(Path(out) / "tensorboard" / run_name)


def _flatten(params: dict, prefix: str = "") -> dict:
    flat: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def split_scalars(metrics: dict, prefix: str) -> dict[str, float]:
    """{prefix/acc: ..., prefix/auc: ...} of an `evaluate` dict: what a tracker plots."""
    return {f"{prefix}/{k}": metrics[k] for k in SCALARS if metrics.get(k) is not None}


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
