"""What every head shares: target encoding, probabilities per task type, standardization."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from medprobe.data.validate import MULTI_LABEL
from medprobe.outputs import loss, probabilities


@dataclass
class Sweep:
    """Outcome of a grid search on val: the refit-free best head and every grid point's score."""

    best: Any  # the head class that swept, fitted
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

    # Each head's classmethod: its grid fitted on (X, y), each scored on X_val; the best and all.
    sweep: ClassVar[Callable[..., Sweep]]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """X (n, D) features -> (n, n_classes) probabilities."""
        raise NotImplementedError

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        y = np.asarray(y)
        if self.task == MULTI_LABEL:
            self.classes_ = np.arange(y.shape[1])
            return torch.as_tensor(y, dtype=torch.float32)
        y = y.reshape(len(y))
        self.classes_ = np.arange(self.n_classes or int(y.max()) + 1)
        return torch.as_tensor(y, dtype=torch.long)

    def _proba(self, logits: torch.Tensor) -> np.ndarray:
        if _one_logit(logits, self.task):  # P(class 1) = sigmoid(z): the columns [1 - p, p]
            positive = torch.sigmoid(logits.detach().double()[:, 0])
            return torch.stack([1 - positive, positive], dim=1).numpy()
        return probabilities(logits.detach(), self.task)

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if _one_logit(logits, self.task):
            return F.binary_cross_entropy_with_logits(logits[:, 0], targets.reshape(-1).float())
        return loss(logits, targets, self.task)


class LinearModel(BaseHead):
    """A head that ends as standardized features times `coef_` plus `intercept_` (logreg, linear).

    A binary head may keep one row (the logit of class 1, as scikit-learn's logistic regression
    does) where the task has two classes.
    """

    mean_: np.ndarray  # set by `fit`: the standardization, then the linear map
    scale_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """X (n, D) features -> (n, n_classes) probabilities."""
        x = standardize(X, self.mean_, self.scale_)
        return self._proba(x @ torch.as_tensor(self.coef_).T + torch.as_tensor(self.intercept_))

    def output_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The head as (coef (n_classes, D), intercept (n_classes,)) on standardized features.

        Their softmax (sigmoid, multi-label) equals `predict_proba`; a one-row binary head
        becomes the rows -z/2, z/2 (softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)]).
        """
        coef, intercept = np.asarray(self.coef_), np.asarray(self.intercept_)
        if self.task == "binary-class" and len(coef) == 1:
            return np.concatenate([-coef / 2, coef / 2]), np.concatenate(
                [-intercept / 2, intercept / 2]
            )
        return coef, intercept


def _one_logit(logits: torch.Tensor, task: str) -> bool:
    return task == "binary-class" and logits.shape[-1] == 1


def standardize(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    """(X - mean) / scale as a float32 tensor."""
    return torch.as_tensor((np.asarray(X, dtype=np.float32) - mean) / scale)


def fit_scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the train features (std 1 where a feature is constant)."""
    X = np.asarray(X, dtype=np.float32)
    std = X.std(axis=0)
    return X.mean(axis=0), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def score_or_worst(value: float) -> float:
    """A val score to compare: NaN (metric undefined) ranks below every real score."""
    return value if value == value else -math.inf
