"""probe.lbfgs and the batched grids: a head's whole grid fitted as one batched problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.base import fit_scaler, standardize
from probe.fit import fit_probe, make_scorer
from probe.heads import LogRegHead, head_device
from probe.lbfgs import fit_grid
from probe.linear import _LinearGrid
from tests.probe.test_probe import blobs, splits

TASKS = ["binary-class", "multi-class", "multi-label, binary-class"]


def labels_for(task: str, y: np.ndarray) -> np.ndarray:
    """Each task's labels made from y (n, 1) of 3 classes."""
    return {
        "binary-class": (y > 0).astype(int),
        "multi-class": y,
        "multi-label, binary-class": np.concatenate(
            [y == 0, y == 2, np.random.default_rng(0).integers(0, 2, y.shape)], 1
        ).astype(int),
    }[task]


@pytest.mark.parametrize("task", TASKS)
def test_every_c_at_once_equals_sklearn_fitted_one_c_at_a_time(task):
    """Each grid point is scikit-learn's LogisticRegression at its C (one-vs-rest for labels)."""
    from sklearn.linear_model import LogisticRegression

    X, y = blobs(200, sep=0.8)
    labels = labels_for(task, y)
    x = standardize(X, *fit_scaler(X))
    head = LogRegHead(task=task, n_classes=3 if task == "multi-class" else 2)
    targets = head._targets(labels)
    n_out = labels.shape[1] if task.startswith("multi-label") else (1 if task[0] == "b" else 3)
    Cs = [0.01, 1.0, 100.0]
    # to float32's floor: stopped when the loss no longer changes
    fit = fit_grid(x, targets, Cs, task=task, n_out=n_out, max_iter=2000, tol=1e-7)
    columns = [labels[:, j] for j in range(labels.shape[1])]
    for g, C in enumerate(Cs):
        refs = [
            LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(x.numpy(), column)
            for column in (columns if task.startswith("multi-label") else columns[:1])
        ]
        coef = np.concatenate([r.coef_ for r in refs])
        np.testing.assert_allclose(fit.coef[g], coef, rtol=2e-3, atol=3e-3, err_msg=f"C={C}")
        np.testing.assert_allclose(
            fit.intercept[g], np.concatenate([r.intercept_ for r in refs]), rtol=2e-3, atol=3e-3
        )


@pytest.mark.parametrize("task", TASKS)
def test_the_batched_sweep_chooses_as_the_sequential_one(task):
    """Same chosen C and (to the fits' tolerance) the same val scores along the whole grid."""
    (X, y), (Xv, yv), _ = splits(sep=0.5)
    labels, val_labels = labels_for(task, y), labels_for(task, yv)
    n_classes = 3 if task == "multi-class" else 2
    score = make_scorer(val_labels, task=task, metric="log_loss")
    common = dict(task=task, n_classes=n_classes)
    sequential = LogRegHead.sweep(X, labels, Xv, score, **common)
    batched = LogRegHead.sweep_batched(X, labels, Xv, score, **common)
    assert batched.params == sequential.params
    assert [p for p, _ in batched.val_scores] == [p for p, _ in sequential.val_scores]
    losses = np.array([[s for _, s in sweep.val_scores] for sweep in (sequential, batched)])
    np.testing.assert_allclose(losses[0], losses[1], atol=2e-3)
    np.testing.assert_allclose(
        batched.best.predict_proba(Xv), sequential.best.predict_proba(Xv), atol=3e-3
    )


def test_a_grid_points_fit_does_not_depend_on_its_neighbours():
    """Each problem has its own line search and history: alone or among others, the same fit."""
    X, y = blobs(150, sep=0.5)
    x = standardize(X, *fit_scaler(X))
    targets = torch.as_tensor(y[:, 0])
    both = fit_grid(x, targets, [1e-3, 10.0], task="multi-class", n_out=3)
    alone = fit_grid(x, targets, [10.0], task="multi-class", n_out=3)
    assert both.iterations[1] == alone.iterations[0]
    np.testing.assert_allclose(both.coef[1], alone.coef[0], atol=1e-5)


def test_the_linear_grid_steps_as_torch_adamw_per_configuration():
    """One stacked tensor, one batched update: each configuration as its own torch AdamW."""
    torch.manual_seed(0)
    x, targets = torch.randn(64, 5), torch.randint(0, 3, (64,))
    grid = [(1e-2, 0.0), (1e-1, 1e-2), (1e-3, 1.0)]
    layers = _LinearGrid(grid, 5, 3, torch.device("cpu"))
    refs = [torch.nn.Linear(5, 3) for _ in grid]
    optimizers = []
    for ref, (lr, wd) in zip(refs, grid, strict=True):
        torch.nn.init.zeros_(ref.weight), torch.nn.init.zeros_(ref.bias)
        optimizers.append(torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=wd))
    for step in range(5):
        batch = slice(step * 12, step * 12 + 12)
        logits = layers.logits(x[batch])
        losses = [torch.nn.functional.cross_entropy(z, targets[batch]) for z in logits]
        layers.step(torch.stack(losses).sum())
        for ref, optimizer in zip(refs, optimizers, strict=True):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[batch]), targets[batch]).backward()
            optimizer.step()
    for g, ref in enumerate(refs):
        weight, bias = layers.state(g)
        np.testing.assert_allclose(weight, ref.weight.detach().numpy(), atol=1e-6)
        np.testing.assert_allclose(bias, ref.bias.detach().numpy(), atol=1e-6)


def test_small_problems_stay_on_the_cpu_and_the_fit_says_where_it_ran():
    assert head_device(100, 10) == "cpu"
    train, val, test = splits(sep=0.6)
    fit = fit_probe(train, val, test, head="logreg", task="multi-class", n_classes=3)
    assert fit.device == "cpu"


def test_a_big_problem_goes_to_the_gpu_only_where_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert head_device(100_000, 1024) == "cuda"
    assert head_device(1_000, 64) == "cpu"
    assert head_device(12_000, 768) == "cuda"  # BloodMNIST's train split, DINOv2-S cls+mean
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert head_device(100_000, 1024) == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("head", ["logreg", "linear", "knn"])
def test_every_head_sweeps_on_the_gpu(head):
    """On the GPU as on the CPU: the same choice for logreg and kNN, a close one for linear."""
    from probe.heads import head_class

    (X, y), (Xv, yv), _ = splits(sep=0.6)
    score = make_scorer(yv, task="multi-class", metric="log_loss")
    cls, common = head_class(head), dict(task="multi-class", n_classes=3)
    torch.manual_seed(0)
    on_cpu = cls.sweep(X, y, Xv, score, **common)
    torch.manual_seed(0)
    on_gpu = cls.sweep(X, y, Xv, score, device="cuda", **common)
    np.testing.assert_allclose(
        on_gpu.best.predict_proba(Xv), on_cpu.best.predict_proba(Xv), atol=0.05
    )
    if head != "linear":
        assert on_gpu.params == on_cpu.params
