"""`python -m finetune` (what `torchrun ... -m finetune run` runs).

The `finetune` program, LP-FT included.
"""

from suite.programs import finetune

finetune()
