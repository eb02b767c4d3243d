"""The transformers side of a conversion: BLIP's processor (its tokenizer checked against BLIP's layout), the
BlipConfig the original weights describe, and one task model filled from the original tensors, saved and read
back through the project's loader tensor by tensor.

    caption  BlipForConditionalGeneration: vision_model ← visual_encoder, text_decoder ← text_decoder
    vqa      BlipForQuestionAnswering:     vision_model ← visual_encoder, text_encoder ← text_encoder,
             text_decoder ← the pre-trained text_decoder as answer decoder (what BLIP's own blip_vqa does when it
             loads model_base.pth: its `text_decoder.*` keys fill the answer decoder)
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import BlipConfig, BlipProcessor

from .keymap import OUTPUTS, rename_key, source_key
from .models import TASK_CLASSES, load_model, save_model
from .original import DEFAULT_PROCESSOR, VIT_LAYER_NORM_EPS, ConvertError, infer_config, interpolate_pos_embed


# ---------------------------------------------------------------------------------------------------------
# The processor and the config
def load_blip_processor(path: str) -> BlipProcessor:
    """A BlipProcessor from a folder saved with `save_pretrained` or a hub name in the local HF cache (offline)."""
    local = Path(path).expanduser()
    try:
        if not local.is_dir() and not re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)):
            raise OSError(f"{path} is neither a folder nor a hub name")
        # local_files_only: a hub name resolves from the local cache or not at all, whatever the environment says
        return BlipProcessor.from_pretrained(str(local) if local.is_dir() else str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConvertError(f"cannot load a BLIP processor from {path!r} ({first}). Nothing is downloaded: pass "
                           f"--processor DIR, a folder with a saved BlipProcessor (e.g. a local copy of "
                           f"{DEFAULT_PROCESSOR}), or a hub name already in the local HF cache") from None


def check_blip_tokens(tok) -> None:
    """BLIP's tokenizer is bert-base-uncased's with [DEC] (bos) and then [ENC] appended (`init_tokenizer` in
    BLIP's models/blip.py): in the checkpoint they are the last two rows (30522 and 30523 for BLIP-base). Any
    other layout would feed the converted model the wrong rows, silently."""
    dec, enc = tok.convert_tokens_to_ids("[DEC]"), tok.convert_tokens_to_ids("[ENC]")
    n = len(tok)
    if tok.bos_token != "[DEC]" or dec != n - 2 or enc != n - 1 or enc == tok.unk_token_id:
        raise ConvertError(f"the processor's tokenizer has bos {tok.bos_token!r}, [DEC] at row {dec} and [ENC] at "
                           f"row {enc if enc != tok.unk_token_id else 'none'} of {n}; BLIP's has [DEC] (bos) at row "
                           f"{n - 2} and [ENC] at {n - 1}, appended in that order. Pass --processor with BLIP's own "
                           f"processor (e.g. a saved copy of {DEFAULT_PROCESSOR})")
    for role, token in (("pad", "[PAD]"), ("sep", "[SEP]")):
        if getattr(tok, f"{role}_token") != token:
            raise ConvertError(f"the processor's tokenizer has {role} {getattr(tok, f'{role}_token')!r}; BLIP's is "
                               f"{token!r}. Pass --processor with BLIP's own processor")


def target_config(sd: dict, proc, image_size, vision_heads, text_heads):
    """The transformers BlipConfig of the source (shapes read off its weights, the special tokens from the
    processor's checked tokenizer), its position embeddings at the asked image size, the shapes as plain values
    and notes, both for the record. Sets the processor's image size to the model's."""
    cfg = infer_config(sd, vision_heads, text_heads)
    vision, text = cfg["vision"], cfg["text"]
    tok = proc.tokenizer
    if len(tok) != text["vocab_size"]:
        raise ConvertError(f"the processor's tokenizer has {len(tok)} tokens but the checkpoint's word embeddings "
                           f"have {text['vocab_size']} rows (BLIP-base: bert-base-uncased's 30522 + [DEC] + [ENC] "
                           f"= 30524); pass --processor with BLIP's tokenizer")
    check_blip_tokens(tok)
    text.update({"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
                 "sep_token_id": tok.sep_token_id, "eos_token_id": tok.sep_token_id})
    if text["hidden_size"] != vision["hidden_size"]:  # e.g. ViT-L (1024) with BERT-base (768)
        raise ConvertError(f"text width {text['hidden_size']} differs from vision width {vision['hidden_size']}: "
                           f"transformers' BlipForQuestionAnswering feeds text-encoder states to cross-attention "
                           f"sized for the vision width, so only equal widths convert (BLIP w/ ViT-B)")
    source_image_size = vision["image_size"]
    pos_embed = sd["visual_encoder.pos_embed"]
    notes = ["dropout: transformers' defaults (0.0); BLIP's med_config.json trained with 0.1",
             f"vision layer_norm_eps {VIT_LAYER_NORM_EPS} as BLIP's ViT (transformers' default is 1e-5)"]
    if image_size is not None and image_size != source_image_size:
        if image_size <= 0 or image_size % vision["patch_size"]:
            raise ConvertError(f"--image-size {image_size} is not a positive multiple of the patch size "
                               f"{vision['patch_size']}")
        pos_embed = interpolate_pos_embed(pos_embed, image_size // vision["patch_size"])
        notes.append(f"position embeddings interpolated from {source_image_size} px to {image_size} px "
                     f"(bicubic, as BLIP's interpolate_pos_embed)")
        vision["image_size"] = image_size
    proc.image_processor.size = {"height": vision["image_size"], "width": vision["image_size"]}
    config = BlipConfig(text_config=dict(text), vision_config=dict(vision),
                        **({"image_text_hidden_size": cfg["image_text_hidden_size"]}
                           if "image_text_hidden_size" in cfg else {}))
    shapes = {"vision": vision, "text": text, "source_image_size": source_image_size,
              **{k: v for k, v in cfg.items() if k not in ("vision", "text")}}
    return config, shapes, pos_embed, notes


# ---------------------------------------------------------------------------------------------------------
# One task model
def write_task(task: str, config: BlipConfig, sd: dict, pos_embed, proc, out: Path) -> tuple[dict, set]:
    """One task folder `out/task`: filled from the source, saved, and read back through `load_model` tensor by
    tensor (the contract: what a run loads is what was converted). Returns its record and the source keys it
    used."""
    torch.manual_seed(0)
    model = TASK_CLASSES[task](config).eval()
    report = fill_model(model, task, sd, pos_embed)
    used = report.pop("_used")
    save_model(model, proc, out / task)
    del model
    reloaded = load_model(task, out / task)
    for name, value in reloaded.state_dict().items():
        origin = source_key(report["filled_via_tying"].get(name, name))
        want = pos_embed if origin == "visual_encoder.pos_embed" else sd.get(origin)
        if want is None or not torch.equal(value, want.to(value.dtype)):
            raise ConvertError(f"{task}: {name} read back from {out / task} differs from source {origin}")
    return {"path": task, **report}, used


def fill_model(model, task: str, sd: dict, pos_embed) -> dict:
    """Copy every source tensor the task takes into `model`; fail naming any target weight left unfilled."""
    prefixes = OUTPUTS[task][1]
    target = model.state_dict()
    plan, no_target = {}, []
    for key in sd:
        if key.split(".")[0] not in prefixes:
            continue
        name = rename_key(key)
        if name is None:
            continue
        if name in target:
            plan[name] = key
        else:
            no_target.append(key)
    values = {name: (pos_embed if key == "visual_encoder.pos_embed" else sd[key]) for name, key in plan.items()}

    tied = getattr(model, "_tied_weights_keys", None) or {}
    tied = tied if isinstance(tied, dict) else {}
    via_tying = []
    for dest, origin in tied.items():  # dest is tied to origin in this model: fill origin, check dest agrees
        if dest in target and origin in target and target[dest].data_ptr() == target[origin].data_ptr():
            via_tying.append(dest)
            if dest in values and origin in values and not torch.equal(values[dest], values[origin]):
                raise ConvertError(f"{task}: source {plan[dest]} differs from {plan[origin]}, but transformers' "
                                   f"BLIP ties {dest} to {origin}; this checkpoint cannot be represented")
            values.pop(dest, None)

    missing = [n for n in target if n not in values and n not in via_tying]
    if missing:
        shown = "\n  ".join(f"{n}  ← {source_key(n) or '(no source name)'}" for n in missing[:20])
        more = f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise ConvertError(f"{task}: {len(missing)} target weights have no source tensor (missing source keys):"
                           f"\n  {shown}{more}")
    bad = [f"{n} ← {plan[n]}: target {tuple(target[n].shape)}, source {tuple(v.shape)}"
           for n, v in values.items() if tuple(v.shape) != tuple(target[n].shape)]
    if bad:
        raise ConvertError(f"{task}: shape mismatches:\n  " + "\n  ".join(bad[:20]))
    result = model.load_state_dict(values, strict=False)
    if result.unexpected_keys:
        raise ConvertError(f"{task}: unexpected keys {result.unexpected_keys[:10]}")
    after = model.state_dict()
    differ = [n for n, v in values.items() if not torch.equal(after[n], v.to(after[n].dtype))]
    if differ:
        raise ConvertError(f"{task}: weights did not load as copied: {differ[:10]}")
    return {"class": OUTPUTS[task][0], "sources": [p + ".*" for p in prefixes], "filled": len(values),
            "filled_via_tying": {d: tied[d] for d in sorted(via_tying)}, "unfilled_target": [],
            "source_keys_without_target": sorted(no_target), "_used": set(plan.values())}
