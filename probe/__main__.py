"""`python -m probe` (what `torchrun ... -m probe extract` runs)."""

from probe.cli import main

main()
