"""medprobe.metrics: the MedMNIST oracle, the extra metrics against scikit-learn, the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score

from medprobe.metrics import evaluate

TASKS = {
    "multi-class": 8,
    "binary-class": 2,
    "ordinal-regression": 5,
    "multi-label, binary-class": 14,
}


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def random_predictions(task, n_classes, n=400, seed=0, decimals=None):
    """Noisy but informative scores; rounding creates ties, which AUC must count half."""
    rng = np.random.default_rng(seed)
    if task == "multi-label, binary-class":
        y = rng.integers(0, 2, (n, n_classes))
        score = 1 / (1 + np.exp(-rng.normal(size=(n, n_classes)) - y))
        return y, np.round(score, decimals) if decimals else score
    y = rng.integers(0, n_classes, (n, 1))
    score = softmax(rng.normal(size=(n, n_classes)) + np.eye(n_classes)[y[:, 0]])
    if decimals:
        score = np.round(score, decimals)
        score /= score.sum(1, keepdims=True)
    return y, score


@pytest.mark.parametrize("decimals", [None, 2])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("task", TASKS)
def test_acc_and_auc_equal_medmnist_evaluator(task, seed, decimals):
    y, score = random_predictions(task, TASKS[task], seed=seed, decimals=decimals)
    result = evaluate(y, score, task=task)
    assert result["acc"] == pytest.approx(getACC(y, score, task), abs=1e-9)
    assert result["auc"] == pytest.approx(getAUC(y, score, task), abs=1e-9)


@pytest.mark.parametrize("task", ["multi-class", "binary-class", "ordinal-regression"])
def test_single_label_extras_equal_sklearn(task):
    y, score = random_predictions(task, TASKS[task], seed=1)
    pred = (score[:, -1] > 0.5).astype(int) if task == "binary-class" else score.argmax(1)
    result = evaluate(y, score, task=task)
    assert result["macro_f1"] == pytest.approx(f1_score(y[:, 0], pred, average="macro"), abs=1e-12)
    assert result["balanced_acc"] == pytest.approx(
        balanced_accuracy_score(y[:, 0], pred), abs=1e-12
    )
    assert np.trace(result["confusion_matrix"]) == (pred == y[:, 0]).sum()
    assert len(result["per_class_recall"]) == TASKS[task]
    if task == "ordinal-regression":
        kappa = cohen_kappa_score(y[:, 0], pred, weights="quadratic")
        assert result["qwk"] == pytest.approx(kappa, abs=1e-12)
    else:
        assert "qwk" not in result


def test_multi_label_f1_is_macro_over_labels():
    y, score = random_predictions("multi-label, binary-class", 14)
    result = evaluate(y, score, task="multi-label, binary-class")
    assert result["macro_f1"] == pytest.approx(f1_score(y, score > 0.5, average="macro"), abs=1e-12)
    assert np.array(result["confusion_matrix"]).shape == (14, 2, 2)


def test_perfect_scores_give_one():
    y = np.array([[0], [1], [2], [1]])
    result = evaluate(y, np.eye(3)[y[:, 0]], task="multi-class")
    assert result["acc"] == result["auc"] == result["macro_f1"] == result["balanced_acc"] == 1.0


def test_bootstrap_is_seeded_and_contains_the_estimate():
    y, score = random_predictions("multi-class", 8, n=10_000)
    result = evaluate(y, score, task="multi-class", bootstrap=1000, seed=3)
    for name in ("acc", "auc", "macro_f1", "balanced_acc"):
        lo, hi = result["ci95"][name]
        assert lo < result[name] < hi and hi - lo < 0.05
    again = evaluate(y, score, task="multi-class", bootstrap=1000, seed=3)
    assert again["ci95"] == result["ci95"]


def test_bootstrap_interval_matches_a_slow_loop():
    y, score = random_predictions("binary-class", 2, n=300)
    fast = evaluate(y, score, task="binary-class", bootstrap=200, seed=0)["ci95"]["auc"]
    from medprobe.metrics import resample_counts

    counts = resample_counts(300, 200, seed=0)
    slow = []
    for row in counts:
        idx = np.repeat(np.arange(300), row)
        slow.append(getAUC(y[idx], score[idx], "binary-class"))
    np.testing.assert_allclose(fast, np.percentile(slow, [2.5, 97.5]), atol=1e-6)


@pytest.mark.parametrize(
    "y,score,match",
    [
        (np.zeros(4), np.full((3, 2), 0.5), r"\(4, n_classes\)"),
        (np.zeros(4), np.full((4, 2), 2.0), "probabilities"),
        (np.zeros(4), np.full((4, 2), 0.3), "sum"),
        (np.full(4, 3), np.full((4, 2), 0.5), "outside 0..1"),
        (np.zeros((4, 3)), np.full((4, 2), 0.5), r"\(4,\) or \(4, 1\)"),
    ],
)
def test_bad_inputs_say_what_shape_is_expected(y, score, match):
    with pytest.raises(ValueError, match=match):
        evaluate(y, score, task="multi-class")


def test_multi_label_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        evaluate(np.zeros((4, 2)), np.full((4, 3), 0.5), task="multi-label, binary-class")


@pytest.mark.parametrize("task", ["binary-class", "multi-class", "multi-label, binary-class"])
def test_log_loss_equals_sklearn_and_prefers_calibrated_probabilities(task):
    from sklearn.metrics import log_loss as sklearn_log_loss

    from medprobe.metrics import log_loss

    rng = np.random.default_rng(0)
    if task.startswith("multi-label"):
        y, score = rng.integers(0, 2, (50, 3)), rng.uniform(0.01, 0.99, (50, 3))
        expected = np.mean([sklearn_log_loss(y[:, j], score[:, j]) for j in range(3)])
    else:
        k = 2 if task == "binary-class" else 4
        y, score = rng.integers(0, k, 50), rng.dirichlet(np.ones(k), 50)
        expected = sklearn_log_loss(y, score, labels=range(k))
    assert log_loss(y, score, task=task) == pytest.approx(expected)
    assert evaluate(y, score, task=task)["log_loss"] == pytest.approx(expected)
    right = np.array([[0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.9, 0.1]])
    overconfident = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # one sure mistake
    y = np.array([0, 1, 1, 0])
    assert log_loss(y, right, task="binary-class") < log_loss(y, overconfident, task="binary-class")
