"""Heads on frozen features, as scikit-learn-style estimators: `logreg`, `linear`, `knn`.

Every head handles the four MedMNIST task types the same way (`probe.base`): softmax over classes
for multi-class, binary and ordinal tasks, one sigmoid per label for multi-label tasks, so
`predict_proba` is what `medprobe.metrics.evaluate` expects. Each class also has `sweep`, which fits
its whole hyper-parameter grid on train, scores each point on val with `score(proba) -> float`,
and returns the best.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from probe.base import (
    MULTI_LABEL,
    BaseHead,
    LinearModel,
    Sweep,
    fit_scaler,
    score_or_worst,
    standardize,
)
from probe.lbfgs import fit_grid
from probe.linear import LinearHead
from probe.options import HEAD_NAMES

# 1e-6 .. 1e5, three points a decade (34): from a head that predicts the class prior to one barely
# regularized, fine enough that the val loss's minimum falls between neighbours a factor 2.2 apart.
LOGREG_CS = tuple(float(c) for c in np.logspace(-6, 5, 34))
KNN_MAX_K = 100
KNN_TEMPERATURE = 0.07  # DINO's weighted kNN: votes weighted by exp(cosine / T)


# Heads on fewer feature values (train rows x dimension) than this fit on one thread: a second saves
# little on an idle machine and costs up to 10x on a busy one, where torch's threads wait on each
# other; larger problems use every core (BENCHMARKS.md, "Heads against scikit-learn").
ONE_THREAD_BELOW = 10_000_000


def head_threads(n: int, dim: int) -> int:
    """Torch threads for fitting a head on (n, dim) train features."""
    return 1 if n * dim < ONE_THREAD_BELOW else torch.get_num_threads()


# A head's sweep runs on the GPU, where there is one, from this many train feature values. Below,
# a whole sweep is a few tenths of a second on one CPU core, about what a GPU spends launching its
# kernels; above, the CPU's time grows with the data and the GPU's hardly does. Chosen on that
# principle: not yet measured on a GPU (issue #33: `python -m benchmarks.gpu --steps heads`).
GPU_FROM = 1_000_000


def head_device(n: int, dim: int) -> str:
    """Where a head's sweep on (n, dim) train features runs: "cuda" or "cpu"."""
    return "cuda" if n * dim >= GPU_FROM and torch.cuda.is_available() else "cpu"


class LogRegHead(LinearModel):
    """L2-regularized logistic regression on standardized features, fitted with L-BFGS.

    The objective is scikit-learn's, per sample: mean loss + ||W||^2 / (2 C n), so C means what it
    means there, and so is the model: one logit (a sigmoid) for binary tasks, a softmax over the
    classes (multinomial) otherwise, one sigmoid per label for multi-label tasks. So is when it
    stops: at `max_iter` iterations or when no gradient entry exceeds `tol` (scipy's pgtol, which
    scikit-learn's lbfgs is given). With `warm_start`, a refit starts from the previous solution
    (fast along a C grid).
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        task: str = "multi-class",
        n_classes: int | None = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        warm_start: bool = False,
    ):
        self.C, self.task, self.n_classes = C, task, n_classes
        self.max_iter, self.tol, self.warm_start = max_iter, tol, warm_start

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogRegHead:
        """X: (n, D) features; y: (n,) / (n, 1) classes or (n, L) multi-label 0/1."""
        targets = self._targets(y)
        if not (self.warm_start and hasattr(self, "coef_")):
            self._start(X)
        return self._fit_standardized(standardize(X, self.mean_, self.scale_), targets)

    def _start(self, X: np.ndarray) -> None:
        """The scaler of the train features and a zero model (one row per output)."""
        self.mean_, self.scale_ = fit_scaler(X)
        n_out = 1 if self.task == "binary-class" else len(self.classes_)
        self.coef_, self.intercept_ = (
            np.zeros((n_out, X.shape[1]), np.float32),
            np.zeros(n_out, np.float32),
        )

    def _fit_standardized(self, x: torch.Tensor, targets: torch.Tensor) -> LogRegHead:
        """L-BFGS from the current coefficients on standardized features x (n, D)."""
        weight = torch.tensor(self.coef_, requires_grad=True)
        bias = torch.tensor(self.intercept_, requires_grad=True)
        penalty = 1.0 / (2.0 * self.C * len(x))
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            max_iter=self.max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=self.tol,  # scikit-learn's stopping rule: max |gradient| <= tol
            tolerance_change=1e-9,
            history_size=20,
        )
        # Multi-label: the loss summed over labels (per sample), so each label's fit is
        # scikit-learn's
        # binary one at this C (one-vs-rest); the shared loss averages over labels too.
        per_label = targets.shape[1] if self.task == MULTI_LABEL else 1

        def closure():
            optimizer.zero_grad()
            loss = (
                per_label * self._loss(x @ weight.T + bias, targets) + penalty * weight.pow(2).sum()
            )
            loss.backward()
            return loss

        optimizer.step(closure)
        self.coef_, self.intercept_ = weight.detach().numpy(), bias.detach().numpy()
        return self

    @classmethod
    def sweep(
        cls, X, y, X_val, score: Callable, *, task, n_classes=None, Cs=LOGREG_CS, device="cpu"
    ) -> Sweep:
        """Fit every C of the grid on train; the best on val by `score`.

        On the CPU along the grid from strong to weak regularization, warm-starting each fit; on
        another device every C at once (`sweep_batched`). The features are standardized once.
        """
        if torch.device(device).type != "cpu":
            return cls.sweep_batched(
                X, y, X_val, score, task=task, n_classes=n_classes, Cs=Cs, device=device
            )
        head = cls(task=task, n_classes=n_classes, warm_start=True)
        targets = head._targets(y)
        head._start(X)
        x, x_val = (standardize(a, head.mean_, head.scale_) for a in (X, X_val))
        best, best_score, scores = None, -math.inf, []
        for C in sorted(Cs):
            head.C = C
            head._fit_standardized(x, targets)
            logits = x_val @ torch.as_tensor(head.coef_).T + torch.as_tensor(head.intercept_)
            val_score = score_or_worst(score(head._proba(logits)))
            scores.append(({"C": C}, val_score))
            if best is None or val_score > best_score:
                best, best_score = copy.deepcopy(head), val_score
        assert best is not None, "a sweep has at least one C"
        best.warm_start = False
        return Sweep(best, {"C": best.C}, scores)

    @classmethod
    def sweep_batched(
        cls, X, y, X_val, score: Callable, *, task, n_classes=None, Cs=LOGREG_CS, device="cpu"
    ) -> Sweep:
        """`sweep` with every C fitted at once on `device`, from zero (`probe.lbfgs.fit_grid`).

        The same models as the sequential sweep, to its tolerance; on a GPU, a few batched
        kernels per iteration for the whole grid instead of a few per C.
        """
        head = cls(task=task, n_classes=n_classes)
        targets = head._targets(y)
        head._start(X)
        x = standardize(X, head.mean_, head.scale_).to(device)
        Cs = sorted(Cs)
        fit = fit_grid(x, targets, Cs, task=task, n_out=len(head.coef_), tol=head.tol)
        x_val = standardize(X_val, head.mean_, head.scale_)  # scored on the CPU, as `score` is
        logits = torch.einsum("nd,gkd->gnk", x_val, torch.as_tensor(fit.coef))
        logits += torch.as_tensor(fit.intercept)[:, None]
        scores = [
            ({"C": C}, score_or_worst(score(head._proba(z))))
            for C, z in zip(Cs, logits, strict=True)
        ]
        chosen = max(range(len(Cs)), key=lambda g: scores[g][1])  # the first (strongest) of ties
        head.C, head.coef_, head.intercept_ = Cs[chosen], fit.coef[chosen], fit.intercept[chosen]
        return Sweep(head, {"C": head.C}, scores)


class KNNHead(BaseHead):
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
        """Keep the L2-normalized training features and their one-hot targets."""
        targets = self._targets(y)
        self.train_ = F.normalize(torch.as_tensor(np.asarray(X, dtype=np.float32)), dim=1)
        n_out = len(self.classes_)
        self.targets_ = targets if self.task == MULTI_LABEL else F.one_hot(targets, n_out).float()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities: the distance-weighted vote of the `k` nearest neighbours."""
        return self._votes(X, self.k)[:, -1].double().numpy()

    def _votes(self, X: np.ndarray, k: int, chunk: int = 2048, device="cpu") -> torch.Tensor:
        """(n, k, n_out): for every k' <= k, the weighted vote of the k' nearest neighbours."""
        k = min(k, len(self.train_))
        train, targets, out = self.train_.to(device), self.targets_.to(device), []
        for start in range(0, len(X), chunk):
            rows = torch.as_tensor(np.asarray(X[start : start + chunk], dtype=np.float32))
            sims, idx = (F.normalize(rows.to(device), dim=1) @ train.T).topk(k, dim=1)
            weights = torch.exp((sims - sims[:, :1]) / self.temperature)  # shifted: no overflow
            cumulative = (weights[..., None] * targets[idx]).cumsum(dim=1)
            out.append((cumulative / weights.cumsum(dim=1)[..., None]).cpu())
        return torch.cat(out)

    @classmethod
    def sweep(
        cls, X, y, X_val, score: Callable, *, task, n_classes=None, max_k=KNN_MAX_K, device="cpu"
    ) -> Sweep:
        """Every k in 1..max_k from one neighbour search (votes add up along the sorted axis)."""
        head = cls(task=task, n_classes=n_classes).fit(X, y)
        votes = head._votes(X_val, max_k, device=device).double().numpy()
        scores = [({"k": k + 1}, score_or_worst(score(votes[:, k]))) for k in range(votes.shape[1])]
        params, _ = max(scores, key=lambda item: item[1])  # first (smallest) k among ties
        head.k = params["k"]
        return Sweep(head, params, scores)


HEADS: dict[str, type[BaseHead]] = dict(
    zip(HEAD_NAMES, (LogRegHead, LinearHead, KNNHead), strict=True)
)


def head_class(name: str) -> type[BaseHead]:
    """The head class of a name (`logreg`, `linear`, `knn`); an unknown name is refused."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
    return HEADS[name]


def make_head(name: str, **params):
    """Build a head by name with its hyper-parameters."""
    return head_class(name)(**params)
