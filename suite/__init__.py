"""Recipes: datasets x sizes x probes x fine-tunes, checked up front, run in one process, resumable.

The layer above `probe` and `finetune`: it composes both (neither imports it nor each other).
"""
