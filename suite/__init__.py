"""Recipes (datasets x sizes x probes x fine-tunes, checked up front, resumable) and the programs.

The layer above `probe` and `finetune`: it composes both (neither imports it nor each other).
- `recipe`, `values`: a recipe parsed and checked against the option dataclasses below;
- `plan`, `runner`: what a recipe will cost, and its runs, then the report; `units`: the runs as
  independent units, N at once (`--jobs`), one GPU each; `slurm`: the units as Slurm jobs
  through submitit, `--status`;
- `lpft`: LP-FT's probe head (probe and fine-tune composed);
- `cli`: `probe suite`; `programs`: the installed `probe` and `finetune`, assembled in one place.
"""
