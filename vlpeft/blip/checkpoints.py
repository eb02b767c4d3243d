"""The checks a checkpoint path passes before anything heavy is imported (no torch here: `vlpeft train` runs them
first, so a wrong path fails in well under two seconds):

- `check_path`: a folder whose config.json parses and names a BLIP model (model_type 'blip'), or a hub name
  already in the local Hugging Face cache (nothing is downloaded, so a name that is not there fails at once, with
  what to do instead);
- whether a checkpoint was already fine-tuned on VQA (`looks_vqa_finetuned`), which VQA refuses as a start: its
  name, the record `vlpeft convert-blip` leaves beside its folders (`RECORD`), or its config.json; and the same
  judgement of an original BLIP state dict by its name and keys (`source_verdict`, written into that record).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import ModelError
from ..io import read_json

RECORD = "conversion.json"  # what `vlpeft convert-blip` writes last beside its caption/ and vqa/ folders


def check_path(path: str | Path) -> tuple[str, dict]:
    """A checkpoint directory whose config is a whole BLIP config, or a hub name already in the local cache
    (nothing is downloaded): (the path to load, its config)."""
    local = Path(path).expanduser()
    if local.is_dir():
        config = local / "config.json"
        if not config.is_file():
            raise ModelError(f"{local}: no config.json — not a transformers checkpoint directory. Convert an "
                             f"original BLIP checkpoint with `vlpeft convert-blip`, or point at a save_pretrained "
                             f"directory.")
        where = str(local)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)) and not str(path).startswith("."):
        from huggingface_hub import constants, try_to_load_from_cache
        cached = try_to_load_from_cache(str(path), "config.json")
        if not isinstance(cached, str):
            raise ModelError(f"{path}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and vlpeft "
                             f"downloads nothing. Put the checkpoint on disk — `vlpeft convert-blip` (BLIP's "
                             f"pre-training checkpoint) or a save_pretrained folder — and pass its path.")
        config, where = Path(cached), str(path)
    else:
        raise ModelError(f"model path {str(path)!r} does not exist. For the embedded model run `vlpeft pretrain`; "
                         f"for real BLIP pass a checkpoint directory or a hub name already in the local HF cache.")
    try:
        cfg = json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{config}: not valid JSON ({e}); the checkpoint is corrupt — re-save or re-convert "
                         f"it") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "blip":
        found = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise ModelError(f"{config}: model_type {found!r}, not a BLIP checkpoint (model_type 'blip'); point at a "
                         f"BLIP caption or VQA folder")
    return where, cfg


# ---------------------------------------------------------------------------------------------------------
# Already fine-tuned on VQA? (VQA from such a start would score a model on its own training questions)
FINE_TUNED_ON_VQA = tuple(re.compile(p) for p in (  # names of BLIP checkpoints fine-tuned on VQA
    r"blip[-_]vqa",                                   # Salesforce/blip-vqa-base, blip-vqa-capfilt-large
    r"vqa[-_](base|large|capfilt)(?![a-z])",          # vqa-base, vqa-capfilt…
    r"model_(base_|large_)?vqa",                      # BLIP's model_vqa.pth, model_base_vqa_capfilt_large.pth
    r"fine-?tuned[-_]?(on[-_]?)?vqa",
))
_BLIP_VQA_PARTS = {"visual_encoder", "text_encoder", "text_decoder"}  # BLIP's models/blip_vqa.py, all of it
_PRETRAIN_ONLY = ("visual_encoder_m.", "text_encoder_m.", "itm_head.", "image_queue", "text_queue", "temp")


def vqa_name(text: str) -> str | None:
    """The part of a name or path that marks a BLIP checkpoint fine-tuned on VQA, or None."""
    low = text.lower().replace("\\", "/")
    for pattern in FINE_TUNED_ON_VQA:
        m = pattern.search(low)
        if m:
            return m.group(0)
    return None


def source_kind(keys) -> str:
    """'pre-training' (BLIP_Pretrain's state dict), 'vqa-finetuned' (exactly BLIP_VQA's parts) or 'other', from an
    original BLIP state dict's keys."""
    keys = list(keys)
    prefixes = {k.split(".")[0] for k in keys}
    if any(k.startswith(_PRETRAIN_ONLY) for k in keys) and _BLIP_VQA_PARTS <= prefixes:
        return "pre-training"
    if prefixes == _BLIP_VQA_PARTS:
        return "vqa-finetuned"
    return "other"


def source_verdict(name: str, keys) -> tuple[str, str | None]:
    """(source_kind, the reason an original checkpoint called `name` with these keys looks fine-tuned on VQA, or
    None): what `vlpeft convert-blip` records, and `looks_vqa_finetuned` reads back."""
    kind, hit = source_kind(keys), vqa_name(name)
    reason = (f"the file name contains {hit!r}" if hit else
              "its keys are exactly BLIP_VQA's (visual_encoder, text_encoder, text_decoder; no pre-training heads)"
              if kind == "vqa-finetuned" else None)
    return kind, reason


def looks_vqa_finetuned(model_path: str) -> str | None:
    """A reason string if `model_path` (hub name, checkpoint file or directory) looks fine-tuned on VQA: its name
    (blip-vqa…, vqa-base, vqa-capfilt, BLIP's model_vqa.pth / model_base_vqa_*.pth), a conversion record beside
    it or one level up (`RECORD`), or its config.json (`finetuned_on_vqa`, `_name_or_path`). Else None."""
    text = str(model_path)
    hit = vqa_name(text)
    if hit:
        return f"{text!r}: the name contains {hit!r}, a BLIP checkpoint fine-tuned on VQA"
    path = Path(text).expanduser()
    if not path.is_dir():
        return None
    for record in (path / RECORD, path.parent / RECORD):
        rec = json_object(record)
        if rec is None:
            continue
        if rec.get("finetuned_on_vqa"):
            return f"{record}: {rec.get('finetuned_reason') or 'converted from a checkpoint fine-tuned on VQA'}"
        hit = vqa_name(str(rec.get("source", {}).get("name", "")))
        if hit:
            return f"{record}: converted from {rec['source']['name']!r}, whose name contains {hit!r}"
    cfg = json_object(path / "config.json") or {}
    if cfg.get("finetuned_on_vqa"):
        return f"{path / 'config.json'}: finetuned_on_vqa is set"
    for field in ("_name_or_path", "name_or_path"):
        hit = vqa_name(str(cfg.get(field, "")))
        if hit:
            return f"{path / 'config.json'}: {field} {cfg[field]!r} contains {hit!r}"
    return None


def json_object(path: Path) -> dict | None:
    """A JSON object, or None for a file that is missing, unreadable or not an object (a best-effort look)."""
    try:
        obj = read_json(path, missing_ok=True)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None
