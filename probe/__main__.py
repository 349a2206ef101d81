"""`python -m probe` (what `torchrun ... -m probe extract` runs): the `probe` command, suite included."""

from suite.programs import probe

probe()
