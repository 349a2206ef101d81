"""--tracker mlflow: runs logged to a local MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import pytest

pytest.importorskip("mlflow")  # the `mlflow` extra; `make test` installs it
pytest.importorskip("sqlalchemy")
from mlflow import MlflowClient  # noqa: E402

from cache.options import ExtractOptions  # noqa: E402
from finetune.config import TrainConfig  # noqa: E402
from finetune.train import train  # noqa: E402
from probe.options import ProbeOptions  # noqa: E402
from probe.run import run_probe  # noqa: E402
from tests.support import TINY_RESNET  # noqa: E402


def runs_of(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("medprobe")
    return client.search_runs([experiment.experiment_id]), client


def test_a_fine_tune_is_read_back_from_the_local_store(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    where = dict(data_root=str(data_root), dataset="bloodmnist", out=str(tmp_path))
    result = train(TrainConfig(**TINY_RESNET, epochs=2, tracker="mlflow", **where))
    [run], client = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.run_name == result.run_name and run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["dataset"] == "bloodmnist"
    val_auc = client.get_metric_history(run.info.run_id, "val/auc")
    assert [m.step for m in val_auc] == [1, 2]
    assert run.data.metrics["final/test/acc"] == pytest.approx(result.metrics["test"]["acc"])


def test_a_probe_logs_to_the_uri_in_the_environment(data_root, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    [result] = run_probe(
        "bloodmnist",
        backbone="timm:test_vit",
        data_root=data_root,
        cache_root=tmp_path / "cache",
        out=tmp_path / "runs",
        extract=ExtractOptions(pretrained=False, img_size=32),
        options=ProbeOptions(tracker="mlflow"),
    )
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # the environment's store, not {out}'s
    [run], _ = runs_of(uri)
    assert run.data.params["chosen.C"] == str(result.hparams["C"])
    assert run.data.metrics["final/test/auc"] == pytest.approx(result.metrics["test"]["auc"])
