"""The two programs, assembled in one place: the installed `probe` and `finetune` and `python -m`.

probe and finetune know nothing of the suite (it sits above them); this module, above all of them,
hands its parts down by name: `probe` is probe's commands and `probe suite`; `finetune` is
finetune's commands with LP-FT's head initializer (`suite.lpft.probe_head`), which
`finetune run --init-head probe` needs.
"""

from __future__ import annotations

from finetune.cli import program as finetune_program
from medprobe.cli.common import add_verbosity, extended
from probe.cli import main as probe_commands
from suite.cli import suite_command


def _probe_head(*args, **kwargs) -> dict:
    from suite.lpft import probe_head  # torch, timm, h5py: only when a run asks for it

    return probe_head(*args, **kwargs)


probe = add_verbosity(extended(probe_commands, suite_command))
finetune = finetune_program(head_initializer=_probe_head)
