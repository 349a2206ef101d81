"""One validation step for every dataset split, official or a user's own npz.

Also the task types the rules are written for. Light: no torch, no medmnist; every layer can import
it.

Images must be uint8 (N, H, W) or (N, H, W, 1|3) with one label row each; labels must be
integral, finite and within the task's range and shape. Each error names the file, the split and
the first offending row, so a wrong number can never come out of a bad label.
"""

from __future__ import annotations

import logging

import numpy as np

from medprobe.errors import DataError

MULTI_LABEL = "multi-label, binary-class"
TASKS = ("multi-class", "binary-class", MULTI_LABEL, "ordinal-regression")  # MedMNIST's task types

log = logging.getLogger(__name__)

# A user's npz may have any number of classes up to this; a label beyond it is a stray value (a
# class count of 2**40 would be allocated before anything else could fail).
MAX_CLASSES = 10_000
EXAMPLES = 5


def check_image_shape(shape: tuple[int, ...], dtype: np.dtype, *, where: str) -> tuple[int, ...]:
    """Images as an npz header describes them: (N, H, W) or (N, H, W, 1|3) uint8, N > 0.

    Returns (N, H, W, C).
    """
    _check_not_empty(shape, where)
    nhwc = (*shape, 1) if len(shape) == 3 else tuple(shape)
    if dtype == np.uint8 and len(shape) == 4 and shape[1] == shape[2] == shape[3]:
        raise DataError(
            f"{where}: these are volumes {tuple(shape)} (N, D, H, W), not images; give a 3D "
            "dataset's flag (probe datasets lists them), e.g. adrenalmnist3d"
        )
    if dtype != np.uint8 or len(nhwc) != 4 or nhwc[-1] not in (1, 3):
        raise DataError(
            f"{where}: images must be uint8 (N, H, W) or (N, H, W, 1|3); got {dtype} {shape}"
        )
    return nhwc


def check_volume_shape(shape: tuple[int, ...], dtype: np.dtype, *, where: str) -> tuple[int, ...]:
    """Volumes as an npz header describes them: (N, S, S, S) uint8 cubes, N > 0."""
    _check_not_empty(shape, where)
    cube = len(shape) == 4 and shape[1] == shape[2] == shape[3]
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3) and not cube):
        raise DataError(
            f"{where}: these are 2D images {tuple(shape)}, but the dataset is 3D: volumes "
            "(N, D, H, W); give a 2D dataset's flag, or the 3D dataset's own file"
        )
    if dtype != np.uint8 or not cube:
        raise DataError(
            f"{where}: volumes must be uint8 cubes (N, S, S, S); got {dtype} {tuple(shape)}"
        )
    return tuple(shape)


def _check_not_empty(shape: tuple[int, ...], where: str) -> None:
    if len(shape) >= 1 and shape[0] == 0:
        raise DataError(f"{where}: the split is empty; every split needs at least one image")


def check_labels(labels: np.ndarray, *, task: str, n_classes: int | None, where: str) -> np.ndarray:
    """Validate one split's labels against its task; returns them as (N, L) int64.

    Args:
        labels: (N,) or (N, L) numbers as stored.
        task: one of the MedMNIST task names.
        n_classes: classes (labels, for multi-label tasks); None to check integrality only.
        where: "file.npz split" for the messages.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{where}: labels must be numbers, got dtype {labels.dtype}")
    if len(labels) == 0:
        raise DataError(
            f"{where}: the split is empty; every split needs at least one labelled image"
        )
    rows = labels.reshape(len(labels), -1)
    _check_integral(rows, where)
    if task == MULTI_LABEL:
        _check_multi_label(rows, n_classes, where)
    else:
        _check_single_label(rows, task, n_classes, where)
    return rows.astype(np.int64)


def infer_n_classes(labels: dict[str, np.ndarray], *, task: str, where: str) -> int:
    """Classes of a user's npz from its (already checked) labels of every split.

    0..max, each of which must have an image somewhere (a class no image has cannot be learned or
    scored).

    Args:
        labels: split -> (N, L) labels as `check_labels` returns them.
        where: the file's name, for the message.
    """
    if task == MULTI_LABEL:
        return next(iter(labels.values())).shape[1]
    if task == "binary-class":
        return 2
    present = np.unique(np.concatenate([y.reshape(-1) for y in labels.values()]))
    n_classes = int(present[-1]) + 1
    if len(present) < n_classes:
        empty = np.setdiff1d(np.arange(n_classes), present)
        shown = ", ".join(map(str, empty[:EXAMPLES])) + (", ..." if len(empty) > EXAMPLES else "")
        raise DataError(
            f"{where}: the labels run 0..{n_classes - 1} but {len(empty)} of those classes have no "
            f"image in any split ({shown}); number the classes 0..K-1 without gaps"
        )
    return n_classes


def check_trainable(labels: np.ndarray, *, task: str, where: str) -> None:
    """Refuse train labels a classifier cannot learn from: fewer than two classes.

    For multi-label data a label whose column holds one value only is learnable by nothing but a
    constant: warned.

    Args:
        labels: (N, L) train labels (after any subsampling).
        where: what they are, for the message ("breastmnist.npz train", "train after --shots 1").
    """
    if task == MULTI_LABEL:
        constant = [j for j in range(labels.shape[1]) if len(np.unique(labels[:, j])) < 2]
        if constant:
            log.warning(
                "%s: label(s) %s have one value only; their scores will be constant",
                where,
                constant,
            )
        return
    classes, counts = np.unique(labels.reshape(-1), return_counts=True)
    if len(classes) < 2:
        found = f"class {classes[0]} only ({counts[0]} image{'s' if counts[0] != 1 else ''})"
        raise DataError(f"{where}: {found}; a classifier needs at least two classes to learn from")


def _check_integral(rows: np.ndarray, where: str) -> None:
    if rows.dtype.kind != "f":
        return
    bad = ~np.isfinite(rows)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise DataError(
            f"{where}: label row {row} is {rows[row].tolist()}; labels must be finite numbers"
        )
    fractional = rows != np.round(rows)
    if fractional.any():
        row = int(np.argwhere(fractional)[0, 0])
        raise DataError(
            f"{where}: label row {row} is {rows[row].tolist()}; labels must be whole class numbers"
        )


def _check_single_label(rows: np.ndarray, task: str, n_classes: int | None, where: str) -> None:
    if rows.shape[1] != 1:
        raise DataError(
            f"{where}: labels have {rows.shape[1]} columns, but a {task} task has one class per "
            f"row (for one 0/1 column per label use --task '{MULTI_LABEL}')"
        )
    top = n_classes - 1 if n_classes else MAX_CLASSES - 1
    bad = (rows[:, 0] < 0) | (rows[:, 0] > top)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        valid = "0 or 1" if task == "binary-class" else f"0..{top}"
        valid += "" if n_classes else f" (a dataset of your own has at most {MAX_CLASSES} classes)"
        hint = " (more than two classes? use --task multi-class)" if task == "binary-class" else ""
        raise DataError(
            f"{where}: label {rows[row, 0]:g} at row {row} is outside {valid} for a {task} "
            f"task{hint}"
        )


def _check_multi_label(rows: np.ndarray, n_classes: int | None, where: str) -> None:
    if n_classes is not None and rows.shape[1] != n_classes:
        raise DataError(
            f"{where}: labels have {rows.shape[1]} columns; this dataset has {n_classes} labels"
        )
    bad = (rows != 0) & (rows != 1)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where}: label {rows[row, column]:g} at row {row}, column {column}; "
            "multi-label targets must be 0 or 1"
        )
