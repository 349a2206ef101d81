"""`probe fit --slices attention`: gated attention over a volume's slices, learned on train."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from medprobe.metrics import evaluate
from medprobe.results import load_results
from probe.attention import WEIGHT_DECAYS, attention_pool
from suite.programs import probe as probe_main
from tests.support import make_npz

FLAG = "adrenalmnist3d"


def bags_with_one_telling_slice(n: int, seed: int, slices: int = 24):
    """(n, 1 axis, slices, 4) noise; a positive volume has one slice with a large first feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, slices, 4)).astype(np.float32)
    y = rng.integers(0, 2, (n, 1))
    where = rng.integers(0, slices, n)
    positive = np.flatnonzero(y[:, 0])
    x[positive, 0, where[positive], 0] += 6.0
    return x, y, where


def test_attention_finds_the_slice_that_tells_and_beats_the_mean():
    data = {s: bags_with_one_telling_slice(160, i) for i, s in enumerate(("train", "val", "test"))}
    bags = {s: (x, y) for s, (x, y, _) in data.items()}
    features = {s: {"cls": x} for s, (x, _, _) in data.items()}
    pooled, chosen = attention_pool(bags, features, task="binary-class", n_classes=2, seed=0)
    assert chosen["attention_weight_decay"] in WEIGHT_DECAYS and chosen["attention_s"] > 0
    x, y, where = data["test"]
    assert pooled["test"]["cls"].shape == (160, 4)
    auc = {
        "attention": evaluate(y, _as_proba(pooled["test"]["cls"][:, 0]), task="binary-class"),
        "mean": evaluate(y, _as_proba(x.mean(axis=2)[:, 0, 0]), task="binary-class"),
    }
    assert auc["attention"]["auc"] > 0.97 and auc["attention"]["auc"] > auc["mean"]["auc"] + 0.05
    # the pooled value of a positive volume is mostly its telling slice's
    positive = np.flatnonzero(y[:, 0])
    telling = x[positive, 0, where[positive], 0]
    assert np.median(pooled["test"]["cls"][positive, 0] / telling) > 0.5


def test_the_same_seed_pools_the_same_and_another_differs():
    data = {s: bags_with_one_telling_slice(40, i) for i, s in enumerate(("train", "val", "test"))}
    bags = {s: (x, y) for s, (x, y, _) in data.items()}
    features = {s: {"cls": x} for s, (x, _, _) in data.items()}
    a, _ = attention_pool(bags, features, task="binary-class", n_classes=2, seed=1)
    b, _ = attention_pool(bags, features, task="binary-class", n_classes=2, seed=1)
    c, _ = attention_pool(bags, features, task="binary-class", n_classes=2, seed=2)
    np.testing.assert_array_equal(a["test"]["cls"], b["test"]["cls"])
    assert not np.array_equal(a["test"]["cls"], c["test"]["cls"])


def _as_proba(score: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-(score - score.mean()) / (score.std() + 1e-9)))
    return np.stack([1 - p, p], axis=1)


@pytest.fixture
def volumes(tmp_path):
    root = tmp_path / "data"
    make_npz(root / f"{FLAG}.npz", n=(8, 4, 4), n_classes=2, volumes=True)
    return root


def test_probe_fit_with_attention_writes_one_record_per_seed(volumes, tmp_path):
    args = ["fit", "--dataset", FLAG, "--data-root", str(volumes), "--bootstrap", "0"]
    args += ["--cache-root", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    args += ["--extract", "--backbone", "timm:test_vit", "--no-pretrained", "--img-size", "32"]
    args += ["--slices", "attention", "--axes", "first", "--seeds", "0,1"]
    done = CliRunner().invoke(probe_main, args)
    assert done.exit_code == 0, done.output
    records = load_results(tmp_path / "r")
    assert sorted(r.seed for r in records) == [0, 1]  # the attention's init: seeds matter
    for record in records:
        assert record.config["slices"] == "attention" and record.config["axes"] == "first"
        assert record.hparams["attention_weight_decay"] in WEIGHT_DECAYS
        assert record.hparams["deterministic"] is False
        assert record.metrics["test"]["n"] == 4
    assert "attention" in records[0].run_name
