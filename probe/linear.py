"""The `linear` head.

A torch linear layer on standardized features, a whole lr x wd grid at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from probe.base import LinearModel, Sweep, fit_scaler, score_or_worst, standardize

LINEAR_GRID = tuple((lr, wd) for lr in (1e-3, 1e-2, 1e-1) for wd in (0.0, 1e-4, 1e-2))


class LinearHead(LinearModel):
    """A torch linear layer on standardized features, trained with AdamW on mini-batches.

    Runs on the CPU unless given a `device` (`probe fit` gives it the GPU for large problems:
    `probe.heads.head_device`). A probe is a few thousand small steps, so a step is a few kernels
    whatever the grid's size: the grid is one tensor (an H100 took 7.8-16.4 s, where 2 cores took
    2.4 s, when each configuration had its own parameters and loss). Shuffling follows torch's
    global seed on the CPU whatever the device (so it is not `deterministic`: seeds give different
    fits). `sweep` trains a whole (lr, weight decay) grid together in one pass over the data, each
    configuration with its own optimizer state and early stopping on val.
    """

    deterministic = False

    def __init__(
        self,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        *,
        task: str = "multi-class",
        n_classes: int | None = None,
        epochs: int = 100,
        batch_size: int = 256,
        patience: int = 10,
        device: str | None = None,
    ):
        self.lr, self.weight_decay, self.task, self.n_classes = lr, weight_decay, task, n_classes
        self.epochs, self.batch_size, self.patience = epochs, batch_size, patience
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearHead:
        """Train for `epochs` epochs (no early stopping: that needs val, see `sweep`)."""
        self.mean_, self.scale_ = fit_scaler(X)
        targets = self._targets(y)
        grid = _LinearGrid(
            [(self.lr, self.weight_decay)], X.shape[1], len(self.classes_), self._device()
        )
        x, targets = (
            standardize(X, self.mean_, self.scale_).to(grid.device),
            targets.to(grid.device),
        )
        for _ in range(self.epochs):
            self._epoch(grid, x, targets)
        self.coef_, self.intercept_ = grid.state(0)
        self.best_epoch_ = self.epochs
        return self

    @classmethod
    def sweep(
        cls, X, y, X_val, score: Callable, *, task, n_classes=None, grid=LINEAR_GRID, **kw
    ) -> Sweep:
        """Train every (lr, wd) of `grid` together; each keeps its best-on-val epoch."""
        head = cls(task=task, n_classes=n_classes, **kw)
        head.mean_, head.scale_ = fit_scaler(X)
        targets = head._targets(y)
        layers = _LinearGrid(list(grid), X.shape[1], len(head.classes_), head._device())
        x, x_val = (standardize(a, head.mean_, head.scale_).to(layers.device) for a in (X, X_val))
        targets = targets.to(layers.device)
        # (val score, epoch, (coef, intercept)) of each configuration's best epoch so far
        best: list[tuple[float, int, tuple | None]] = [(-math.inf, 0, None)] * len(grid)
        for epoch in range(1, head.epochs + 1):
            head._epoch(layers, x, targets)
            val_logits = layers.logits(x_val, train=False)
            for g, (best_score, best_epoch, best_state) in enumerate(best):
                if epoch - best_epoch > head.patience:
                    continue  # this configuration has stopped early
                val_score = score_or_worst(score(head._proba(val_logits[g])))
                if best_state is None or val_score > best_score:
                    best[g] = (val_score, epoch, layers.state(g))
            if all(epoch - best_epoch > head.patience for _, best_epoch, _ in best):
                break
        scores = [
            ({"lr": lr, "weight_decay": wd, "epochs": b[1]}, b[0])
            for (lr, wd), b in zip(grid, best, strict=True)
        ]
        chosen = max(range(len(grid)), key=lambda g: best[g][0])
        head.lr, head.weight_decay = grid[chosen]
        _, head.best_epoch_, state = best[chosen]
        assert state is not None, "every configuration keeps its first epoch"
        head.coef_, head.intercept_ = state
        head.epochs = head.best_epoch_  # so that `fit` on the same data retraces the chosen run
        return Sweep(head, scores[chosen][0], scores)

    def _epoch(self, layers: _LinearGrid, x: torch.Tensor, targets: torch.Tensor) -> None:
        """One shuffled pass of mini-batches; every configuration sees the same batches."""
        for idx in torch.randperm(len(x)).to(x.device).split(self.batch_size):
            logits = layers.logits(x[idx])  # (G, B, n_out)
            batch_targets = targets[idx]
            stacked = batch_targets.repeat(len(logits), *[1] * (batch_targets.dim() - 1))
            # the mean over G x B rows, times G: every configuration's own batch mean, summed
            layers.step(self._loss(logits.flatten(0, 1), stacked) * len(logits))

    def _device(self) -> torch.device:
        return torch.device(self.device or "cpu")


class _LinearGrid:
    """G independent linear layers as one (G, n_out, D) tensor, stepped by one batched AdamW.

    Each configuration has its own lr and weight decay; an update is a few whole-grid tensor ops
    whatever G (torch's AdamW would take one parameter group, and its kernels, per configuration).
    The update is torch's AdamW (decoupled decay, bias-corrected moments, defaults betas and eps).
    """

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(
        self, grid: list[tuple[float, float]], n_features: int, n_out: int, device: torch.device
    ):
        self.device = device
        self.weight = torch.zeros(len(grid), n_out, n_features + 1, device=device)  # bias last
        self.weight.requires_grad_(True)
        lr, wd = (torch.tensor(column, device=device) for column in zip(*grid, strict=True))
        self.lr, self.decay = lr[:, None, None], (1 - lr * wd)[:, None, None]
        self.moment, self.square = torch.zeros_like(self.weight), torch.zeros_like(self.weight)
        self.steps = 0

    def logits(self, x: torch.Tensor, *, train: bool = True) -> torch.Tensor:
        """x: (B, D) -> (G, B, n_out); without `train`, no graph and the result is on the CPU."""
        with torch.set_grad_enabled(train):
            x = x.to(self.device)
            w = self.weight
            out = torch.einsum("bd,gcd->gbc", x, w[..., :-1]) + w[..., -1][:, None]
        return out if train else out.cpu()

    def step(self, loss: torch.Tensor) -> None:
        """Backward `loss` (the sum of every configuration's) and one AdamW step for each."""
        self.weight.grad = None
        loss.backward()
        grad, (beta1, beta2) = self.weight.grad, self.BETAS
        assert grad is not None, "the loss depends on every configuration's weights"
        self.steps += 1
        with torch.no_grad():
            self.weight.mul_(self.decay)
            self.moment.lerp_(grad, 1 - beta1)
            self.square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.square.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(self.EPS)
            self.weight.sub_(self.lr / (1 - beta1**self.steps) * self.moment / denom)

    def state(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """A real copy (not a view of the live tensor) of configuration g's weights and bias."""
        w = self.weight[g].detach().cpu().numpy()
        return w[:, :-1].copy(), w[:, -1].copy()
