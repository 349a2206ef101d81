"""Published figures to read a run beside: each with its source, its protocol and its metric.

- `registry`: the shipped tables (`medmnist_plus.csv`, read from the MedMNIST+ authors' repository
  at a named commit) and their sources (`sources.toml`), loaded and checked (`load_references`);
- `match`: the reference closest to a run (`closest`) and how their protocols differ
  (`protocol_note`).
"""

from medprobe.references.match import RunProtocol, closest, protocol_note
from medprobe.references.registry import Reference, load_references, protocol

__all__ = ["Reference", "RunProtocol", "closest", "load_references", "protocol", "protocol_note"]
