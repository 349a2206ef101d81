"""`python -m probe` (what `torchrun ... -m probe extract` runs): the `probe` command, suite included."""

from suite.cli import main

main()
