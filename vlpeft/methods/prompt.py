"""Prompt-tuning (paper eq. 2): p learned embeddings P ∈ R^{p×d} prepended to a text tower's input embeddings.

    H_0 = [P ; E(x)]          (B, p+T, d)  →  the tower's L blocks  →  drop the first p outputs  (B, T, d)

BLIP's text towers do accept `inputs_embeds`, but BLIP's task models always call them with `input_ids`, so
(peft's prompt learning fails on BLIP for that reason) the prompts go in through forward hooks on the tower:
the pre-hook swaps `input_ids` for `[P; E(x)]` and widens the attention mask by p ones; the post-hook drops
the p prompt positions, so the LM head, the loss and the VQA decoder see exactly the T text positions.
During cached generation the first step carries the prompts into the KV cache; later steps only widen the
mask. The prompts take positions 0..p-1, the text p..p+T-1 (so p + T must fit max_position_embeddings).
"""
from __future__ import annotations

import torch
from torch import nn

from .hooks import cache_is_empty, call_arg, drop_position_ids, set_call_arg, widen_mask


class PromptTuning(nn.Module):
    def __init__(self, tower: nn.Module, length: int):
        super().__init__()
        self.length = length
        words = tower.embeddings.word_embeddings.weight
        # init from the embeddings of random vocabulary tokens (Lester et al. found this better than random)
        ids = torch.randint(0, words.shape[0], (length,), generator=torch.Generator().manual_seed(length))
        self.prompt_embeddings = nn.Parameter(words.detach()[ids].clone())          # (p, d)
        self._strip = False
        tower.register_forward_pre_hook(self._pre, with_kwargs=True)
        tower.register_forward_hook(self._post, with_kwargs=True)

    def _pre(self, tower, args, kwargs):
        ids = call_arg(args, kwargs, "input_ids", 0)
        self._strip = ids is not None and cache_is_empty(kwargs)
        if self._strip:
            B = ids.shape[0]
            embeds = torch.cat([self.prompt_embeddings.expand(B, -1, -1),                # (B, p, d)
                                tower.embeddings.word_embeddings(ids)], dim=1)          # (B, p+T, d)
            args, kwargs = set_call_arg(args, kwargs, "input_ids", 0, None)
            kwargs["inputs_embeds"] = embeds
        drop_position_ids(kwargs)
        kwargs["attention_mask"] = widen_mask(kwargs.get("attention_mask"), ids, self.length)
        return args, kwargs

    def _post(self, tower, args, kwargs, output):
        if not self._strip:
            return output
        self._strip = False
        if isinstance(output, tuple):  # return_dict=False callers
            return (output[0][:, self.length:],) + output[1:]
        output.last_hidden_state = output.last_hidden_state[:, self.length:]            # (B, T, d)
        return output


def apply(tower: nn.Module, size: int, **_) -> nn.Module:
    tower.prompt_tuning = PromptTuning(tower, size)
    return tower.prompt_tuning
