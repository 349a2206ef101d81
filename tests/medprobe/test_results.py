"""medprobe.results: the record round-trips through JSON and is written atomically."""

from __future__ import annotations

import json

import pytest

from medprobe.results import SCHEMA_VERSION, RunResult, config_digest, load_results


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
        config={"entry": {"backbone": "vit_tiny"}, "head": "logreg", "seed": 0},
        task="multi-class",
    )
    return RunResult(**(fields | overrides))


def test_round_trip_keeps_every_field(tmp_path):
    result = make_result()
    path = result.save(tmp_path)
    assert (
        path.name == f"bloodmnist_28__vit_tiny__logreg__seed0__{config_digest(result.config)}.json"
    )
    loaded = RunResult.from_json(path.read_text())
    assert loaded.metrics["test"]["auc"] is None  # NaN is stored as null: standard JSON
    assert (
        loaded.hparams == {"C": 1.0} and loaded.cache_key == "abc" and loaded.task == "multi-class"
    )
    assert loaded.config == result.config
    assert loaded.versions["torch"] and loaded.schema_version == SCHEMA_VERSION
    assert not list(tmp_path.glob("*.partial"))


def test_load_results_reads_every_record_and_skips_other_json(tmp_path):
    make_result(seed=0).save(tmp_path)
    make_result(seed=1, method="knn").save(tmp_path / "nested")
    (tmp_path / "history.json").write_text(json.dumps({"epochs": []}))
    names = [r.run_name.rsplit("__", 1)[0] for r in load_results(tmp_path)]
    assert names == [
        "bloodmnist_28__vit_tiny__knn__seed1",
        "bloodmnist_28__vit_tiny__logreg__seed0",
    ]


def test_other_schema_version_is_refused(tmp_path):
    data = json.loads(make_result().to_json()) | {"schema_version": 99}
    with pytest.raises(ValueError, match="schema 99"):
        RunResult.from_dict(data)


def test_configurations_differing_in_anything_get_their_own_record(tmp_path):
    a = make_result()
    b = make_result(config=a.config | {"entry": {"backbone": "vit_tiny", "resize": "pad"}})
    c = make_result(config=a.config | {"seed": 1}, seed=1)
    assert len({a.run_name, b.run_name, c.run_name}) == 3
    assert a.group == c.group != b.group  # seeds of one configuration are repeats of each other
    for result in (a, b, a):
        result.save(tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_unreadable_and_foreign_records_are_skipped_by_name(tmp_path, caplog):
    make_result().save(tmp_path)
    (tmp_path / "torn.json").write_text('{"schema_version": 2, "metrics": {')
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 1, "metrics": {}}))
    assert len(load_results(tmp_path)) == 1
    assert "torn.json" in caplog.text and "old.json" in caplog.text
