"""One metrics layer for every method: pure functions of arrays (numpy in, dicts out), no files.

- `scores`: `evaluate` (MedMNIST's ACC/AUC exactly, macro-F1, balanced accuracy, kappa, log-loss,
  per-class recall, confusion matrix, bootstrap intervals), vectorized over resamples;
- `selection`: what picks hyper-parameters or the best epoch on val (`selection_metric`);
- `judgement`: a run beside another on the same test set (`paired_bootstrap`) or beside chance
  (`collapse`, described by `describe_collapse`).
"""

from medprobe.metrics.judgement import (
    COLLAPSED_SHARE,
    collapse,
    collapse_of,
    describe_collapse,
    named_class,
    paired_bootstrap,
)
from medprobe.metrics.scores import (
    MAX_RESAMPLES,
    SCALARS,
    evaluate,
    log_loss,
    resample_counts,
    sample_log_loss,
    weighted_auc,
)
from medprobe.metrics.selection import LOWER_IS_BETTER, SELECT_METRICS, selection_metric

__all__ = [
    "COLLAPSED_SHARE",
    "LOWER_IS_BETTER",
    "MAX_RESAMPLES",
    "SCALARS",
    "SELECT_METRICS",
    "collapse",
    "collapse_of",
    "describe_collapse",
    "named_class",
    "evaluate",
    "log_loss",
    "paired_bootstrap",
    "resample_counts",
    "sample_log_loss",
    "selection_metric",
    "weighted_auc",
]
