"""`python -m finetune` (what `torchrun ... -m finetune run` runs)."""

from finetune.cli import main

main()
