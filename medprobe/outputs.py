"""What a classifier's logits mean per task: its probabilities, and the loss that trains them.

One home for both paths: probe heads and fine-tuned networks score and train the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medprobe.tasks import MULTI_LABEL


def probabilities(logits: torch.Tensor | np.ndarray, task: str) -> np.ndarray:
    """logits (n, n_out) -> probabilities (n, n_out) as float64: one sigmoid per label for
    multi-label data, a softmax over classes otherwise."""
    z = torch.as_tensor(logits).double()
    return (torch.sigmoid(z) if task == MULTI_LABEL else torch.softmax(z, dim=-1)).numpy()


def loss(logits: torch.Tensor, targets: torch.Tensor, task: str, *, label_smoothing: float = 0.0):
    """Mean training loss: binary cross-entropy per label (targets (n, L) 0/1) for multi-label data,
    else cross-entropy over classes (targets (n,) or (n, 1) class indices)."""
    if task == MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets.reshape(-1).long(), label_smoothing=label_smoothing)
