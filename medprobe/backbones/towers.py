"""ViTs of other libraries behind the surface of a timm ViT, the one medprobe reads and trains.

A transformers encoder (`medprobe.backbones.hf`) or an open_clip image tower
(`medprobe.backbones.openclip`) is wrapped in a `TokenEncoder`: the feature kinds of a timm ViT
(`features`), a classifier that `finetune run` resets and LP-FT loads (`reset_classifier`,
`get_classifier`, `forward_head`), the blocks `--freeze last:K` counts and layer-wise lr decay
groups (`blocks`, `group_matcher`), and the parameters kept from weight decay (`no_weight_decay`).
"""

from __future__ import annotations

from typing import Any

import torch

from medprobe.backbones.registry import LAST_BLOCKS

# Parameters that are embeddings, not weights: kept out of weight decay, as timm keeps pos_embed.
EMBEDDING_WORDS = ("position", "positional", "cls_token", "class_embedding", "register", "mask")
LAST_GROUP = (99999,)  # timm's layer id for what follows the last block (the final norm)


class TokenEncoder(torch.nn.Module):
    """A ViT whose `tower` returns tokens; subclasses say how to run it and where its parts are.

    Args:
        tower: the library's module; its parameters are `tower.*`.
        width: the token width.
        prefix_tokens: class and register tokens before the patch tokens (0: no class token, the
            tower pools its tokens with a head of its own, e.g. SigLIP's attention pooling).
        stem: the module paths in `tower` before the first block (embeddings).
        blocks: the module path in `tower` of its list of blocks.
    """

    global_pool = "token"  # the classifier reads `cls` (`suite.lpft.head_input_kind`)
    tower: Any  # the library's module, untyped: its attributes are the library's

    def __init__(
        self, tower: torch.nn.Module, *, width: int, prefix_tokens: int, stem: tuple, blocks: str
    ):
        super().__init__()
        self.tower = tower
        self.num_features = width
        self.num_prefix_tokens = prefix_tokens
        self.head: torch.nn.Module = torch.nn.Identity()
        self._stem, self._blocks = stem, blocks

    # What a subclass says about its tower.
    def run(self, x: torch.Tensor, keep: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(final normed tokens (B, N, D), the un-normed outputs of the last `keep` blocks)."""
        raise NotImplementedError

    @property
    def norm(self) -> torch.nn.Module:
        """The final norm (the tower's), applied to every kind."""
        raise NotImplementedError

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image's one vector: the class token, or the tower's pooling where it has none."""
        return tokens[:, 0]

    # The surface of a timm ViT.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> the final normed tokens."""
        return self.run(x, 0)[0]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The classifier on the pooled tokens (`pre_logits`: its input)."""
        pooled = self.pool(tokens)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, or with no classifier the pooled features."""
        return self.forward_head(self.forward_features(x))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every feature kind of one forward pass, as `factory.extract_features` defines them.

        `cls` is the pooled vector; `last4` the normed class tokens of the last 4 blocks (with no
        class token: their normed mean tokens), then `mean`.
        """
        tokens, hidden = self.run(x, min(LAST_BLOCKS, len(self.blocks)))
        mean = tokens[:, self.num_prefix_tokens :].mean(dim=1)
        if self.num_prefix_tokens:
            last = [self.norm(h[:, 0]) for h in hidden]
        else:
            last = [self.norm(h).mean(dim=1) for h in hidden]
        return {"cls": self.pool(tokens), "mean": mean, "last4": torch.cat([*last, mean], dim=1)}

    def get_classifier(self) -> torch.nn.Module:
        """The classifier (an Identity when headless)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh linear classifier of `num_classes` outputs (0: none)."""
        width = self.num_features
        self.head = torch.nn.Linear(width, num_classes) if num_classes else torch.nn.Identity()

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The tower's blocks, in order (`--freeze last:K` counts from the end)."""
        return self.tower.get_submodule(self._blocks)

    def group_matcher(self, coarse: bool = False) -> dict:
        """The layer groups of timm: the stem, one per block, the final norm with the last block."""
        stem = "|".join(rf"^tower\.{path}" for path in self._stem)
        norm = next(name for name, module in self.named_modules() if module is self.norm)
        return {
            "stem": stem,
            "blocks": [(rf"^tower\.{self._blocks}\.(\d+)", None), (rf"^{norm}\.", LAST_GROUP)],
        }

    def no_weight_decay(self) -> set[str]:
        """The embeddings' names (biases and norms are left out of decay by timm already)."""
        names = (name for name, _ in self.named_parameters())
        return {name for name in names if any(w in name for w in EMBEDDING_WORDS)}
