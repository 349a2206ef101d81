"""Head-fitting time: the full logreg / linear / knn sweeps, and against scikit-learn.

    python -m benchmarks.heads --n-train 12000 --dim 768 --classes 8
    python -m benchmarks.heads --vs-sklearn [--busy] [--threads auto,1,2]
    python -m benchmarks.heads --by-device [--devices cpu,cuda] [--sizes 12000x768]

Synthetic float16 features (what the cache stores) with class structure; val and test at
BloodMNIST's proportions. The first form prints one markdown row per head. `--vs-sklearn` times
medprobe's logreg sweep against scikit-learn's LogisticRegression (lbfgs, the same 34-point C grid,
warm-started along it, the same standardization, C chosen on the val log-loss) and the kNN sweep
(k = 1..100) against scikit-learn's brute-force cosine neighbours with the same votes, at five
problem sizes, in one process; `--busy` runs them while a second process keeps every core busy
(as on a shared node). A ratio is scikit-learn's seconds over medprobe's: >= 1 means medprobe is
as fast or faster. `--by-device` times each head's sweep on each device, logreg both ways (one C
after another, warm-started: `LogRegHead.sweep`; every C at once: `sweep_batched`), with the
threads medprobe ships.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import time
import warnings
from datetime import date

import numpy as np

from benchmarks.common import machine
from medprobe.device import torch_threads
from probe.fit import fit_probe, make_scorer
from probe.heads import (
    HEADS,
    KNN_MAX_K,
    KNN_TEMPERATURE,
    LOGREG_CS,
    KNNHead,
    LogRegHead,
    head_threads,
)

SIZES = {  # name -> (train rows, dimension, classes)
    "500x768 binary": (500, 768, 2),
    "500x768 8-class": (500, 768, 8),
    "5000x768": (5000, 768, 8),
    "12000x768": (12000, 768, 8),
    "50000x768": (50000, 768, 8),
    "12000x3072": (12000, 3072, 8),
}
# BLAS on every core
BUSY = "import numpy as np\na = np.ones((1500, 1500))\nwhile True:\n    a @ a\n"


def features(
    n: int, dim: int, n_classes: int, seed: int, separation: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes.

    `separation` scales the class means (0.05 gives ~0.8 accuracy, like a middling backbone, so
    every grid point has real work to do).
    """
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, (n, 1))
    return (separation * centers[y[:, 0]] + rng.normal(size=(n, dim))).astype(np.float16), y


def splits(n: int, dim: int, n_classes: int, separation: float) -> tuple:
    shape = dict(dim=dim, n_classes=n_classes, separation=separation)
    return (
        features(n, seed=0, **shape),
        features(max(n // 7, 50), seed=1, **shape),
        features(max(n * 2 // 7, 50), seed=2, **shape),
    )


def medprobe_sweep(head: type, train, val, task: str, n_classes: int, threads: int) -> float:
    """Seconds of a medprobe head's whole sweep (`LogRegHead`, `KNNHead`) on the val log-loss."""
    score = make_scorer(val[1], task=task, metric="log_loss")
    with torch_threads(threads):
        return _seconds(
            lambda: head.sweep(train[0], train[1], val[0], score, task=task, n_classes=n_classes)
        )


def sklearn_logreg(train, val, n_classes: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    def sweep():
        scaler = StandardScaler().fit(train[0].astype(np.float32))
        x, x_val = (
            scaler.transform(train[0].astype(np.float32)),
            scaler.transform(val[0].astype(np.float32)),
        )
        model, losses = LogisticRegression(max_iter=100, warm_start=True), []
        for C in LOGREG_CS:
            model.C = C
            model.fit(x, train[1][:, 0])
            losses.append(
                log_loss(val[1][:, 0], model.predict_proba(x_val), labels=range(n_classes))
            )
        return LOGREG_CS[int(np.argmin(losses))]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs stopping at max_iter on weakly regularized points
        return _seconds(sweep)


def sklearn_knn(train, val, n_classes: int) -> float:
    from sklearn.neighbors import NearestNeighbors

    def sweep():
        search = NearestNeighbors(n_neighbors=KNN_MAX_K, metric="cosine", algorithm="brute").fit(
            train[0]
        )
        distance, index = search.kneighbors(val[0].astype(np.float32))
        weights = np.exp(((1 - distance) - (1 - distance[:, :1])) / KNN_TEMPERATURE)
        votes = np.cumsum(weights[..., None] * np.eye(n_classes)[train[1][index, 0]], axis=1)
        return votes / np.cumsum(weights, axis=1)[..., None]

    return _seconds(sweep)


def compare(sizes: list[str], threads: list[str], separation: float, busy: bool) -> list[str]:
    rows = []
    for name in sizes:
        n, dim, n_classes = SIZES[name]
        train, val, _ = splits(n, dim, n_classes, separation)
        task = "binary-class" if n_classes == 2 else "multi-class"
        for head, ours, theirs in (
            ("logreg", LogRegHead, sklearn_logreg),
            ("knn", KNNHead, sklearn_knn),
        ):
            reference = theirs(train, val, n_classes)
            for setting in threads:
                count = head_threads(n, dim) if setting == "auto" else int(setting)
                seconds = medprobe_sweep(ours, train, val, task, n_classes, count)
                rows.append(
                    f"| {date.today()} | {machine()} | {'busy' if busy else 'idle'} | {name} | "
                    f"{head} | {setting} ({count}) | {seconds:.3g} | {reference:.3g} | "
                    f"{reference / seconds:.2f}x |"
                )
                print(rows[-1], flush=True)
    return rows


def by_device(sizes: list[str], devices: list[str], separation: float) -> list[str]:
    """One row per (size, head, path, device): the sweep's median seconds and its choice."""
    rows = []
    for name in sizes:
        n, dim, n_classes = SIZES[name]
        train, val, _ = splits(n, dim, n_classes, separation)
        task = "binary-class" if n_classes == 2 else "multi-class"
        score = make_scorer(val[1], task=task, metric="log_loss")
        for head, path, device in _sweeps(devices):
            sweep = functools.partial(
                getattr(HEADS[head], "sweep_batched" if path == "batched" else "sweep"),
                *train,
                val[0],
                score,
                task=task,
                n_classes=n_classes,
                device=device,
            )
            with torch_threads(head_threads(n, dim)):
                chosen = sweep().params  # also warms up: CUDA kernels, caches
                seconds = _seconds(sweep)
            rows.append(
                f"| {date.today()} | {machine()} | {name} | {head} | {path} | {device} | "
                f"{seconds:.3g} | {chosen} |"
            )
            print(rows[-1], flush=True)
    return rows


def _sweeps(devices: list[str]) -> list[tuple[str, str, str]]:
    """(head, path, device) to time: logreg sequential on the CPU, everything else per device.

    Logreg's every-C-at-once path runs on the CPU only when it is the only device (it is there
    2-4x slower than the sequential path, and minutes at the larger sizes).
    """
    runs = [("logreg", "sequential", "cpu")] if "cpu" in devices else []
    runs += [("logreg", "batched", d) for d in devices if d != "cpu" or devices == ["cpu"]]
    return runs + [(head, "-", device) for head in ("linear", "knn") for device in devices]


@contextlib.contextmanager
def _busy_machine(on: bool):
    """A second process keeping every core busy (BLAS matmuls), while the block runs."""
    if not on:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", BUSY])
    time.sleep(1.0)
    try:
        yield
    finally:
        process.kill()
        process.wait()


def _seconds(work, *, at_least: float = 1.0) -> float:
    """The median time of `work`, repeated until `at_least` seconds have passed.

    At least 3 times: a sweep of a few milliseconds is timed many times, not once at the timer's
    resolution.
    """
    times, started = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < at_least:
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
        if times[-1] > at_least:
            break
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--heads", default="logreg,linear,knn")
    parser.add_argument("--separation", type=float, default=0.05)
    parser.add_argument(
        "--vs-sklearn", action="store_true", help="Time logreg and kNN against scikit-learn."
    )
    parser.add_argument("--sizes", default=",".join(SIZES), help="Problem sizes for --vs-sklearn.")
    parser.add_argument(
        "--threads", default="auto", help="Torch threads for --vs-sklearn: auto, or counts."
    )
    parser.add_argument(
        "--busy", action="store_true", help="With a second process keeping the cores busy."
    )
    parser.add_argument(
        "--by-device", action="store_true", help="Time every head's sweep on each --devices."
    )
    parser.add_argument("--devices", default="cpu", help="For --by-device: cpu, cuda or both.")
    args = parser.parse_args()
    if args.by_device:
        by_device(args.sizes.split(","), args.devices.split(","), args.separation)
        print(f"`python -m benchmarks.heads {' '.join(sys.argv[1:])}`")
        return
    if args.vs_sklearn:
        with _busy_machine(args.busy):
            compare(args.sizes.split(","), args.threads.split(","), args.separation, args.busy)
        print(f"`python -m benchmarks.heads {' '.join(sys.argv[1:])}`")
        return
    n = args.n_train
    train, val, test = splits(n, args.dim, args.classes, args.separation)
    command = " ".join(["python -m benchmarks.heads", *sys.argv[1:]])
    for head in args.heads.split(","):
        start = time.perf_counter()
        fit = fit_probe(train, val, test, head=head, task="multi-class", n_classes=args.classes)
        seconds = time.perf_counter() - start
        print(
            f"| {date.today()} | {machine()} | {head} | {n}x{args.dim} fp16, {args.classes} "
            f"classes | {len(fit.val_scores)} | {seconds:.1f} | {fit.params} | "
            f"{fit.test['acc']:.3f} | `{command}` |"
        )


if __name__ == "__main__":
    main()
