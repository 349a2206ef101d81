"""Linear probes on cached features: heads, model selection on val, the `probe` CLI."""
