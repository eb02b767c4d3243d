"""Small helpers shared by the hook-based methods (prompt, prefix): reading and replacing call arguments
of a BLIP text tower, widening its attention mask, and telling whether its KV cache is still empty."""
from __future__ import annotations

import torch


def call_arg(args: tuple, kwargs: dict, name: str, pos: int):
    return args[pos] if len(args) > pos else kwargs.get(name)


def set_call_arg(args: tuple, kwargs: dict, name: str, pos: int, value):
    if len(args) > pos:
        args = args[:pos] + (value,) + args[pos + 1:]
    else:
        kwargs[name] = value
    return args, kwargs


def cache_of(kwargs: dict):
    return kwargs.get("cache", kwargs.get("past_key_values"))


def cache_is_empty(kwargs: dict) -> bool:
    cache = cache_of(kwargs)
    return cache is None or cache.get_seq_length() == 0


def drop_position_ids(kwargs: dict) -> None:
    """`generate` passes position ids counted from the text's own mask; with p learned positions in front,
    let BLIP's embeddings count from the cache length instead (positions p.., as in training)."""
    kwargs.pop("position_ids", None)


def widen_mask(mask: torch.Tensor | None, ids: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Prepend n ones (the learned prompt/prefix positions) to a (B, T) attention mask."""
    if mask is None:
        if ids is None:
            return None
        mask = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
    return torch.cat([mask.new_ones(mask.shape[0], n), mask], dim=1)
