"""What a classifier's logits mean per task: its probabilities, and the loss that trains them.

One home for both paths: probe heads and fine-tuned networks score and train the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medprobe.data.validate import MULTI_LABEL


def probabilities(logits: torch.Tensor | np.ndarray, task: str) -> np.ndarray:
    """Logits (n, n_out) -> probabilities (n, n_out) as float64.

    One sigmoid per label for multi-label data, a softmax over classes otherwise.
    """
    z = torch.as_tensor(logits).double()
    return (torch.sigmoid(z) if task == MULTI_LABEL else torch.softmax(z, dim=-1)).numpy()


def loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    task: str,
    *,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
):
    """Mean training loss.

    Binary cross-entropy per label (targets (n, L) 0/1) for multi-label data, else cross-entropy
    over classes (targets (n,) or (n, 1) class indices).

    `weight` (`class_weights`): per class for cross-entropy (a weighted mean, as torch defines it);
    per label the weight of its positives for multi-label data.
    """
    if task == MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=weight)
    targets = targets.reshape(-1).long()
    return F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing)


def loss_total(
    targets: torch.Tensor, task: str, *, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """What `loss` divides its sum by for these targets.

    The number of (image, label) terms for multi-label data, else the images' class weights added up
    (their number when unweighted).
    """
    if task == MULTI_LABEL:
        return torch.tensor(float(targets.numel()))
    targets = targets.reshape(-1).long()
    return torch.tensor(float(len(targets))) if weight is None else weight[targets].sum()


@dataclass(frozen=True)
class TaskLoss:
    """`loss` for one task and its options.

    A batch's loss is its parts' losses, each scaled by its share of `total` (gradient accumulation
    over micro-batches).
    """

    task: str
    label_smoothing: float = 0.0
    weight: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch (a sum: divide by `total` for the mean)."""
        return loss(
            logits, targets, self.task, label_smoothing=self.label_smoothing, weight=self.weight
        )

    def total(self, targets: torch.Tensor) -> torch.Tensor:
        """What the batch's summed loss divides by for its mean."""
        return loss_total(targets, self.task, weight=self.weight)


def class_weights(labels: np.ndarray, task: str, n_out: int) -> torch.Tensor:
    """Balanced loss weights from the train labels, so every class counts as much as the others.

    Single-label: n / (n_classes x n_c) per class (scikit-learn's "balanced"; 0 for a class absent
    from train). Multi-label: negatives / positives per label, the positives' weight (1 where a
    label has no positives).
    """
    labels = np.asarray(labels)
    if task == MULTI_LABEL:
        positives = labels.reshape(len(labels), -1).sum(axis=0).astype(np.float64)
        negatives = len(labels) - positives
        ratio = np.divide(negatives, positives, out=np.ones_like(positives), where=positives > 0)
        return torch.as_tensor(ratio, dtype=torch.float32)
    counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=n_out).astype(np.float64)
    weights = np.divide(len(labels), n_out * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.as_tensor(weights, dtype=torch.float32)
