"""Prefix-tuning (paper eq. 3; Li & Liang 2021): learned key/value prefixes in every self-attention block.

    head = Attn(x W_q, [P_k ; x W_k], [P_v ; x W_v])        P_k, P_v ∈ R^{p×d} per block

During training the prefixes are re-parameterised by an MLP, as in Li & Liang (optimising them directly is
unstable):  [P_k, P_v]_{1..L} = MLP(P'),  P' ∈ R^{p×d},  MLP: d → h → 2·L·d.  `fold()` evaluates the MLP once
and keeps only the plain prefixes (2·L·p·d numbers) for saving and inference.

The prefixes enter through BLIP's own KV cache: at the start of a sequence the hook (`TowerHook`) fills the
empty cache with them, so the tower's attention code runs unchanged in training and in cached generation,
where they stay in the cache. As with peft's prefix-tuning, the text takes positions p..p+T-1.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from .tower_hook import TowerHook


class PrefixTuning(TowerHook):
    def __init__(self, tower: nn.Module, length: int, mlp_hidden: int | None = None):
        super().__init__(length)
        cfg = tower.config
        self.layers, self.heads, d = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size
        self.prefix_tokens = nn.Parameter(torch.randn(length, d) * 0.02)                      # P': (p, d)
        self.prefix_mlp = nn.Sequential(nn.Linear(d, mlp_hidden or d), nn.Tanh(),
                                        nn.Linear(mlp_hidden or d, 2 * self.layers * d))
        self.prefix_kv = None                                                                 # once folded

    def kv(self) -> torch.Tensor:
        """[P_k, P_v] of every block: (L, 2, p, d)."""
        if self.prefix_kv is not None:
            return self.prefix_kv
        p, d = self.prefix_tokens.shape
        return self.prefix_mlp(self.prefix_tokens).view(p, self.layers, 2, d).permute(1, 2, 0, 3)  # MLP(P')

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the MLP by the prefixes it produces (for saving and inference)."""
        kv = self.kv().detach().clone()
        del self.prefix_tokens, self.prefix_mlp
        self.prefix_kv = nn.Parameter(kv)

    def folded_state(self) -> dict[str, torch.Tensor]:
        return {"prefix_kv": self.kv().detach()}

    def start(self, tower, kwargs, batch_size):
        L, _, p, d = self.kv().shape
        kv = self.kv().view(L, 2, p, self.heads, d // self.heads).transpose(2, 3)          # (L, 2, H, p, d/H)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is None:
            cache = kwargs["cache"] = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self_attention = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        for layer in range(L):                                                   # [P_k; ·], [P_v; ·] per block
            self_attention.update(kv[layer, 0].expand(batch_size, -1, -1, -1),
                                  kv[layer, 1].expand(batch_size, -1, -1, -1), layer)


def apply(model, towers: dict[str, nn.Module], cfg) -> list:
    undo = []
    for tower in towers.values():
        tower.prefix_tuning = PrefixTuning(tower, cfg.size, cfg.prefix_mlp_hidden)
        undo += tower.prefix_tuning.attach(tower) + [lambda t=tower: delattr(t, "prefix_tuning")]
    return undo


def count(size: int, text_config) -> tuple[int, str]:
    """Trainable parameters per text tower (the MLP at its default width d), and the formula in words."""
    d, L = text_config.hidden_size, text_config.num_hidden_layers
    return (size * d + (d * d + d) + (d * 2 * L * d + 2 * L * d),
            "p·d + (d² + d) + (d·2Ld + 2Ld)  [P′ and the MLP d → d → 2Ld]")
