"""Training curves of one run: loss and val metrics per epoch, the best epoch marked."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend


def plot_curves(history: list[dict], best_epoch: int, path: str | os.PathLike, *, title: str = "") -> None:
    """Write a two-panel PNG: train/val loss, and val ACC/AUC, with a line at `best_epoch`."""
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    metric_ax.plot(epochs, [h["val_acc"] for h in history], label="val ACC")
    metric_ax.plot(epochs, [h["val_auc"] for h in history], label="val AUC")
    for ax, ylabel in ((loss_ax, "loss"), (metric_ax, "score")):
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
