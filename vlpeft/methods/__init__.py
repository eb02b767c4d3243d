"""The registry: one call applies any of the study's methods to a BLIP caption or VQA model, one undoes it.

    model = load_model("vqa", path)
    apply_method(model, MethodConfig("lora", size=8, tune_classifier=True), seed=0)
    print_trainable_parameters(model)   # trainable params: … || all params: … || trainable%: …
    remove_method(model)                # the base model again

Which methods exist, and where each one's `apply` lives, is the catalogue's business (`vlpeft.catalog`).
A method's weights are the parameters its injection adds; only they are trained (plus the classifier for
"+ classifier"; everything for `full`). Its initialisation draws from its own RNG stream seeded by the run
seed, so the global RNG is untouched and a run is reproducible from its config.

Towers (which text towers get the method) default to the paper's unified view: every block of the text
encoder (the VQA question/fusion encoder) and of the text decoder; the vision encoder stays frozen.
`tune_classifier` also trains the final classifier, the decoder's LM head `text_decoder.cls` — in BLIP its
output matrix is tied to the decoder's input word embeddings, so those move with it (as in BLIP itself).
"""
from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..catalog import METHODS, size_problem
from ..catalog import method as catalogue_entry
from ..errors import MethodError

TOWER_PATHS = {"text_encoder": "text_encoder", "text_decoder": "text_decoder.bert"}
SEED_OFFSET = 7_919  # the method's RNG stream: seed + offset, apart from the data-order stream


@dataclass
class MethodConfig:
    method: str
    size: int = 0                      # Table II's knob: prompt/prefix length, LoRA rank, adapter hidden size
    tune_classifier: bool = False      # "+ classifier": also train text_decoder.cls
    towers: tuple[str, ...] | None = None  # None: every text tower the model has
    prefix_mlp_hidden: int | None = None   # prefix re-parameterisation MLP width (None: the model width d)


@dataclass
class Applied:
    """What `apply_method` did to a model, so that it can be saved, counted and undone."""
    cfg: MethodConfig
    undo: list = field(default_factory=list)     # hook handles and callables that restore the base model
    params: list = field(default_factory=list)   # the method's own parameters (ids new after injection)


def available_towers(model) -> list[str]:
    return [t for t in TOWER_PATHS if hasattr(model, t)]


def resolve(pointer: str):
    """The function a catalogue pointer "module:function" names (`Method.impl`, `Method.count`)."""
    module, _, fn = pointer.partition(":")
    return getattr(importlib.import_module(module), fn)


def validate(model, cfg: MethodConfig) -> list[str]:
    entry = catalogue_entry(cfg.method)
    if (problem := size_problem(cfg.method, cfg.size)) is not None:
        raise MethodError(problem)
    towers = list(cfg.towers) if cfg.towers else available_towers(model)
    bad = [t for t in towers if t not in available_towers(model)]
    if bad:
        raise MethodError(f"tower(s) {bad} not in this {type(model).__name__}; "
                          f"valid towers: {', '.join(available_towers(model))}")
    max_pos = model.config.text_config.max_position_embeddings
    if entry.family == "embedding" and cfg.size >= max_pos - 8:
        raise MethodError(f"{cfg.method} length {cfg.size} leaves no room for text within "
                          f"max_position_embeddings={max_pos}")
    return towers


def applied(model) -> Applied | None:
    return getattr(model, "_vlpeft_applied", None)


def apply_method(model, cfg: MethodConfig, seed: int = 0):
    """Inject the method in place, freeze everything else, and return the model. A model takes one method."""
    if applied(model) is not None:
        raise MethodError(f"{type(model).__name__} already has {applied(model).cfg.method} applied; "
                          "call remove_method(model) first (or load a fresh model)")
    towers = validate(model, cfg)
    entry = catalogue_entry(cfg.method)
    base_ids = {id(p) for p in model.parameters()}
    state = Applied(cfg)
    if entry.impl is not None:
        inject = resolve(entry.impl)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + SEED_OFFSET)
            state.undo = inject(model, {t: model.get_submodule(TOWER_PATHS[t]) for t in towers}, cfg)
        state.params = [p for p in model.parameters() if id(p) not in base_ids]
        if not state.params:
            raise MethodError(f"{entry.impl} added no parameters to train")
    model.requires_grad_(entry.family == "full")
    for p in state.params:
        p.requires_grad_(True)
    if cfg.tune_classifier:
        model.text_decoder.cls.requires_grad_(True)
    model._vlpeft_applied = state  # noqa: SLF001
    return model


def remove_method(model):
    """Undo `apply_method`: hooks removed, wrapped layers restored, every parameter trainable again."""
    state = applied(model)
    if state is None:
        raise MethodError(f"{type(model).__name__} has no method applied")
    for undo in reversed(state.undo):
        undo.remove() if hasattr(undo, "remove") else undo()
    del model._vlpeft_applied
    model.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------------------------------------
# Accounting, in peft's format; tied weights (BLIP's LM head and word embeddings) count once
def unique_parameters(model) -> list[torch.nn.Parameter]:
    return list({id(p): p for p in model.parameters()}.values())


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in unique_parameters(model) if p.requires_grad]


def count_parameters(model) -> tuple[int, int]:
    params = unique_parameters(model)
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def trainable_summary(model) -> str:
    trainable, total = count_parameters(model)
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def print_trainable_parameters(model) -> None:
    print(trainable_summary(model))


def closed_form_count(method: str, size: int, text_config, towers: int,
                      tune_classifier: bool = False) -> tuple[int, str]:
    """The method's trainable parameters from the shapes alone, and the formula in words: what
    `count_parameters` must find (tests and the read-along notebooks check it). Per tower it is the method's own
    `count` (its catalogue entry names it), times the towers, plus the LM head for "+ classifier"."""
    entry = catalogue_entry(method)
    if entry.count is None:
        raise MethodError(f"no closed form for {method!r}: it trains every parameter")
    n, text = resolve(entry.count)(size, text_config)
    n, text = n * towers, (f"{towers} × ({text})" if towers > 1 else text)
    if tune_classifier:
        d, V = text_config.hidden_size, text_config.vocab_size
        n += d * d + d + 2 * d + V * d + V
        text += " + (d² + d + 2d + V·d + V)  [the LM head: transform, LayerNorm, tied output matrix, bias]"
    return n, text


# ---------------------------------------------------------------------------------------------------------
# Saving only the method's weights
def trainable_state_dict(model) -> dict[str, torch.Tensor]:
    """Every trainable tensor, as trained (resumable checkpoints, best-so-far weights)."""
    seen, out = set(), {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out[name] = p.detach().contiguous().cpu()
    return out


def method_state_dict(model) -> dict[str, torch.Tensor]:
    """The method's weights for saving: as trained, except that a module offering `folded_state()` (the
    prefix MLP) is stored as what it produces; the model itself is left untouched."""
    out = trainable_state_dict(model)
    for name, m in model.named_modules():
        if hasattr(m, "folded_state"):
            out = {k: v for k, v in out.items() if not k.startswith(f"{name}.")}
            out |= {f"{name}.{k}": v.contiguous().cpu() for k, v in m.folded_state().items()}
    return out


def save_method(model, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(method_state_dict(model), out / "method.safetensors")
    (out / "method.json").write_text(json.dumps(asdict(applied(model).cfg)))
    return out


def load_method(model, path: str | Path, seed: int = 0):
    """Apply the saved method to a fresh base model and load its weights; exact reproduction of outputs."""
    path = Path(path)
    if not (path / "method.json").exists():
        raise MethodError(f"{path}: no method.json — not a directory written by save_method")
    cfg = MethodConfig(**json.loads((path / "method.json").read_text()))
    apply_method(model, cfg, seed)
    state = load_file(path / "method.safetensors")
    for name, m in model.named_modules():  # saved prefixes are folded: fold the fresh modules to match
        if hasattr(m, "fold") and f"{name}.prefix_kv" in state:
            m.fold()
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise MethodError(f"{path}: weights for parameters this model does not have: {result.unexpected_keys[:5]}")
    missing = [k for k, p in model.named_parameters() if p.requires_grad and k not in state]
    tied_ok = {k for k in missing if "cls.predictions.decoder.weight" in k or "word_embeddings" in k}
    if set(missing) - tied_ok:
        raise MethodError(f"{path}: missing weights for {sorted(set(missing) - tied_ok)[:5]}")
    return model


__all__ = ["METHODS", "MethodConfig", "size_problem", "available_towers", "closed_form_count", "MethodError",
           "apply_method", "remove_method", "applied", "count_parameters",
           "trainable_parameters", "trainable_summary", "print_trainable_parameters", "save_method", "load_method",
           "method_state_dict", "trainable_state_dict", "unique_parameters"]
