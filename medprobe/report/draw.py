"""The figures of runs and reports (matplotlib, headless): curves, resolution, label efficiency."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from medprobe.atomic import write_atomic  # noqa: E402


def training_curves(history: list[dict], best_epoch: int, *, title: str = ""):
    """Two panels: train/val loss, and val ACC/AUC per epoch, with a line at `best_epoch`."""
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    metric_ax.plot(epochs, [h["val_acc"] for h in history], label="val ACC")
    metric_ax.plot(epochs, [h["val_auc"] for h in history], label="val AUC")
    for ax, ylabel in ((loss_ax, "loss"), (metric_ax, "score")):
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5 on a short run
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def lines(
    series: dict[str, list[tuple[float, float, float | None]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
):
    """One line per name through (x, mean, std) points, with a ±std band (none for std None)."""
    fig, ax = plt.subplots(figsize=(6.4, 4), constrained_layout=True)
    for name, points in sorted(series.items()):
        x, mean, std = (np.array(v, dtype=float) for v in zip(*sorted(points), strict=True))
        ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    return fig


def forest(panels: dict[str, list[tuple[str, float, float, float]]], *, title: str):
    """One panel per metric.

    A point and its interval per row (label, mean, lo, hi), rows top-down.
    """
    n_rows = max(len(points) for points in panels.values())
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(3.2 + 2.6 * len(panels), 0.9 + 0.32 * n_rows),
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )
    for ax, (metric, points) in zip(axes[0], panels.items(), strict=True):
        labels, means, lows, highs = zip(*points, strict=True)
        y = np.arange(len(points))[::-1]
        mean, lo, hi = (np.asarray(v, dtype=float) for v in (means, lows, highs))
        spread = np.clip([mean - lo, hi - mean], 0, None)  # a percentile interval may miss the mean
        ax.errorbar(mean, y, xerr=spread, fmt="o", capsize=3)
        ax.set(xlabel=metric, yticks=y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return fig


def confusion(matrix: list[list[int]], labels: list[str], *, title: str):
    """A confusion matrix heat map with counts in the cells (true on rows, predicted on columns)."""
    counts = np.asarray(matrix)
    fig, ax = plt.subplots(
        figsize=(1.5 + 0.55 * len(counts), 1.2 + 0.5 * len(counts)), constrained_layout=True
    )
    ax.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ticks = range(len(counts))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=8, wrap=True)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticklabels(labels, fontsize=7)
    return fig


PNG_DPI = 200
VECTOR_FORMATS = ("pdf", "svg")


def save_png(fig, path: str | os.PathLike | None = None) -> bytes:
    """Render a figure to PNG bytes (and to `path` if given), then free it."""
    data = _render(fig, "png")
    plt.close(fig)
    if path is not None:
        write_atomic(path, data)
    return data


def save_figure(fig, path: str | os.PathLike) -> bytes:
    """Write a figure as `path` (PNG) and beside it as PDF and SVG; returns the PNG's bytes."""
    path = Path(path)
    for fmt in VECTOR_FORMATS:
        write_atomic(path.with_suffix(f".{fmt}"), _render(fig, fmt))
    return save_png(fig, path)


def _render(fig, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=PNG_DPI if fmt == "png" else None)
    return buffer.getvalue()
