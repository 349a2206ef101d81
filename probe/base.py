"""What every head shares: target encoding, probabilities per task type, standardization."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from medprobe.outputs import loss, probabilities
from medprobe.tasks import MULTI_LABEL


@dataclass
class Sweep:
    """Outcome of a grid search on val: the refit-free best head and every grid point's score."""

    best: object
    params: dict
    val_scores: list[tuple[dict, float]]


class BaseHead:
    """Shared by every head: targets (classes or multi-label 0/1 rows), probabilities, losses.

    `deterministic` heads give the same fit on the same data whatever the seed, so repeating them
    over seeds would only repeat one number.
    """

    deterministic: bool = True
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
        return probabilities(logits.detach(), self.task)

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss(logits, targets, self.task)


class LinearModel(BaseHead):
    """A head that ends as standardized features times `coef_` plus `intercept_` (logreg, linear)."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """X (n, D) features -> (n, n_out) probabilities."""
        x = standardize(X, self.mean_, self.scale_)
        return self._proba(x @ torch.as_tensor(self.coef_).T + torch.as_tensor(self.intercept_))


def standardize(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    return torch.as_tensor((np.asarray(X, dtype=np.float32) - mean) / scale)


def fit_scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the train features (std 1 where a feature is constant)."""
    X = np.asarray(X, dtype=np.float32)
    std = X.std(axis=0)
    return X.mean(axis=0), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def score_or_worst(value: float) -> float:
    """A val score to compare: NaN (metric undefined) ranks below every real score."""
    return value if value == value else -math.inf
