"""LoRA (paper eq. 9–15; Hu et al.): a low-rank update on W_q and W_k of every attention, via peft.

    h = x W_0 + (α/r) · x A B,      A ∈ R^{d×r} (random),  B ∈ R^{r×k} (zero-init, so h = x W_0 at start)

Targets: `query` and `key` of self-attention and of cross-attention (the paper's MHA covers both: g = x or
not) in the chosen text towers. α = r, so the update's scale does not change with the rank of the grid.
peft's `inject_adapter_in_model` wraps the Linear layers in place (no PeftModel wrapper), so BLIP's own
`generate` keeps working; `merge()` folds B·A into W_0 for inference.
"""
from __future__ import annotations

import re

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer


def target_regex(tower_prefixes: list[str]) -> str:
    towers = "|".join(re.escape(t) for t in tower_prefixes)
    return rf"^({towers})\.encoder\.layer\.\d+\.(attention|crossattention)\.self\.(query|key)$"


def apply_model(model, towers: list[str], size: int, lora_dropout: float = 0.0) -> None:
    """Unlike the others LoRA is injected once per model (peft matches module names model-wide)."""
    config = LoraConfig(r=size, lora_alpha=size, lora_dropout=lora_dropout, target_modules=target_regex(towers),
                        bias="none")
    inject_adapter_in_model(config, model)


def merge(model) -> None:
    for m in model.modules():
        if isinstance(m, LoraLayer):
            m.merge()
