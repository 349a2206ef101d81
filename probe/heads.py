"""Heads on frozen features, as scikit-learn-style estimators: `logreg`, `linear`, `knn`.

Every head handles the four MedMNIST task types the same way: softmax over classes for multi-class,
binary and ordinal tasks, one sigmoid per label for multi-label tasks, so `predict_proba` is what
`core.metrics.evaluate` expects. Each class also has `sweep`, which fits its whole hyper-parameter
grid on train, scores each point on val with `score(proba) -> float`, and returns the best.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MULTI_LABEL = "multi-label, binary-class"
LOGREG_CS = tuple(10.0**e for e in range(-4, 5))  # 1e-4 .. 1e4, 9 points
KNN_MAX_K = 100
KNN_TEMPERATURE = 0.07  # DINO's weighted kNN: votes weighted by exp(cosine / T)


@dataclass
class Sweep:
    """Outcome of a grid search on val: the refit-free best head and every grid point's score."""

    best: object
    params: dict
    val_scores: list[tuple[dict, float]]


class _Head:
    """Shared target handling: integer classes or multi-label 0/1 rows -> torch tensors."""

    task: str
    n_classes: int | None

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        y = np.asarray(y)
        if self.task == MULTI_LABEL:
            self.classes_ = np.arange(y.shape[1])
            return torch.as_tensor(y, dtype=torch.float32)
        y = y.reshape(len(y))
        self.classes_ = np.arange(self.n_classes or int(y.max()) + 1)
        return torch.as_tensor(y, dtype=torch.long)

    def _proba(self, logits: torch.Tensor) -> np.ndarray:
        probs = torch.sigmoid(logits) if self.task == MULTI_LABEL else torch.softmax(logits, dim=-1)
        return probs.double().numpy()

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.task == MULTI_LABEL:
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.cross_entropy(logits, targets)


def standardize(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    return torch.as_tensor((np.asarray(X, dtype=np.float32) - mean) / scale)


def fit_scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the train features (std 1 where a feature is constant)."""
    X = np.asarray(X, dtype=np.float32)
    std = X.std(axis=0)
    return X.mean(axis=0), np.where(std > 1e-6, std, 1.0).astype(np.float32)


class LogRegHead(_Head):
    """L2-regularized logistic regression on standardized features, fitted with L-BFGS.

    The objective is sklearn's, per sample: mean loss + ||W||^2 / (2 C n), so C means what it
    means there. With `warm_start`, a refit starts from the previous solution (fast along a C grid).
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        task: str = "multi-class",
        n_classes: int | None = None,
        max_iter: int = 100,
        warm_start: bool = False,
    ):
        self.C, self.task, self.n_classes = C, task, n_classes
        self.max_iter, self.warm_start = max_iter, warm_start

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogRegHead:
        """X: (n, D) features; y: (n,) / (n, 1) classes or (n, L) multi-label 0/1."""
        targets = self._targets(y)
        if not (self.warm_start and hasattr(self, "coef_")):
            self.mean_, self.scale_ = fit_scaler(X)
            n_out = len(self.classes_)
            self.coef_, self.intercept_ = (
                np.zeros((n_out, X.shape[1]), np.float32),
                np.zeros(n_out, np.float32),
            )
        x = standardize(X, self.mean_, self.scale_)
        weight = torch.tensor(self.coef_, requires_grad=True)
        bias = torch.tensor(self.intercept_, requires_grad=True)
        penalty = 1.0 / (2.0 * self.C * len(x))
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            max_iter=self.max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-5,
            tolerance_change=1e-9,
            history_size=20,
        )

        def closure():
            optimizer.zero_grad()
            loss = self._loss(x @ weight.T + bias, targets) + penalty * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.coef_, self.intercept_ = weight.detach().numpy(), bias.detach().numpy()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        x = standardize(X, self.mean_, self.scale_)
        return self._proba(x @ torch.as_tensor(self.coef_).T + torch.as_tensor(self.intercept_))

    @classmethod
    def sweep(cls, X, y, X_val, score: Callable, *, task, n_classes=None, Cs=LOGREG_CS) -> Sweep:
        """Fit along the C grid from strong to weak regularization, warm-starting each fit."""
        head = cls(task=task, n_classes=n_classes, warm_start=True)
        best, best_score, scores = None, -math.inf, []
        for C in sorted(Cs):
            head.C = C
            val_score = score(head.fit(X, y).predict_proba(X_val))
            scores.append(({"C": C}, val_score))
            if val_score > best_score:
                best, best_score = copy.deepcopy(head), val_score
        best.warm_start = False
        return Sweep(best, {"C": best.C}, scores)


class KNNHead(_Head):
    """Cosine-similarity kNN with votes weighted by exp(similarity / T) (DINO's protocol)."""

    def __init__(
        self,
        k: int = 20,
        *,
        task: str = "multi-class",
        n_classes: int | None = None,
        temperature: float = KNN_TEMPERATURE,
    ):
        self.k, self.task, self.n_classes, self.temperature = k, task, n_classes, temperature

    def fit(self, X: np.ndarray, y: np.ndarray) -> KNNHead:
        targets = self._targets(y)
        self.train_ = F.normalize(torch.as_tensor(np.asarray(X, dtype=np.float32)), dim=1)
        n_out = len(self.classes_)
        self.targets_ = targets if self.task == MULTI_LABEL else F.one_hot(targets, n_out).float()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._votes(X, self.k)[:, -1].double().numpy()

    def _votes(self, X: np.ndarray, k: int, chunk: int = 2048) -> torch.Tensor:
        """(n, k, n_out): for every k' <= k, the weighted vote of the k' nearest neighbours."""
        k = min(k, len(self.train_))
        out = []
        for start in range(0, len(X), chunk):
            query = F.normalize(
                torch.as_tensor(np.asarray(X[start : start + chunk], dtype=np.float32)), dim=1
            )
            sims, idx = (query @ self.train_.T).topk(k, dim=1)
            weights = torch.exp((sims - sims[:, :1]) / self.temperature)  # shifted: no overflow
            cumulative = (weights[..., None] * self.targets_[idx]).cumsum(dim=1)
            out.append(cumulative / weights.cumsum(dim=1)[..., None])
        return torch.cat(out)

    @classmethod
    def sweep(cls, X, y, X_val, score: Callable, *, task, n_classes=None, max_k=KNN_MAX_K) -> Sweep:
        """Every k in 1..max_k from one neighbour search (votes accumulate along the sorted axis)."""
        head = cls(task=task, n_classes=n_classes).fit(X, y)
        votes = head._votes(X_val, max_k).double().numpy()
        scores = [({"k": k + 1}, score(votes[:, k])) for k in range(votes.shape[1])]
        params, _ = max(scores, key=lambda item: item[1])  # first (smallest) k among ties
        head.k = params["k"]
        return Sweep(head, params, scores)


LINEAR_GRID = tuple((lr, wd) for lr in (1e-3, 1e-2, 1e-1) for wd in (0.0, 1e-4, 1e-2))


class LinearHead(_Head):
    """A torch linear layer on standardized features, trained with AdamW on mini-batches.

    Runs on the GPU when there is one; shuffling follows torch's global seed. `sweep` trains a
    whole (lr, weight decay) grid together in one pass over the data, each configuration with its
    own optimizer state and early stopping on val.
    """

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
        grid = _LinearGrid([(self.lr, self.weight_decay)], X.shape[1], len(self.classes_), self._device())
        x = standardize(X, self.mean_, self.scale_)
        for _ in range(self.epochs):
            self._epoch(grid, x, targets)
        self.coef_, self.intercept_ = grid.state(0)
        self.best_epoch_ = self.epochs
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        x = standardize(X, self.mean_, self.scale_)
        return self._proba(x @ torch.as_tensor(self.coef_).T + torch.as_tensor(self.intercept_))

    @classmethod
    def sweep(cls, X, y, X_val, score: Callable, *, task, n_classes=None, grid=LINEAR_GRID, **kw) -> Sweep:
        """Train every (lr, wd) of `grid` together; each keeps its best-on-val epoch."""
        head = cls(task=task, n_classes=n_classes, **kw)
        head.mean_, head.scale_ = fit_scaler(X)
        targets = head._targets(y)
        x, x_val = standardize(X, head.mean_, head.scale_), standardize(X_val, head.mean_, head.scale_)
        layers = _LinearGrid(list(grid), X.shape[1], len(head.classes_), head._device())
        best = [(-math.inf, 0, None)] * len(grid)  # (val score, epoch, (coef, intercept))
        for epoch in range(1, head.epochs + 1):
            head._epoch(layers, x, targets)
            val_logits = layers.logits(x_val, train=False)
            for g, (best_score, best_epoch, _) in enumerate(best):
                if epoch - best_epoch > head.patience:
                    continue  # this configuration has stopped early
                val_score = score(head._proba(val_logits[g]))
                if val_score > best_score:
                    best[g] = (val_score, epoch, layers.state(g))
            if all(epoch - best_epoch > head.patience for _, best_epoch, _ in best):
                break
        scores = [
            ({"lr": lr, "weight_decay": wd, "epochs": b[1]}, b[0])
            for (lr, wd), b in zip(grid, best, strict=True)
        ]
        chosen = max(range(len(grid)), key=lambda g: best[g][0])
        head.lr, head.weight_decay = grid[chosen]
        _, head.best_epoch_, (head.coef_, head.intercept_) = best[chosen]
        head.epochs = head.best_epoch_  # so that `fit` on the same data retraces the chosen run
        return Sweep(head, scores[chosen][0], scores)

    def _epoch(self, layers: _LinearGrid, x: torch.Tensor, targets: torch.Tensor) -> None:
        """One shuffled pass of mini-batches; every configuration sees the same batches."""
        for idx in torch.randperm(len(x)).split(self.batch_size):
            logits = layers.logits(x[idx])
            batch_targets = targets[idx].to(logits.device)
            loss = sum(self._loss(logits[g], batch_targets) for g in range(len(logits)))
            layers.step(loss)

    def _device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))


class _LinearGrid:
    """G independent linear layers evaluated as one batched matmul, each with its own AdamW group."""

    def __init__(self, grid: list[tuple[float, float]], n_features: int, n_out: int, device: torch.device):
        self.device = device
        self.weights = [torch.zeros(n_out, n_features, device=device, requires_grad=True) for _ in grid]
        self.biases = [torch.zeros(n_out, device=device, requires_grad=True) for _ in grid]
        groups = zip(grid, self.weights, self.biases, strict=True)
        self.optimizer = torch.optim.AdamW(
            [{"params": [w, b], "lr": lr, "weight_decay": wd} for (lr, wd), w, b in groups]
        )

    def logits(self, x: torch.Tensor, *, train: bool = True) -> torch.Tensor:
        """x: (B, D) -> (G, B, n_out); without `train`, no graph and the result is on the CPU."""
        with torch.set_grad_enabled(train):
            out = torch.einsum("bd,gcd->gbc", x.to(self.device), torch.stack(self.weights))
            out = out + torch.stack(self.biases)[:, None]
        return out if train else out.cpu()

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def state(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """A real copy (not a view of the live tensors) of configuration g's weights."""
        return self.weights[g].detach().cpu().numpy().copy(), self.biases[g].detach().cpu().numpy().copy()


HEADS: dict[str, type] = {"logreg": LogRegHead, "linear": LinearHead, "knn": KNNHead}


def make_head(name: str, **params):
    """Build a head by name (`logreg`, `linear`, `knn`) with its hyper-parameters."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
    return HEADS[name](**params)
