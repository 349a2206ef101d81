"""Attention pooling of a volume's slices, learned on train: `probe fit --slices attention`.

Gated attention (Ilse, Tomczak and Welling, "Attention-based Deep Multiple Instance Learning",
ICML 2018, eq. 9): each slice's weight is `w . (tanh(V h) * sigmoid(U h))`, softmaxed over the
slices of an axis, and the axis's vector is the weighted sum of its slices. A linear classifier
on the axes' vectors, concatenated, trains the attention with it on the train volumes (one module
shared by the axes); its weight decay is chosen on the val loss. The slices' weights then pool
every feature kind of every split, and the heads asked for (`--head`) fit on the pooled rows as
on a mean's, so the aggregation stays a fit-time option like the others and the heads are the
same code.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from medprobe.data import MULTI_LABEL
from medprobe.outputs import loss
from probe.base import fit_scaler, standardize

HIDDEN = 128  # the attention's width (Ilse et al. use 128 for their MNIST bags)
WEIGHT_DECAYS = (1e-4, 1e-2, 1.0)  # AdamW's, chosen on the val loss
EPOCHS = 40
BATCH = 64  # volumes per step
LR = 1e-3


class GatedAttention(nn.Module):
    """Slices (N, A, S, D) -> per-axis weights (N, A, S) and the classifier's logits."""

    def __init__(self, dim: int, n_axes: int, n_out: int):
        super().__init__()
        self.V, self.U = nn.Linear(dim, HIDDEN), nn.Linear(dim, HIDDEN)
        self.w = nn.Linear(HIDDEN, 1)
        self.classifier = nn.Linear(n_axes * dim, n_out)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax over each axis's slices of their gated attention scores."""
        scores = self.w(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x))).squeeze(-1)
        return torch.softmax(scores, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the attention-pooled volumes."""
        pooled = (self.weights(x).unsqueeze(-1) * x).sum(dim=2)  # (N, A, D)
        return self.classifier(pooled.flatten(1))


def attention_pool(
    bags: dict[str, tuple[np.ndarray, np.ndarray]],
    features: dict[str, dict[str, np.ndarray]],
    *,
    task: str,
    n_classes: int,
    seed: int,
) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Every split's volumes pooled by the attention that classifies train's best.

    Args:
        bags: split -> (the selected kinds' slices (N, A, S, D), the volumes' labels (N, L)).
        features: split -> kind -> that kind's slices (N, A, S, D_k), pooled with the same weights.
        seed: the attention's initialisation and the order of its batches.

    Returns:
        (split -> kind -> pooled rows (N, A x D_k), what was chosen: weight decay, val loss, time).
    """
    started = time.perf_counter()
    mean, scale = fit_scaler(bags["train"][0].reshape(-1, bags["train"][0].shape[-1]))
    inputs = {s: standardize(x, mean, scale) for s, (x, _) in bags.items()}
    targets = {s: _targets(y, task) for s, (_, y) in bags.items()}
    n_out = targets["train"].shape[1] if task == MULTI_LABEL else n_classes
    fits = []
    for decay in WEIGHT_DECAYS:
        model = _train(inputs["train"], targets["train"], task, n_out, decay, seed)
        with torch.no_grad():
            fits.append((float(loss(model(inputs["val"]), targets["val"], task)), decay, model))
    val_loss, decay, model = min(fits, key=lambda fit: fit[0])
    pooled = {}
    with torch.no_grad():
        for split, kinds in features.items():
            weights = model.weights(inputs[split]).numpy()[..., None]  # (N, A, S, 1)
            pooled[split] = {
                k: (weights * f.astype(np.float32)).sum(axis=2).reshape(len(f), -1)
                for k, f in kinds.items()
            }
    chosen = {
        "attention_weight_decay": decay,
        "attention_val_loss": round(val_loss, 6),
        "attention_s": round(time.perf_counter() - started, 3),
    }
    return pooled, chosen


def _train(x, y, task: str, n_out: int, decay: float, seed: int) -> GatedAttention:
    """AdamW on batches of volumes for `EPOCHS` epochs, from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GatedAttention(x.shape[-1], x.shape[1], n_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=decay)
    for _ in range(EPOCHS):
        for rows in torch.randperm(len(x), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss(model(x[rows]), y[rows], task).backward()
            optimizer.step()
    return model.eval()


def _targets(y: np.ndarray, task: str) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.float32 if task == MULTI_LABEL else torch.long)
