"""A recipe on a Slurm cluster: one job per unit, then one for the report, through submitit.

Jobs share what units share on one machine, files (cache entries under their lock, records and
checkpoints replaced atomically), so they need a filesystem every node sees, with working
`flock` (`fcntl`) locks: NFSv4, Lustre and GPFS have them; NFSv3 without `lockd` does not, and
there two jobs could extract one entry at once, so run the extractions first (`--jobs 1`
locally) or keep the cache on a disk with locks.

A job killed by Slurm (time limit, preemption, `scancel`) leaves no half-written file: the next
submit runs its unit again, which resumes a partial entry or a fine-tune's checkpoint. The jobs
of a submit are written to `{out}/slurm/jobs.json`, which `--status` reads.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from medprobe.errors import UserError
from suite.recipe import Recipe
from suite.units import Unit, units
from suite.values import SlurmOptions

SLURM_STATES = {  # sacct's words -> ours
    "PENDING": "queued",
    "RUNNING": "running",
    "COMPLETED": "done",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "TIMEOUT": "failed",
    "OUT_OF_MEMORY": "failed",
    "NODE_FAIL": "failed",
    "PREEMPTED": "queued",
}


def submit(recipe: Recipe, options: SlurmOptions) -> dict[str, str]:
    """Submit the units still to do as one job array, then the report after it.

    Returns:
        unit name -> job id, "report" -> the report's job.
    """
    from medprobe.report import write_report
    from suite.runner import run_unit

    for folder in (recipe.cache_root, recipe.out):
        check_locks(folder)
    executor = _executor(recipe, options)
    todo = [unit for unit in units(recipe) if not unit_done(recipe, unit)]
    ids: dict[str, str] = {}
    after = {}
    if todo:
        with executor.batch():  # one job array; its tasks run side by side
            jobs = [executor.submit(run_unit, recipe, unit) for unit in todo]
        ids = {unit.name(recipe): job.job_id for unit, job in zip(todo, jobs, strict=True)}
        after = {"dependency": f"afterany:{jobs[0].job_id.split('_')[0]}"}  # the whole array
    executor.update_parameters(slurm_additional_parameters=options.extra | after)
    ids["report"] = executor.submit(write_report, recipe.out, recipe.report).job_id
    _save(recipe, ids)
    return ids


def plan_lines(recipe: Recipe, options: SlurmOptions) -> list[str]:
    """What `submit` would submit: the array's jobs, the report's, and what each asks for."""
    todo = [unit for unit in units(recipe) if not unit_done(recipe, unit)]
    asks = [f"partition {options.partition or '(default)'}", f"{options.time_min} min"]
    asks += [f"{options.gpus_per_job} GPU(s)"] if options.gpus_per_job else []
    asks += [f"{options.mem_gb} GB"] if options.mem_gb else []
    asks += [f"{k}={v}" for k, v in options.extra.items()]
    head = (
        f"slurm: {len(todo)} job(s) in one array ({options.array_parallelism} at once at most), "
        f"then 1 for the report; each job: {', '.join(asks)}"
    )
    return [head, *(f"  job  {unit.name(recipe)}" for unit in todo), "  job  report"]


def check_locks(folder: str | os.PathLike | None) -> None:
    """Refuse a folder whose filesystem has no working `flock`: jobs could write one file twice."""
    import fcntl
    import tempfile

    from medprobe.data.files import cache_home

    root = Path(folder) if folder is not None else cache_home(None)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=root, prefix=".lock-check-") as probe:
        try:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
        except OSError as e:
            raise UserError(
                f"{root} has no working file locks ({e.strerror}); jobs on several nodes could "
                "write one cache entry at once: put --cache-root and --out on a filesystem with "
                "flock (NFSv4, Lustre, GPFS), or run the suite on one machine (--jobs N)"
            ) from e


def status(recipe: Recipe) -> list[dict]:
    """Per unit: its job and done / running / queued / failed / cancelled / not submitted.

    A failed or cancelled job's row has its log's last line; a fine-tune whose record exists is
    done whatever its last job says.
    """
    jobs = _load(recipe)
    states = _sacct(list(jobs.values()))
    rows = []
    for unit in [*units(recipe), None]:
        name = unit.name(recipe) if unit else "report"
        job = jobs.get(name)
        state = "not submitted" if job is None else states.get(job) or _ended(recipe, job)
        if unit is not None and unit_done(recipe, unit):
            state = "done"
        last = _last_line(recipe, job, state)
        rows.append({"unit": name, "job": job, "state": state, "last log line": last})
    return rows


def unit_done(recipe: Recipe, unit: Unit) -> bool:
    """Whether a fine-tune unit's record exists.

    A probe unit is always run again: with its entry cached and its records written, it takes
    seconds (both are checked before any work).
    """
    if unit.kind != "finetune":
        return False
    from finetune.train import identify
    from suite.recipe import finetune_config

    options = recipe.finetunes[unit.table]
    assert unit.seed is not None
    cfg = finetune_config(recipe, options, unit.dataset, unit.size, unit.seed)
    try:
        name = identify(cfg, download=False)[3]
    except FileNotFoundError:  # its data is not here yet: the job fetches it
        return False
    return (Path(recipe.out) / f"{name}.json").exists()


def _executor(recipe: Recipe, options: SlurmOptions):
    try:
        import submitit
    except ImportError as e:
        raise UserError(
            "--executor slurm needs submitit: pip install submitit (from a clone: pip install -e "
            "'.[slurm]')"
        ) from e
    executor = submitit.AutoExecutor(folder=Path(recipe.out) / "slurm" / "%j", cluster="slurm")
    executor.update_parameters(
        name=f"medprobe-{Path(recipe.path).stem}",
        timeout_min=options.time_min,
        slurm_partition=options.partition,
        slurm_gpus_per_node=options.gpus_per_job or None,
        slurm_mem=f"{options.mem_gb}G" if options.mem_gb else None,
        slurm_array_parallelism=options.array_parallelism,
        slurm_additional_parameters=dict(options.extra),
    )
    return executor


def _save(recipe: Recipe, ids: dict[str, str]) -> None:
    from medprobe.atomic import write_atomic

    write_atomic(_jobs_file(recipe), json.dumps(ids, indent=2))


def _load(recipe: Recipe) -> dict[str, str]:
    path = _jobs_file(recipe)
    return json.loads(path.read_text()) if path.exists() else {}


def _jobs_file(recipe: Recipe) -> Path:
    return Path(recipe.out) / "slurm" / "jobs.json"


def _sacct(job_ids: list[str]) -> dict[str, str]:
    """Job id -> our state word, from `sacct` (`squeue` as a fallback without accounting)."""
    if not job_ids:
        return {}
    found: dict[str, str] = {}
    for command in (
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
        ["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)],
    ):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            job, _, state = line.partition("|")
            found.setdefault(job.strip(), SLURM_STATES.get(state.split()[0], state.lower()))
    return found


def _ended(recipe: Recipe, job: str) -> str:
    """The state of a job the scheduler no longer lists, from what submitit left in its folder.

    A result file says done or failed; without one the job was cancelled or killed (its log's
    last line says by what).
    """
    import pickle

    results = sorted((Path(recipe.out) / "slurm" / job).glob("*_result.pkl"))
    if not results:
        return "cancelled"
    with open(results[-1], "rb") as f:
        outcome, _ = pickle.load(f)
    return "done" if outcome == "success" else "failed"


def _last_line(recipe: Recipe, job: str | None, state: str) -> str:
    if job is None or state not in ("failed", "cancelled"):
        return ""
    logs = sorted((Path(recipe.out) / "slurm" / job).glob("*.err"))
    lines = logs[-1].read_text(errors="replace").strip().splitlines() if logs else []
    return lines[-1][:200] if lines else ""
