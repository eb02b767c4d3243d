"""LoRA (paper eq. 9–15; Hu et al.): a low-rank update on W_q and W_k of every attention, via peft.

The paper (x a row vector, k heads, eq. 12–15):  h^j = Attn(x(W_q^j + Φ_1), g(W_k^j + Φ_2), g W_v^j),
Φ = B A with B ∈ R^{d×r} and A ∈ R^{r×d/k}. Here, as in Hu et al. and peft, one low-rank update acts on the
whole d×d projection — the per-head form with B shared and one A block per head, A = [A^1 … A^k] ∈ R^{r×d}:

    x W_q  →  x W_q + (α/r) · x B A        B = lora_A.weightᵀ (random),  A = lora_B.weightᵀ (zero at init)

so h = x W_q at the start. peft's `lora.Linear` computes exactly  base(x) + (α/r) · lora_B(lora_A(x)).  α = r,
so the update's scale does not change along the rank grid. Targets: `query` and `key` of self-attention
(g = x) and of cross-attention (g = the image or question states) in the chosen text towers. peft's
`inject_adapter_in_model` wraps the Linear layers in place (no PeftModel wrapper), so BLIP's own `generate`
keeps working; `merge()` folds B·A into W for inference.
"""
from __future__ import annotations

import re

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer


def target_regex(tower_paths: list[str]) -> str:
    towers = "|".join(re.escape(t) for t in tower_paths)
    return rf"^({towers})\.encoder\.layer\.\d+\.(attention|crossattention)\.self\.(query|key)$"


def apply(model, towers: dict, cfg) -> list:
    """Unlike the others LoRA is injected once per model (peft matches module names model-wide)."""
    paths = [name for name, m in model.named_modules() if any(m is t for t in towers.values())]
    config = LoraConfig(r=cfg.size, lora_alpha=cfg.size, lora_dropout=0.0, target_modules=target_regex(paths),
                        bias="none")
    inject_adapter_in_model(config, model)
    return [lambda: unload(model)]


def unload(model) -> None:
    """Put every wrapped Linear back (peft's LoraModel.unload, for a model injected without the wrapper)."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoraLayer):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, m.get_base_layer())


def merge(model) -> None:
    for m in model.modules():
        if isinstance(m, LoraLayer):
            m.merge()


def count(size: int, text_config) -> tuple[int, str]:
    """Trainable parameters per text tower, and the formula in words."""
    d, L, e = text_config.hidden_size, text_config.num_hidden_layers, text_config.encoder_hidden_size
    return L * size * (6 * d + e + d), "L·r·(2·2d + 2d + (d_enc + d))  [A and B on q, k of self- and cross-attention]"
