"""What picks a probe's hyper-parameters or a fine-tune's best epoch on val, and which way wins."""

from __future__ import annotations

import numpy as np

from medprobe.data.validate import MULTI_LABEL

# --select name -> `evaluate` key
SELECT_METRICS = {"acc": "acc", "auc": "auc", "f1": "macro_f1", "bacc": "balanced_acc"}
LOWER_IS_BETTER = ("log_loss",)


def selection_metric(
    y_val: np.ndarray, *, task: str, n_classes: int, select: str
) -> tuple[str, str | None]:
    """The val metric that picks hyper-parameters or the best epoch, and why it had to change.

    AUC is undefined when a class (or, for multi-label tasks, a label's positives or negatives) is
    absent from val; selecting on NaN would pick arbitrarily, so such a split falls back to ACC.

    Args:
        y_val: (n,) / (n, 1) classes, or (n, L) 0/1 for multi-label tasks.
        select: "loss" (the log-loss, lower wins) or a key of `SELECT_METRICS`.

    Returns:
        (the `evaluate` key to select on, a note on the fallback or None).
    """
    if select == "loss":
        return "log_loss", None
    if select not in SELECT_METRICS:
        raise ValueError(
            f"unknown selection metric {select!r}; choose loss or one of "
            f"{', '.join(SELECT_METRICS)}"
        )
    metric = SELECT_METRICS[select]
    if metric != "auc":
        return metric, None
    y_val = np.asarray(y_val).reshape(len(y_val), -1)
    if task == MULTI_LABEL:
        absent = [c for c in range(y_val.shape[1]) if len(np.unique(y_val[:, c])) < 2]
        what = "label(s) " + ", ".join(map(str, absent)) + " with one value only"
    else:
        absent = sorted(set(range(n_classes)) - set(np.unique(y_val).tolist()))
        what = "class " + ", ".join(map(str, absent)) + " absent"
    if not absent:
        return metric, None
    return "acc", f"AUC is undefined on val ({what}); selected on ACC instead"
