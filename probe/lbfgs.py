"""The logreg head's whole C grid fitted at once: G independent L-BFGS problems as batched tensors.

`LogRegHead.sweep` fits its grid one C after another, warm-starting each fit, which is the fastest
path on a few CPU cores. On a GPU that path is hundreds of small kernels and host syncs per C;
here every grid point is one row of (G, ...) tensors, so an iteration is two batched matmuls for
all of them. Each problem keeps its own L-BFGS history, step and stopping test (scikit-learn's: no
gradient entry above `tol`), so the minimum each reaches is the one a separate fit would reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medprobe.data.validate import MULTI_LABEL

HISTORY = 20  # curvature pairs kept, as the sequential sweep's torch L-BFGS
ARMIJO = 1e-4  # sufficient decrease of the backtracking line search
HALVINGS = 30  # line-search tries before a problem stops where it is


@dataclass
class GridFit:
    """Per grid point: the model on standardized features and how its fit ended."""

    coef: np.ndarray  # (G, n_out, D)
    intercept: np.ndarray  # (G, n_out)
    iterations: np.ndarray  # (G,) L-BFGS iterations each problem ran
    converged: np.ndarray  # (G,) whether it met the gradient tolerance


class _Objective:
    """Mean loss + ||W||^2 / (2 C n) of every grid point, with its gradient (no autograd)."""

    def __init__(self, x: torch.Tensor, targets: torch.Tensor, Cs, task: str, n_out: int):
        self.x = torch.cat([x, torch.ones(len(x), 1, device=x.device)], dim=1)  # bias column
        self.softmax = task != MULTI_LABEL and n_out > 1
        if self.softmax:
            self.onehot = F.one_hot(targets.reshape(-1), n_out).to(x.dtype)
        else:  # one sigmoid per output: a binary task's logit of class 1, or each label
            self.onehot = targets.reshape(len(x), -1).to(x.dtype)
        penalty = 1.0 / (2.0 * torch.as_tensor(Cs, dtype=x.dtype, device=x.device) * len(x))
        self.penalty = penalty[:, None, None]
        self.shape = (len(Cs), n_out, self.x.shape[1])

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (G,) and its gradient (G, P) at the flat parameters theta (G, P)."""
        w = theta.view(self.shape)
        z = torch.einsum("nd,gkd->gnk", self.x, w)
        if self.softmax:
            loss = (torch.logsumexp(z, -1) - (z * self.onehot).sum(-1)).mean(1)
            residual = torch.softmax(z, -1) - self.onehot
        else:
            loss = (F.softplus(z) - z * self.onehot).sum(-1).mean(1)
            residual = torch.sigmoid(z) - self.onehot
        weights = w[..., :-1]
        loss = loss + (self.penalty[..., 0] * weights.pow(2).sum(-1)).sum(-1)
        grad = torch.einsum("gnk,nd->gkd", residual, self.x) / len(self.x)
        grad[..., :-1] += 2 * self.penalty * weights
        return loss, grad.reshape(len(theta), -1)


def fit_grid(
    x: torch.Tensor,
    targets: torch.Tensor,
    Cs,
    *,
    task: str,
    n_out: int,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> GridFit:
    """L-BFGS on every C at once, from zero, on x's device.

    Args:
        x: (n, D) standardized features.
        targets: (n,) classes, or (n, L) multi-label 0/1 (n_out = L), or (n,) 0/1 with n_out = 1.
        Cs: the G inverse regularization strengths (scikit-learn's C).
        max_iter: iterations per problem; from zero, a weakly regularized C needs more than
            the sequential sweep's 100 warm-started ones.
        tol: a problem stops when no gradient entry exceeds it.
    """
    objective = _Objective(x, targets.to(x.device), Cs, task, n_out)
    G, P = len(Cs), int(np.prod(objective.shape[1:]))
    theta = torch.zeros(G, P, device=x.device, dtype=x.dtype)
    state = _History(G, P, x.device, x.dtype)
    loss, grad = objective(theta)
    active = grad.abs().amax(1) > tol
    iterations = torch.zeros(G, dtype=torch.long, device=x.device)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        direction = torch.where(active[:, None], -state.apply(grad), 0.0)
        step = torch.where(state.empty, (1.0 / grad.abs().sum(1)).clamp(max=1.0), 1.0)
        new_theta, new_loss, new_grad, moved = _line_search(
            objective, theta, loss, grad, direction, step, active
        )
        state.push(new_theta - theta, new_grad - grad, moved)
        changed = (loss - new_loss).abs() > 1e-9
        theta, loss, grad = new_theta, new_loss, new_grad
        iterations += active.long()
        active &= moved & changed & (grad.abs().amax(1) > tol)
    w = theta.view(objective.shape).cpu().numpy()
    return GridFit(
        coef=w[..., :-1].copy(),
        intercept=w[..., -1].copy(),
        iterations=iterations.cpu().numpy(),
        converged=(grad.abs().amax(1) <= tol).cpu().numpy(),
    )


def _line_search(objective, theta, loss, grad, direction, step, active):
    """Backtracking to Armijo's sufficient decrease, each problem with its own step.

    Returns the new (theta, loss, grad) and which problems moved (inactive ones stay).
    """
    slope = (grad * direction).sum(1)
    searching = active & (slope < 0)
    new_theta, new_loss, new_grad = theta, loss, grad
    for _ in range(HALVINGS):
        trial = theta + step[:, None] * direction
        trial_loss, trial_grad = objective(trial)
        accepted = searching & (trial_loss <= loss + ARMIJO * step * slope)
        new_theta = torch.where(accepted[:, None], trial, new_theta)
        new_loss = torch.where(accepted, trial_loss, new_loss)
        new_grad = torch.where(accepted[:, None], trial_grad, new_grad)
        searching &= ~accepted
        if not bool(searching.any()):
            break
        step = torch.where(searching, step / 2, step)
    moved = active & (slope < 0) & ~searching
    return new_theta, new_loss, new_grad, moved


class _History:
    """Each problem's last HISTORY curvature pairs, in one ring shared by all (rho 0: no pair)."""

    def __init__(self, G: int, P: int, device, dtype):
        self.s = torch.zeros(HISTORY, G, P, device=device, dtype=dtype)
        self.y = torch.zeros_like(self.s)
        self.rho = torch.zeros(HISTORY, G, device=device, dtype=dtype)
        self.gamma = torch.ones(G, device=device, dtype=dtype)
        self.empty = torch.ones(G, dtype=torch.bool, device=device)
        self.newest = -1

    def push(self, s: torch.Tensor, y: torch.Tensor, moved: torch.Tensor) -> None:
        """Keep (s, y) where the problem moved and the curvature is positive."""
        sy = (s * y).sum(1)
        keep = moved & (sy > 1e-10)
        self.newest = (self.newest + 1) % HISTORY
        self.s[self.newest], self.y[self.newest] = s, y
        self.rho[self.newest] = torch.where(keep, 1.0 / sy.clamp(min=1e-10), 0.0)
        self.gamma = torch.where(keep, sy / (y * y).sum(1).clamp(min=1e-30), self.gamma)
        self.empty &= ~keep

    def apply(self, grad: torch.Tensor) -> torch.Tensor:
        """The two-loop recursion: the inverse-Hessian estimate times grad, per problem."""
        order = [(self.newest - i) % HISTORY for i in range(HISTORY)] if self.newest >= 0 else []
        q, alphas = grad.clone(), []
        for j in order:
            alpha = self.rho[j] * (self.s[j] * q).sum(1)
            q -= alpha[:, None] * self.y[j]
            alphas.append(alpha)
        r = self.gamma[:, None] * q
        for j, alpha in zip(reversed(order), reversed(alphas), strict=True):
            beta = self.rho[j] * (self.y[j] * r).sum(1)
            r += self.s[j] * (alpha - beta)[:, None]
        return r
