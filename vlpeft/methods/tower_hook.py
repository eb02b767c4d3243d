"""The argument plumbing shared by the methods that act on a text tower's *input* (prompt- and prefix-tuning),
so that each of their files shows only its equation.

Both add p learned positions in front of the text. A `TowerHook` sees every call of a BLIP text tower
(`BlipTextModel`) through a forward pre-hook and knows which kind of call it is:

- a call that *starts* a sequence (training, evaluation, the first step of `generate`): the KV cache is empty;
  the method adds its p positions here (`start`);
- a call that *continues* one (later steps of cached generation): the p positions are already in the KV
  cache, so the method does nothing but keep the mask aligned.

In both cases the text's attention mask (which covers the text only) gets p ones in front. A mask of `None`
stays `None`: transformers passes `None` for an all-ones mask during `generate`, and BLIP then lets every
position attend to the whole cache — the p learned positions included — which is exactly the training-time
mask. (Widening `None` into ones over "p + the current token" was the bug that made each decoded token blind
to the caption so far.) Position ids are dropped so that BLIP counts positions from the cache length: the text
takes positions p..p+T-1, in training and in every decoding step alike (peft's and Li & Liang's convention).
"""
from __future__ import annotations

import torch
from torch import nn


def cache_length(kwargs: dict) -> int:
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    return 0 if cache is None else cache.get_seq_length()


class TowerHook(nn.Module):
    """Base class: subclasses implement `start(tower, kwargs, batch_size)`, which may rewrite the call's
    kwargs (prompt: swap `input_ids` for `[P; E(x)]`; prefix: fill the empty cache), and may set
    `strip_output` to drop the p learned positions from the tower's output."""

    def __init__(self, length: int):
        super().__init__()
        self.length = length
        self.strip_output = False

    def attach(self, tower: nn.Module) -> list:
        """Register on `tower`; returns the hook handles (the registry removes them)."""
        return [tower.register_forward_pre_hook(self._pre, with_kwargs=True),
                tower.register_forward_hook(self._post, with_kwargs=True)]

    def _pre(self, tower, args, kwargs):
        if args:  # BLIP's task models call the towers with keywords; a positional input_ids is moved there
            kwargs["input_ids"], args = args[0], args[1:]
        ref = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        self.strip_output = False
        if cache_length(kwargs) == 0:
            self.start(tower, kwargs, ref.shape[0])
        kwargs.pop("position_ids", None)
        mask = kwargs.get("attention_mask")
        if mask is not None:                                                     # (B, T) → (B, p + T)
            kwargs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], self.length), mask], dim=1)
        return args, kwargs

    def _post(self, tower, args, kwargs, output):
        if not self.strip_output:
            return output
        self.strip_output = False
        if isinstance(output, tuple):                                            # return_dict=False callers
            return (output[0][:, self.length:],) + output[1:]
        output.last_hidden_state = output.last_hidden_state[:, self.length:]    # (B, p+T, d) → (B, T, d)
        return output

    def start(self, tower: nn.Module, kwargs: dict, batch_size: int) -> None:
        raise NotImplementedError
