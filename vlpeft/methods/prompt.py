"""Prompt-tuning (paper eq. 2; Lester et al. 2021): p learned embeddings prepended to a text tower's input.

    H_0 = [P ; E(x)]          P ∈ R^{p×d}:  (B, p+T, d)  →  the tower's L frozen blocks  →  drop the first p

BLIP's task models always call their text towers with `input_ids`, so (peft's prompt learning fails on BLIP
for that reason) the prompts go in through a hook on the tower (`TowerHook`): at the start of a sequence it
swaps `input_ids` for `[P; E(x)]`, and the p prompt outputs are dropped again, so that the LM head, the loss
and the VQA answer decoder see exactly the T text positions. During cached generation the prompts sit in the
KV cache after the first step. Prompts take positions 0..p-1, the text p..p+T-1.
"""
from __future__ import annotations

import torch
from torch import nn

from .tower_hook import TowerHook


class PromptTuning(TowerHook):
    def __init__(self, tower: nn.Module, length: int):
        super().__init__(length)
        words = tower.embeddings.word_embeddings.weight                              # (V, d)
        # initialised from the embeddings of random vocabulary tokens (Lester et al.: better than random);
        # the registry seeds this draw from the run seed
        ids = torch.randint(0, words.shape[0], (length,))
        self.prompt_embeddings = nn.Parameter(words.detach()[ids].clone())            # P: (p, d)

    def start(self, tower, kwargs, batch_size):
        words = tower.embeddings.word_embeddings(kwargs.pop("input_ids"))             # E(x): (B, T, d)
        kwargs["inputs_embeds"] = torch.cat([self.prompt_embeddings.expand(batch_size, -1, -1), words], dim=1)
        self.strip_output = True                                                      # H_0 = [P; E(x)]


def apply(model, towers: dict[str, nn.Module], cfg) -> list:
    undo = []
    for tower in towers.values():
        tower.prompt_tuning = PromptTuning(tower, cfg.size)
        undo += tower.prompt_tuning.attach(tower) + [lambda t=tower: delattr(t, "prompt_tuning")]
    return undo


def count(size: int, text_config) -> tuple[int, str]:
    """Trainable parameters per text tower, and the formula in words."""
    return size * text_config.hidden_size, "p·d"
