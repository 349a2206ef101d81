"""probe: heads as estimators, selection on val only, every task type, `probe fit` end to end."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_npz

from cache.extract import extract
from medprobe.metrics import evaluate
from medprobe.results import load_results
from probe.cli import main as probe_main
from probe.fit import fit_probe, run_probe, subsample
from probe.heads import HEADS, KNNHead, LinearHead, LogRegHead, make_head

FAST = {"linear": {"epochs": 30}}


def blobs(n, *, n_classes=3, dim=16, seed=0, sep=4.0):
    """Linearly separable Gaussian blobs: (X (n, dim), y (n, 1))."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(n_classes, dim)) * sep
    y = rng.integers(0, n_classes, (n, 1))
    return (centers[y[:, 0]] + rng.normal(size=(n, dim))).astype(np.float32), y


def splits(**kw):
    return blobs(300, seed=0, **kw), blobs(100, seed=1, **kw), blobs(100, seed=2, **kw)


@pytest.mark.parametrize("name", list(HEADS))
def test_estimator_contract(name):
    X, y = blobs(120)
    head = make_head(name, task="multi-class", n_classes=4, **FAST.get(name, {}))
    assert head.fit(X, y) is head
    proba = head.predict_proba(X[:7])
    assert proba.shape == (7, 4) and np.allclose(proba.sum(1), 1)
    assert list(head.classes_) == [0, 1, 2, 3]
    assert [a for a in vars(make_head(name)) if a.endswith("_")] == []  # no fitted state before fit


@pytest.mark.parametrize("name", list(HEADS))
def test_separable_data_is_solved_near_perfectly(name):
    train, val, test = splits()
    fit = fit_probe(train, val, test, head=name, task="multi-class", n_classes=3)
    assert fit.test["acc"] >= 0.98 and fit.test["auc"] >= 0.99
    assert fit.params and fit.val_scores


@pytest.mark.parametrize("name", list(HEADS))
def test_selection_never_looks_at_test_labels(name):
    train, val, test = splits(sep=0.6)  # overlapping classes: the grid choice matters
    shuffled = (test[0], np.random.default_rng(5).permutation(test[1]))
    a = fit_probe(train, val, test, head=name, task="multi-class", n_classes=3)
    b = fit_probe(train, val, shuffled, head=name, task="multi-class", n_classes=3)
    assert a.params == b.params and a.val == b.val
    assert a.test["acc"] != b.test["acc"]


def test_selection_follows_val():
    train, val, test = splits(sep=0.6)
    fit = fit_probe(train, val, test, head="logreg", task="multi-class", n_classes=3)
    best_params, best_score = max(fit.val_scores, key=lambda item: item[1])
    assert fit.params == best_params and fit.val["acc"] == pytest.approx(best_score)
    assert [p["C"] for p, _ in fit.val_scores] == [10.0**e for e in range(-4, 5)]


def test_logreg_matches_sklearn_objective():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = blobs(200, sep=0.8)
    ours = LogRegHead(C=0.1, max_iter=500).fit(X, y).predict_proba(X)
    ref = LogisticRegression(C=0.1, max_iter=2000, tol=1e-8).fit(StandardScaler().fit_transform(X), y[:, 0])
    np.testing.assert_allclose(ours, ref.predict_proba(StandardScaler().fit_transform(X)), atol=2e-3)


def test_knn_votes_for_every_k_equal_single_k_fits():
    X, y = blobs(80, sep=0.5)
    Xq, _ = blobs(10, seed=3, sep=0.5)
    head = KNNHead(task="multi-class").fit(X, y)
    votes = head._votes(Xq, 25).numpy()
    for k in (1, 7, 25):
        np.testing.assert_allclose(
            votes[:, k - 1], KNNHead(k, task="multi-class").fit(X, y).predict_proba(Xq)
        )


def test_linear_sweep_keeps_a_copy_of_the_best_epoch():
    train, val, test = splits(sep=0.6)
    fit = fit_probe(train, val, test, head="linear", task="multi-class", n_classes=3)
    best_params, best_score = max(fit.val_scores, key=lambda item: item[1])
    # If the head held a view of the live weights it would score the last epoch, not the best.
    assert evaluate(val[1], fit.head.predict_proba(val[0]), task="multi-class")["acc"] == best_score
    assert fit.head.best_epoch_ == best_params["epochs"]


@pytest.mark.parametrize("name", list(HEADS))
def test_multi_label_runs_with_sigmoid_scores(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12)).astype(np.float32)
    y = (X[:, :4] > 0).astype(int)
    fit = fit_probe(
        (X[:120], y[:120]),
        (X[120:160], y[120:160]),
        (X[160:], y[160:]),
        head=name,
        task="multi-label, binary-class",
        n_classes=4,
    )
    assert fit.test_scores.shape == (40, 4)
    assert not np.allclose(fit.test_scores.sum(1), 1)  # independent sigmoids, not a softmax
    assert fit.test["auc"] > 0.8


@pytest.mark.parametrize("name", list(HEADS))
def test_ordinal_runs_and_reports_kappa(name):
    train, val, test = splits(n_classes=5)
    fit = fit_probe(train, val, test, head=name, task="ordinal-regression", n_classes=5)
    assert fit.test["qwk"] > 0.9


def test_subsample_fraction_and_shots():
    y = np.repeat(np.arange(4), 25)[:, None]
    assert len(subsample(y, task="multi-class", seed=0, fraction=0.2)) == 20
    rows = subsample(y, task="multi-class", seed=0, shots=3)
    assert np.bincount(y[rows, 0]).tolist() == [3, 3, 3, 3]
    assert not np.array_equal(rows, subsample(y, task="multi-class", seed=1, shots=3))
    with pytest.raises(ValueError, match="train-fraction"):
        subsample(y, task="multi-class", seed=0, fraction=1.5)


def test_unknown_head_names_the_choices():
    with pytest.raises(ValueError, match="logreg, linear, knn"):
        make_head("svm")


@pytest.fixture
def cached(tmp_path):
    root = tmp_path / "data"
    make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(80, 24, 24))
    cache = tmp_path / "cache"
    for backbone in ("timm:test_vit", "timm:test_resnet"):
        extract(
            backbone,
            "bloodmnist",
            data_root=root,
            cache_root=cache,
            pretrained=False,
            img_size=32,
            progress=False,
        )
    return root, cache


def test_run_probe_writes_one_record_per_entry_head_and_seed(cached, tmp_path):
    root, cache = cached
    results = run_probe(
        "bloodmnist",
        heads=("logreg", "linear"),
        seeds=(0, 1),
        data_root=root,
        cache_root=cache,
        out=tmp_path / "runs",
        bootstrap=50,
    )
    assert len(results) == 2 * (1 + 2)  # logreg is deterministic: one fit, whatever the seeds
    loaded = load_results(tmp_path / "runs")
    assert {(r.model, r.method, r.seed) for r in loaded} == {
        (m, h, s)
        for m in ("timm:test_vit", "timm:test_resnet")
        for h, seeds in (("logreg", (0,)), ("linear", (0, 1)))
        for s in seeds
    }
    vit = next(r for r in loaded if r.model == "timm:test_vit")
    assert vit.hparams["features"] == "cls+mean" and vit.cache_key and "ci95" in vit.metrics["test"]
    assert vit.load_predictions(tmp_path / "runs")["test_score"].shape == (24, 8)


def test_label_efficiency_runs_are_tagged_and_differ_by_seed(cached, tmp_path):
    root, cache = cached
    results = run_probe(
        "bloodmnist",
        data_root=root,
        backbone="timm:test_vit",
        heads=("logreg",),
        seeds=(0, 1, 2),
        train_fraction=0.5,
        features="cls",
        cache_root=cache,
        out=tmp_path,
        bootstrap=0,
    )
    assert {r.tag for r in results} == {"cls-frac0.5"} and all(r.hparams["n_train"] == 40 for r in results)
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_cli_fit_without_backbone_fits_every_entry(cached, tmp_path):
    root, cache = cached
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        probe_main,
        ["fit", "--head", "logreg,knn", "--data-root", str(root), "--cache-root", str(cache)]
        + ["--out", str(out), "--bootstrap", "0"],
    )
    assert result.exit_code == 0, result.output
    assert "timm:test_vit" in result.output and "timm:test_resnet" in result.output and "knn" in result.output
    assert len(list(out.glob("*.json"))) == 4


def test_cli_fit_missing_entry_names_the_extract_command(data_root, tmp_path):
    args = ["fit", "--backbone", "vit_tiny", "--data-root", str(data_root), "--cache-root", str(tmp_path)]
    result = CliRunner().invoke(probe_main, args)
    assert result.exit_code == 1
    assert "probe extract --backbone vit_tiny --dataset bloodmnist --size 28" in result.output


def test_cli_fit_extract_flag_creates_the_entry(data_root, tmp_path):
    args = [
        "fit",
        "--backbone",
        "timm:test_resnet",
        "--no-pretrained",
        "--extract",
        "--data-root",
        str(data_root),
        "--cache-root",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "r"),
        "--bootstrap",
        "0",
    ]
    result = CliRunner().invoke(probe_main, args)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "r").glob("*.json"))) == 1


def test_linear_head_direct_fit_runs_fixed_epochs():
    X, y = blobs(100)
    head = LinearHead(epochs=3, task="multi-class").fit(X, y)
    assert head.best_epoch_ == 3 and head.predict_proba(X).shape == (100, 3)


def test_fraction_and_shots_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        run_probe("bloodmnist", train_fraction=0.5, shots=3, cache_root=tmp_path)
