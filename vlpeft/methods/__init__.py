"""The registry: one call applies any of the study's methods to a BLIP caption or VQA model.

    model = load_model("vqa", path)
    apply_method(model, MethodConfig("lora", size=8, tune_classifier=True))
    print_trainable_parameters(model)   # trainable params: … || all params: … || trainable%: …

Towers (which text towers get the method) default to the paper's unified view: every block of the text
encoder (the VQA question/fusion encoder) and of the text decoder; the vision encoder stays frozen.
`full` trains every parameter; `tune_classifier` also trains the final classifier, the decoder's LM head
`text_decoder.cls` — in BLIP its output matrix is tied to the decoder's input word embeddings, so those move
with it (as they would in BLIP itself).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import adapter, lora, prefix, prompt

METHODS = ("full", "prompt", "prefix", "lora", "serial_adapter", "parallel_adapter")
SIZE_KNOB = {"full": None, "prompt": "prompt length", "prefix": "prefix length", "lora": "rank",
             "serial_adapter": "hidden size", "parallel_adapter": "hidden size"}
FAMILY = {"full": "full", "prompt": "embedding", "prefix": "embedding", "lora": "layer",
          "serial_adapter": "layer", "parallel_adapter": "layer"}
TOWER_PATHS = {"text_encoder": "text_encoder", "text_decoder": "text_decoder.bert"}
TRAINABLE_MARKERS = ("prompt_", "prefix_", "lora_", "adapter_")  # every method parameter carries one


class MethodError(ValueError):
    """A method configuration that cannot be applied; the message names the valid choices."""


@dataclass
class MethodConfig:
    method: str
    size: int = 0                      # Table II's knob: prompt/prefix length, LoRA rank, adapter hidden size
    tune_classifier: bool = False      # "+ classifier": also train text_decoder.cls
    towers: tuple[str, ...] | None = None  # None: every text tower the model has
    prefix_mlp_hidden: int | None = None   # prefix re-parameterisation MLP width (None: the model width d)


def available_towers(model) -> list[str]:
    return [t for t in TOWER_PATHS if hasattr(model, t)]


def validate(model, cfg: MethodConfig) -> list[str]:
    if cfg.method not in METHODS:
        raise MethodError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.method != "full" and (not isinstance(cfg.size, int) or cfg.size <= 0):
        raise MethodError(f"{cfg.method} needs a positive {SIZE_KNOB[cfg.method]} (size), got {cfg.size!r}")
    towers = list(cfg.towers) if cfg.towers else available_towers(model)
    bad = [t for t in towers if t not in available_towers(model)]
    if bad:
        raise MethodError(f"tower(s) {bad} not in this {type(model).__name__}; "
                          f"valid towers: {', '.join(available_towers(model))}")
    max_pos = model.config.text_config.max_position_embeddings
    if cfg.method in ("prompt", "prefix") and cfg.size >= max_pos - 8:
        raise MethodError(f"{cfg.method} length {cfg.size} leaves no room for text within "
                          f"max_position_embeddings={max_pos}")
    return towers


def apply_method(model, cfg: MethodConfig):
    """Inject the method in place, freeze everything else, and return the model."""
    towers = validate(model, cfg)
    model._vlpeft_method = cfg  # noqa: SLF001 - remembered for save_method
    model.requires_grad_(cfg.method == "full")
    if cfg.method == "full":
        return model
    modules = {t: model.get_submodule(TOWER_PATHS[t]) for t in towers}
    if cfg.method == "lora":
        lora.apply_model(model, [TOWER_PATHS[t] for t in towers], cfg.size)
    else:
        inject = {"prompt": prompt.apply, "prefix": prefix.apply, "serial_adapter": adapter.apply_serial,
                  "parallel_adapter": adapter.apply_parallel}[cfg.method]
        for tower in modules.values():
            inject(tower, cfg.size, prefix_mlp_hidden=cfg.prefix_mlp_hidden)
    for name, p in model.named_parameters():
        p.requires_grad_(any(m in name for m in TRAINABLE_MARKERS))
    if cfg.tune_classifier:
        model.text_decoder.cls.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------------------------------------
# Accounting, in peft's format
def unique_parameters(model):
    return list({id(p): p for p in model.parameters()}.values())  # tied weights count once


def count_parameters(model) -> tuple[int, int]:
    params = unique_parameters(model)
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def trainable_summary(model) -> str:
    trainable, total = count_parameters(model)
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def print_trainable_parameters(model) -> None:
    print(trainable_summary(model))


# ---------------------------------------------------------------------------------------------------------
# Saving only the method's weights
def trainable_state_dict(model) -> dict[str, torch.Tensor]:
    """Every trainable tensor, as trained (for resumable checkpoints)."""
    seen, out = set(), {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out[name] = p.detach().contiguous().cpu()
    return out


def method_state_dict(model) -> dict[str, torch.Tensor]:
    """The method's weights for saving: as trained, except that each prefix MLP is evaluated and stored as
    its plain prefixes (`<module>.prefix_kv`); the model itself is left untouched."""
    out = trainable_state_dict(model)
    for name, m in model.named_modules():
        if isinstance(m, prefix.PrefixTuning) and m.prefix_kv is None:
            out = {k: v for k, v in out.items() if not k.startswith(f"{name}.prefix_")}
            out[f"{name}.prefix_kv"] = m.kv().detach().contiguous().cpu()
    return out


def save_method(model, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(method_state_dict(model), out / "method.safetensors")
    (out / "method.json").write_text(json.dumps(asdict(model._vlpeft_method)))  # noqa: SLF001
    return out


def load_method(model, path: str | Path):
    """Apply the saved method to a fresh base model and load its weights; exact reproduction of outputs."""
    path = Path(path)
    if not (path / "method.json").exists():
        raise MethodError(f"{path}: no method.json — not a directory written by save_method")
    cfg = MethodConfig(**json.loads((path / "method.json").read_text()))
    apply_method(model, cfg)
    state = load_file(path / "method.safetensors")
    for m in model.modules():  # saved prefixes are folded: fold the fresh modules to match
        if isinstance(m, prefix.PrefixTuning) and any(k.endswith("prefix_kv") for k in state):
            m.fold()
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise MethodError(f"{path}: weights for parameters this model does not have: {result.unexpected_keys[:5]}")
    missing = [k for k, p in model.named_parameters() if p.requires_grad and k not in state]
    tied_ok = {k for k in missing if "cls.predictions.decoder.weight" in k or "word_embeddings" in k}
    if set(missing) - tied_ok:
        raise MethodError(f"{path}: missing weights for {sorted(set(missing) - tied_ok)[:5]}")
    return model
