"""Serial (Houlsby et al.; paper eq. 5, 8) and parallel (He et al.; eq. 6–8) adapters.

Both are a bottleneck  A(x) = ReLU(x W_down) W_up,  W_down ∈ R^{d×h}, W_up ∈ R^{h×d}, h ≪ d,  with W_up
zero-initialised so an injected model starts equal to the base model. BLIP's blocks are post-LN:
a sub-layer (self-attention, cross-attention, FFN) computes  LN(F(x) + x).

    serial:    LN( F(x) + A(F(x)) + x )      the adapter follows the sub-layer's output projection
    parallel:  LN( F(x) + A(x)    + x )      the adapter is fed the sub-layer's input, beside it

Serial wraps the output projection `dense` (y ↦ y + A(y)); parallel wraps the output module
(BlipTextSelfOutput / BlipTextOutput take (F-hidden, x) and compute LN(dense(F-hidden) + x)), handing it
x + A(x) as the residual. Either way BLIP's code runs unchanged. Sites: after every attention (self and,
where the tower has it, cross) and after the FFN of every block.
"""
from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.adapter_down = nn.Linear(d, hidden)                                  # W_down
        self.adapter_up = nn.Linear(hidden, d)                                    # W_up, zero at init
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                          # (B, T, d) → (B, T, d)
        return self.adapter_up(torch.relu(self.adapter_down(x)))                 # A(x) = ReLU(x W_down) W_up


class SerialAdapter(nn.Module):
    """Wraps a sub-layer's output projection: y = dense(x);  y + A(y)        (eq. 5)."""

    def __init__(self, dense: nn.Linear, hidden: int):
        super().__init__()
        self.base = dense
        self.adapter = Bottleneck(dense.out_features, hidden)

    def forward(self, x):
        y = self.base(x)
        return y + self.adapter(y)


class ParallelAdapter(nn.Module):
    """Wraps a sub-layer's output module: LN(dense(h) + x + A(x))            (eq. 6–8)."""

    def __init__(self, output: nn.Module, hidden: int):
        super().__init__()
        self.base = output
        self.adapter = Bottleneck(output.dense.out_features, hidden)

    def forward(self, hidden_states, input_tensor):
        return self.base(hidden_states, input_tensor + self.adapter(input_tensor))


def sites(tower: nn.Module):
    """(parent, attribute) of every sub-layer output module: attention, cross-attention, FFN per block."""
    for block in tower.encoder.layer:
        yield block.attention, "output"
        if hasattr(block, "crossattention"):
            yield block.crossattention, "output"
        yield block, "output"


def _replace(parent: nn.Module, name: str, new: nn.Module):
    old = getattr(parent, name)
    setattr(parent, name, new)
    return lambda: setattr(parent, name, old)


def apply_serial(model, towers: dict[str, nn.Module], cfg) -> list:
    return [_replace(getattr(parent, name), "dense", SerialAdapter(getattr(parent, name).dense, cfg.size))
            for tower in towers.values() for parent, name in list(sites(tower))]


def apply_parallel(model, towers: dict[str, nn.Module], cfg) -> list:
    return [_replace(parent, name, ParallelAdapter(getattr(parent, name), cfg.size))
            for tower in towers.values() for parent, name in list(sites(tower))]


def count(size: int, text_config) -> tuple[int, str]:
    """Trainable parameters per text tower (serial and parallel alike), and the formula in words."""
    d, L = text_config.hidden_size, text_config.num_hidden_layers
    return L * 3 * (2 * d * size + size + d), "L·3·(2·d·h + h + d)  [W_down, W_up and biases at 3 sites]"
