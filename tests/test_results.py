"""medprobe.results: the record round-trips through JSON and is written atomically."""

from __future__ import annotations

import json

import pytest

from medprobe.results import SCHEMA_VERSION, RunResult, load_results


def make_result(**overrides):
    fields = dict(
        dataset="bloodmnist",
        size=28,
        model="vit_tiny",
        method="logreg",
        seed=0,
        metrics={"val": {"acc": 0.9}, "test": {"acc": 0.88, "auc": float("nan")}},
        hparams={"C": 1.0},
        timings={"fit_s": 1.5},
        cache_key="abc",
    )
    return RunResult(**(fields | overrides))


def test_round_trip_keeps_every_field(tmp_path):
    result = make_result()
    path = result.save(tmp_path)
    assert path.name == "bloodmnist_28__vit_tiny__logreg__seed0.json"
    loaded = RunResult.from_json(path.read_text())
    assert loaded.metrics["test"]["auc"] is None  # NaN is stored as null: standard JSON
    assert loaded.hparams == {"C": 1.0} and loaded.cache_key == "abc"
    assert loaded.versions["torch"] and loaded.schema_version == SCHEMA_VERSION
    assert not list(tmp_path.glob("*.partial"))


def test_load_results_reads_every_record_and_skips_other_json(tmp_path):
    make_result(seed=0).save(tmp_path)
    make_result(seed=1, method="knn").save(tmp_path / "nested")
    (tmp_path / "history.json").write_text(json.dumps({"epochs": []}))
    names = [r.run_name for r in load_results(tmp_path)]
    assert names == ["bloodmnist_28__vit_tiny__knn__seed1", "bloodmnist_28__vit_tiny__logreg__seed0"]


def test_other_schema_version_is_refused(tmp_path):
    data = json.loads(make_result().to_json()) | {"schema_version": 99}
    with pytest.raises(ValueError, match="schema 99"):
        RunResult.from_dict(data)
