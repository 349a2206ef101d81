"""The end of a fine-tune run: the best epoch scored on val and test once, its record and files.

The record carries the chosen hyper-parameters (`hparams`), timings and test predictions; the run's
folder gets the best weights, the epoch history and the training curves, and loses its checkpoint
(nothing is left to resume) unless asked to keep it.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from finetune.checkpoint import TrainState, save_weights
from finetune.setup import Run
from medprobe.atomic import write_atomic
from medprobe.backbones.factory import model_cost
from medprobe.device import barrier, device_name, peak_memory_mb
from medprobe.metrics import collapse_of, evaluate, named_class
from medprobe.outputs import probabilities
from medprobe.report.draw import save_png, training_curves
from medprobe.results import RunResult
from medprobe.tracking import split_scalars


def finish(run: Run, state: TrainState, *, seconds: float) -> RunResult:
    """Score val and test once with the best epoch's weights; write the record and run files."""
    model, task = run.steps.model, run.dspec.task
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    scores = {
        s: probabilities(run.steps.predict(run.data[s][0], rank=run.rank, world=run.world), task)
        for s in ("val", "test")
    }
    metrics = {
        "val": evaluate(run.truth["val"], scores["val"], task=task),
        "test": evaluate(
            run.truth["test"], scores["test"], task=task, bootstrap=1000, seed=run.cfg.seed
        ),
    }
    collapse = collapse_of({s: (run.truth[s], scores[s], metrics[s]) for s in metrics}, task=task)
    result = RunResult(
        dataset=run.dspec.flag,
        size=run.cfg.size,
        model=run.spec.name,
        method=run.cfg.method,
        seed=run.cfg.seed,
        metrics=metrics,
        config=run.config,
        task=task,
        class_names=list(run.dspec.labels),
        hparams=_hparams(run, state),
        timings=_timings(state.history, seconds) | _compute(run),
        predictions={
            "test_score": scores["test"].astype(np.float32),
            "test_true": run.truth["test"],
        },
        collapsed=collapse is not None,
        collapse=collapse and named_class(collapse, run.dspec.labels),
    )
    assert result.run_name == run.name, (
        "the record's name is the one resume and skip_existing look for"
    )
    if run.rank == 0:
        _write_files(run, state, result)
    test = split_scalars(result.metrics["test"], "test")
    run.tracker.scalars(test, state.epoch)
    run.tracker.finish({k: v for k, v in run.config.items() if k != "weights"}, test)
    barrier()
    return result


def _hparams(run: Run, state: TrainState) -> dict:
    return asdict(run.cfg) | {
        "img_size": run.steps.pcfg.input_size,
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.history),
        "trainable_params": run.n_trainable,
        "precision": run.steps.precision,
        "flips": run.steps.flips,
        "micro_batch": run.steps.micro_batch,
        "world_size": run.world,
        "selected_on": run.select,
        "selection_note": run.selection_note,
        "defaults": run.cfg.defaults,
        "head_init": run.head_init,
        "weights": run.config["weights"],
    }


def _compute(run: Run) -> dict:
    """The network's size and cost per image, the run's peak memory and its device."""
    cost = model_cost(run.steps.model, run.steps.pcfg.input_size, volumes=run.spec.volumetric)
    device = run.steps.device
    return cost | {"peak_memory_mb": peak_memory_mb(device), "device": device_name(device)}


def _timings(history: list[dict], seconds: float) -> dict:
    """Wall time, mean epoch time, and images trained over the wall time of the training phases."""
    train_seconds = sum(h["train_seconds"] for h in history)
    return {
        "train_s": round(seconds, 3),
        "epoch_s": float(np.mean([h["seconds"] for h in history])) if history else None,
        "train_images_per_s": sum(h["train_images"] for h in history) / train_seconds
        if train_seconds > 0
        else None,
    }


def _write_files(run: Run, state: TrainState, result: RunResult) -> None:
    """Weights, history, curves and the record.

    Then the checkpoint goes (nothing left to resume).
    """
    save_weights(run.steps.model.state_dict(), run.dir / "weights.safetensors")
    write_atomic(run.dir / "history.json", json.dumps(state.history, indent=2))
    save_png(
        training_curves(state.history, state.best_epoch, title=run.name), run.dir / "curves.png"
    )
    result.save(run.cfg.out)
    if not run.cfg.keep_checkpoint:
        (run.dir / "checkpoint.pt").unlink(missing_ok=True)
