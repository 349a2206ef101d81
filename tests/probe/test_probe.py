"""probe: heads as estimators, selection on val only, every task type, `probe fit` end to end."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from cache.extract import extract
from cache.options import ExtractOptions
from medprobe.metrics import evaluate
from medprobe.results import load_results
from probe.cli import main as probe_main
from probe.fit import fit_probe, subsample
from probe.heads import HEADS, KNNHead, LinearHead, LogRegHead, make_head
from probe.options import ProbeOptions
from probe.run import run_probe
from tests.support import make_npz

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
    by_loss = fit_probe(train, val, test, head="logreg", task="multi-class", n_classes=3)
    # the default: lower wins
    best_params, best_loss = min(by_loss.val_scores, key=lambda item: item[1])
    assert by_loss.selected_on == "log_loss" and by_loss.params == best_params
    assert by_loss.val["log_loss"] == pytest.approx(best_loss)
    by_acc = fit_probe(
        train, val, test, head="logreg", task="multi-class", n_classes=3, select="acc"
    )
    best_params, best_acc = max(by_acc.val_scores, key=lambda item: item[1])
    assert by_acc.params == best_params and by_acc.val["acc"] == pytest.approx(best_acc)
    grid = [p["C"] for p, _ in by_loss.val_scores]
    assert len(grid) >= 25 and grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e5)


@pytest.mark.parametrize("C", [0.01, 1.0])
@pytest.mark.parametrize("task", ["binary-class", "multi-class", "multi-label, binary-class"])
def test_logreg_equals_sklearn_coefficients_and_probabilities(task, C):
    """scikit-learn's LogisticRegression on the same standardized features.

    One sigmoid for binary tasks, multinomial otherwise, one-vs-rest per label for multi-label
    tasks; the same C.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = blobs(200, sep=0.8)
    x = StandardScaler().fit_transform(X)
    labels = {
        "binary-class": (y > 0).astype(int),
        "multi-class": y,
        "multi-label, binary-class": np.concatenate(
            [y == 0, y == 2, np.random.default_rng(0).integers(0, 2, y.shape)], 1
        ),
    }[task].astype(int)
    columns = (
        [labels[:, j] for j in range(labels.shape[1])]
        if task.startswith("multi-label")
        else [labels[:, 0]]
    )
    refs = [LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(x, column) for column in columns]
    ours = LogRegHead(C=C, task=task, n_classes=int(labels.max()) + 1, max_iter=1000, tol=1e-8).fit(
        X, labels
    )
    if task.startswith("multi-label"):
        coef, proba = (
            np.concatenate([r.coef_ for r in refs]),
            np.stack([r.predict_proba(x)[:, 1] for r in refs], 1),
        )
    else:
        coef, proba = refs[0].coef_, refs[0].predict_proba(x)
    np.testing.assert_allclose(ours.coef_, coef, atol=2e-3)
    np.testing.assert_allclose(ours.predict_proba(X), proba, atol=1e-3)


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
    best_params, best_loss = min(fit.val_scores, key=lambda item: item[1])
    # If the head held a view of the live weights it would score the last epoch, not the best.
    val_loss = evaluate(val[1], fit.head.predict_proba(val[0]), task="multi-class")["log_loss"]
    assert val_loss == pytest.approx(best_loss, rel=1e-6)  # the last epoch differs far more
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
    from probe.options import ProbeOptions

    with pytest.raises(ValueError, match=r"--train-fraction 1.5: must be a number in \(0, 1\]"):
        ProbeOptions(train_fraction=1.5)


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
            progress=False,
            options=ExtractOptions(pretrained=False, img_size=32),
        )
    return root, cache


def test_run_probe_writes_one_record_per_entry_head_and_seed(cached, tmp_path):
    root, cache = cached
    results = run_probe(
        "bloodmnist",
        data_root=root,
        cache_root=cache,
        out=tmp_path / "runs",
        options=ProbeOptions(heads=("logreg", "linear"), seeds=(0, 1), bootstrap=50),
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
        cache_root=cache,
        out=tmp_path,
        options=ProbeOptions(
            heads=("logreg",), seeds=(0, 1, 2), train_fraction=0.5, features="cls", bootstrap=0
        ),
    )
    assert {r.tag for r in results} == {"cls-frac0.5"} and all(
        r.hparams["n_train"] == 40 for r in results
    )
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
    assert (
        "timm:test_vit" in result.output
        and "timm:test_resnet" in result.output
        and "knn" in result.output
    )
    assert len(list(out.glob("*.json"))) == 4


def test_cli_fit_missing_entry_names_the_extract_command(data_root, tmp_path):
    args = [
        "fit",
        "--backbone",
        "vit_tiny",
        "--data-root",
        str(data_root),
        "--cache-root",
        str(tmp_path),
    ]
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
        run_probe(
            "bloodmnist", cache_root=tmp_path, options=ProbeOptions(train_fraction=0.5, shots=3)
        )


def imbalanced(n, *, seed, prior=(0.7, 0.2, 0.1), dim=32, signal=0.2):
    """Weakly separable classes under an imbalanced prior (RetinaMNIST-like: a majority of 0.7)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(prior), size=n, p=prior)
    centers = np.random.default_rng(7).normal(size=(len(prior), dim))
    return (signal * centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y[:, None]


def test_the_default_selection_does_not_pick_the_majority_class_head():
    """The default selection on val log-loss avoids the majority-class head that ACC picks.

    On a small imbalanced val split, ACC is highest for the head that predicts the majority
    class (val ACC = its share); the val log-loss picks a head that tells classes apart.
    """
    train, val, test = imbalanced(400, seed=3), imbalanced(50, seed=103), imbalanced(400, seed=203)
    common = dict(task="multi-class", n_classes=3, bootstrap=500)
    by_acc = fit_probe(train, val, test, select="acc", **common)
    assert by_acc.collapse["class"] == 0 and by_acc.collapse["share"] >= 0.95
    assert np.bincount(by_acc.test_scores.argmax(1), minlength=3)[0] == len(test[1])  # class 0 only
    default = fit_probe(train, val, test, **common)
    assert default.selected_on == "log_loss" and default.collapse is None
    low, _ = default.test["ci95"]["balanced_acc"]
    assert low > 1 / 3 > by_acc.test["balanced_acc"] - 1e-9


def test_collapse_is_one_class_or_chance():
    from medprobe.metrics import collapse

    y = np.array([0, 1, 2, 0, 1, 2] * 10)
    constant = np.tile([0.5, 0.3, 0.2], (60, 1))
    assert collapse(y, constant, task="multi-class", metrics={}) == {
        "share": 1.0,
        "chance": False,
        "class": 0,
    }
    right = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert collapse(y, right, task="multi-class", metrics={}) is None
    at_chance = {"ci95": {"balanced_acc": [0.25, 0.45]}}
    assert collapse(y, right, task="multi-class", metrics=at_chance)["chance"] is True
    labels = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 10)
    assert (
        collapse(labels, np.full((40, 2), 0.1), task="multi-label, binary-class", metrics={})[
            "share"
        ]
        == 1.0
    )


def test_a_collapsed_run_is_flagged_warned_and_marked_in_the_report(tmp_path, caplog):
    from medprobe.metrics import named_class
    from medprobe.report import write_report
    from medprobe.results import RunResult

    y = np.array([[0], [1]] * 20)
    scores = np.tile([0.9, 0.1], (40, 1))
    metrics = evaluate(y, scores, task="binary-class", bootstrap=200)
    detail = named_class(
        {"split": "test", "share": 1.0, "chance": True, "class": 0}, ["benign", "malignant"]
    )
    record = RunResult(
        dataset="breastmnist",
        size=28,
        model="m",
        method="logreg",
        seed=0,
        metrics={"val": metrics, "test": metrics},
        task="binary-class",
        class_names=["benign", "malignant"],
        collapsed=True,
        collapse=detail,
        predictions={"test_score": scores.astype(np.float32), "test_true": y},
    )
    with caplog.at_level("WARNING", logger="medprobe.results"):
        record.save(tmp_path / "runs")
    assert "collapsed: predicts class benign for 100% of test" in caplog.text
    write_report(tmp_path / "runs", tmp_path / "report", n_resamples=100)
    table = (tmp_path / "report" / "report.md").read_text()
    assert "logreg ⚠ collapsed @28" in table and "⚠ collapsed:" in table
    assert "True" in (tmp_path / "report" / "report.csv").read_text().splitlines()[1].split(",")


def test_refit_on_train_and_val_is_the_chosen_head_fitted_on_both():
    train, val, test = splits(sep=0.6)
    fit = fit_probe(
        train, val, test, head="logreg", task="multi-class", n_classes=3, refit="train+val"
    )
    alone = LogRegHead(C=fit.params["C"], task="multi-class", n_classes=3).fit(
        np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])
    )
    assert fit.refit == "train+val" and np.allclose(fit.head.coef_, alone.coef_)
    plain = fit_probe(train, val, test, head="logreg", task="multi-class", n_classes=3)
    # selection and val metrics before the refit
    assert plain.params == fit.params and plain.val == fit.val
    assert not np.allclose(plain.head.coef_, fit.head.coef_)


def test_the_warm_started_path_equals_cold_fits():
    from probe.heads import LOGREG_CS

    X, y = blobs(300, sep=0.6)
    # both fits at the optimum
    tight = dict(task="multi-class", n_classes=3, max_iter=1000, tol=1e-7)
    warm = LogRegHead(warm_start=True, **tight)
    for C in LOGREG_CS:
        warm.C = C
        warm.fit(X, y)
        cold = LogRegHead(C=C, **tight).fit(X, y)
        # float32's floor
        assert np.allclose(warm.predict_proba(X), cold.predict_proba(X), atol=1e-3), C


def test_last4_is_fitted_only_when_asked_and_named_in_the_record(cached, tmp_path):
    root, cache = cached
    where = dict(size=28, cache_root=cache, data_root=root, out=tmp_path / "runs")
    default_options, last4_options = (
        ProbeOptions(bootstrap=0),
        ProbeOptions(features="last4", bootstrap=0),
    )
    [default] = run_probe("bloodmnist", backbone="timm:test_vit", options=default_options, **where)
    [last4] = run_probe("bloodmnist", backbone="timm:test_vit", options=last4_options, **where)
    assert default.hparams["features"] == "cls+mean" and default.tag == ""
    assert last4.hparams["features"] == "last4" and last4.tag == "last4"
    assert last4.run_name != default.run_name and last4.config["features"] == "last4"


def test_an_entry_holding_more_kinds_supersedes_one_built_alike():
    """cls+mean (an earlier version's entry) beside cls+mean+last4 of the same key: fitted once."""
    from pathlib import Path

    from cache.key import CacheKey
    from probe.entries import superseding

    common = dict(backbone="b", model_id="m", weights="w", dataset="d", size=28, data_md5="x")
    common |= dict(
        preprocess={"resize": "bicubic"}, splits=("train", "val", "test"), precision="fp32"
    )
    old = CacheKey(features=("cls", "mean"), **common)
    new = CacheKey(features=("cls", "mean", "last4"), **common)
    other = CacheKey(features=("cls", "mean"), **(common | {"preprocess": {"resize": "pad"}}))
    entries = [(Path("old.h5"), old), (Path("new.h5"), new), (Path("pad.h5"), other)]
    assert [p.name for p, _ in superseding(entries)] == ["new.h5", "pad.h5"]
