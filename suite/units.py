"""A recipe as independent units of work, and N of them at once on one machine (`--jobs N`).

A unit is one [[probe]] table on one dataset and size (its extraction, then its fits) or one
fine-tune (a table, a dataset, a size, a seed). Units share nothing but files, and every file
they write is safe to share: a cache entry is written under its lock (a second unit that needs it
waits, then reads it), records and checkpoints are replaced atomically. So units can run in any
order, side by side; each runs in a process of its own with its log in `{out}/logs/`, pinned to
one GPU when there are GPUs (`CUDA_VISIBLE_DEVICES`, round robin over the jobs) and given an equal
share of the CPU threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from medprobe.errors import UserError
from suite.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Unit:
    """One probe table on one dataset and size, or one fine-tune run."""

    kind: str  # "probe" or "finetune"
    table: int  # index of its [[probe]] or [[finetune]] table
    dataset: str
    size: int
    seed: int | None = None  # fine-tunes only

    def name(self, recipe: Recipe) -> str:
        """`probe-vit_tiny-bloodmnist_28`, `finetune-resnet18-bloodmnist_28-seed0`: its log's."""
        tables = recipe.probes if self.kind == "probe" else recipe.finetunes
        model = tables[self.table].get("backbone") or tables[self.table].get("model")
        seed = "" if self.seed is None else f"-seed{self.seed}"
        name = f"{self.kind}-{model}-{Path(self.dataset).stem}_{self.size}{seed}"
        return name.replace(":", "-").replace("/", "-")


def units(recipe: Recipe) -> list[Unit]:
    """Every unit of the recipe, in the order a serial run takes them."""
    found = []
    for dataset in recipe.datasets:
        for size in recipe.sizes:
            found += [
                Unit(kind="probe", table=i, dataset=dataset, size=size)
                for i in range(len(recipe.probes))
            ]
            found += [
                Unit(kind="finetune", table=i, dataset=dataset, size=size, seed=seed)
                for i in range(len(recipe.finetunes))
                for seed in recipe.seeds
            ]
    return found


def run_units(recipe: Recipe, jobs: int) -> None:
    """Run every unit, `jobs` at a time in processes of their own; refuse once, naming the logs."""
    from suite.runner import gpu_ids

    logs = Path(recipe.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo = units(recipe)
    context = multiprocessing.get_context("spawn")  # no CUDA or thread state inherited
    counter = context.Value("i", 0)
    failed = []
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(counter, gpu_ids(), jobs),
    ) as pool:
        futures = {
            pool.submit(_run_logged, recipe, unit, logs / f"{unit.name(recipe)}.log"): unit
            for unit in todo
        }
        for future in as_completed(futures):
            name = futures[future].name(recipe)
            error = future.exception()
            log.info("%s %s (log: %s)", name, "failed" if error else "done", logs / f"{name}.log")
            if error is not None:
                failed.append(f"{name}: {error}")
    if failed:
        raise UserError(
            f"{len(failed)} of {len(todo)} units failed ({'; '.join(failed)}); their logs are in "
            f"{logs}; run the suite again to redo only what is missing"
        )


def worker_environment(index: int, gpus: list[str], jobs: int, cpus: int) -> dict[str, str]:
    """The environment of the `index`-th worker: its GPU (round robin) and its share of threads."""
    threads = str(max(1, cpus // jobs))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


def _start_worker(counter, gpus: list[str], jobs: int) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ.update(worker_environment(index, gpus, jobs, os.cpu_count() or 1))
    import torch  # threads are set per process, before any work

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _run_logged(recipe: Recipe, unit: Unit, log_path: Path) -> None:
    from suite.runner import run_unit

    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        run_unit(recipe, unit)
    except Exception:
        logging.getLogger(__name__).exception("%s failed", unit.name(recipe))
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
