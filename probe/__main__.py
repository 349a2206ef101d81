"""`python -m probe` (what `torchrun ... -m probe extract` runs).

The `probe` command, suite included.
"""

from suite.programs import probe

probe()
