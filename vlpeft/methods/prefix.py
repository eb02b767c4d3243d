"""Prefix-tuning (paper eq. 3; Li & Liang 2021): learned key/value prefixes in every self-attention block.

    head = Attn(x W_q, [P_k ; x W_k], [P_v ; x W_v])        P_k, P_v ∈ R^{p×d} per block

During training the prefixes are re-parameterised by an MLP, as in Li & Liang (direct optimisation is
unstable):  [P_k, P_v]_{1..L} = MLP(P'),  P' ∈ R^{p×d},  MLP: d → h → 2·L·d.  `fold()` evaluates the MLP once
and keeps only the plain prefixes (2·L·p·d numbers) for saving and inference.

The prefixes enter through BLIP's own KV cache: a pre-hook on the text tower fills an empty cache with them
(and widens the attention mask by p), so the tower's attention code runs unchanged, training and cached
generation alike. As with peft's prefix-tuning, the text tokens then take positions p..p+T-1.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from .hooks import cache_is_empty, cache_of, call_arg, drop_position_ids, widen_mask


class PrefixTuning(nn.Module):
    def __init__(self, tower: nn.Module, length: int, mlp_hidden: int | None = None):
        super().__init__()
        cfg = tower.config
        self.length, self.layers, self.heads = length, cfg.num_hidden_layers, cfg.num_attention_heads
        d = cfg.hidden_size
        h = mlp_hidden or d
        self.prefix_tokens = nn.Parameter(torch.randn(length, d) * 0.02)                  # P' (p, d)
        self.prefix_mlp = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, 2 * self.layers * d))
        self.prefix_kv = None  # (L, 2, p, d) once folded
        tower.register_forward_pre_hook(self._pre, with_kwargs=True)

    def kv(self) -> torch.Tensor:
        if self.prefix_kv is not None:
            return self.prefix_kv
        p, d = self.prefix_tokens.shape
        return self.prefix_mlp(self.prefix_tokens).view(p, self.layers, 2, d).permute(1, 2, 0, 3)  # (L, 2, p, d)

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the MLP by the prefixes it produces (for saving and inference)."""
        kv = self.kv().detach().clone()
        del self.prefix_tokens, self.prefix_mlp
        self.prefix_kv = nn.Parameter(kv)

    def _pre(self, tower, args, kwargs):
        ids = call_arg(args, kwargs, "input_ids", 0)
        ref = ids if ids is not None else kwargs.get("inputs_embeds")
        if cache_is_empty(kwargs):
            B = ref.shape[0]
            kv = self.kv()                                                                  # (L, 2, p, d)
            L, _, p, d = kv.shape
            kv = kv.view(L, 2, p, self.heads, d // self.heads).transpose(2, 3)            # (L, 2, H, p, d/H)
            cache = cache_of(kwargs)
            if cache is None:
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
                kwargs["cache"] = cache
            self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
            for layer in range(L):
                self_cache.update(kv[layer, 0].expand(B, -1, -1, -1), kv[layer, 1].expand(B, -1, -1, -1), layer)
        drop_position_ids(kwargs)
        kwargs["attention_mask"] = widen_mask(kwargs.get("attention_mask"), ref, self.length)
        return args, kwargs


def apply(tower: nn.Module, size: int, prefix_mlp_hidden: int | None = None, **_) -> nn.Module:
    tower.prefix_tuning = PrefixTuning(tower, size, prefix_mlp_hidden)
    return tower.prefix_tuning
