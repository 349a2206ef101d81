"""Training curves of one run, drawn by the shared figure code in `medprobe.figures`."""

from __future__ import annotations

import os

from medprobe.figures import save_png, training_curves


def plot_curves(history: list[dict], best_epoch: int, path: str | os.PathLike, *, title: str = "") -> None:
    """Write loss and val ACC/AUC per epoch, with the best epoch marked, to a PNG."""
    save_png(training_curves(history, best_epoch, title=title), path)
