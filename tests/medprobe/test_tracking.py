"""--tracker tensorboard: real event files, read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest

from cache.options import ExtractOptions
from probe.options import ProbeOptions

pytest.importorskip("tensorboard")  # the `tensorboard` extra; `make test` installs it
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from finetune.config import TrainConfig  # noqa: E402
from finetune.train import train  # noqa: E402
from probe.heads import LOGREG_CS  # noqa: E402
from probe.run import run_probe  # noqa: E402
from tests.support import TINY_RESNET


def events(folder) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def test_finetune_logs_every_step_epoch_and_the_test_metrics(data_root, tmp_path):
    where = dict(data_root=str(data_root), dataset="bloodmnist", out=str(tmp_path))
    cfg = TrainConfig(**TINY_RESNET, epochs=2, tracker="tensorboard", **where)
    result = train(cfg)
    log = events(tmp_path / "tensorboard" / result.run_name)
    scalars = log.Tags()["scalars"]
    steps = [e.step for e in log.Scalars("train/step_loss")]
    assert steps == list(range(2 * 3))  # 40 train images in batches of 16: 3 steps, 2 epochs
    assert [e.step for e in log.Scalars("val/auc")] == [1, 2] and len(log.Scalars("lr")) == 2
    assert log.Scalars("test/acc")[0].value == pytest.approx(result.metrics["test"]["acc"])
    assert {"train/loss", "val/loss", "val/acc", "test/auc"} <= set(scalars)
    assert "config" in " ".join(log.Tags()["tensors"])  # the run's configuration, as text


def test_probe_logs_its_selection_sweep_and_test_metrics(data_root, tmp_path):
    extract = dict(pretrained=False, img_size=32)

    where = dict(data_root=data_root, cache_root=tmp_path / "cache", out=tmp_path / "runs")
    [result] = run_probe(
        "bloodmnist",
        backbone="timm:test_vit",
        **where,
        extract=ExtractOptions(**extract),
        options=ProbeOptions(tracker="tensorboard"),
    )
    log = events(tmp_path / "runs" / "tensorboard" / result.run_name)
    sweep = log.Scalars("sweep/val_log_loss")  # the default selection
    assert len(sweep) == len(LOGREG_CS) and [
        e.value for e in log.Scalars("sweep/C")
    ] == pytest.approx(LOGREG_CS)
    assert log.Scalars("test/acc")[0].value == pytest.approx(result.metrics["test"]["acc"])


def test_without_tensorboard_the_error_names_the_extra(monkeypatch):
    import builtins

    from medprobe.errors import UserError
    from medprobe.tracking import open_tracker

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r"pip install tensorboard"):
        open_tracker("tensorboard", "runs", "r")
