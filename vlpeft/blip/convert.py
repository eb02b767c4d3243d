"""Convert BLIP's ORIGINAL pre-training checkpoint into the two transformers checkpoints the study fine-tunes.

Salesforce published BLIP's pre-trained weights only in the original code base's layout
(github.com/salesforce/BLIP, README "Pre-trained checkpoints", "BLIP w/ ViT-B" column):

    https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base.pth
    https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_capfilt_large.pth  (CapFilt-L)
    https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_14M.pth            (14M images)

Each is a torch pickle `{"model": state_dict, ...}` of `BLIP_Pretrain` (models/blip_pretrain.py): the ViT
`visual_encoder.*` (models/vit.py), the BERT text encoder `text_encoder.*` and the LM-head decoder
`text_decoder.*` (models/med.py), plus what only pre-training needs (momentum copies `*_m.*`, `vision_proj`,
`text_proj`, `itm_head`, `temp`, the queues). The hub checkpoints `Salesforce/blip-image-captioning-base` and
`Salesforce/blip-vqa-base` are *fine-tuned* (COCO captions, VQAv2); this module makes the pre-trained start.

    OUT/caption       BlipForConditionalGeneration: vision_model ← visual_encoder, text_decoder ← text_decoder
    OUT/vqa           BlipForQuestionAnswering:     vision_model ← visual_encoder, text_encoder ← text_encoder,
                      text_decoder ← the pre-trained text_decoder as answer decoder (what BLIP's own blip_vqa
                      does when it loads model_base.pth: its `text_decoder.*` keys fill the answer decoder)
    OUT/conversion.json  written last: source, sha256, inferred config, unmapped source keys (the record that
                      a conversion is complete; a re-run with the same source and options returns at once)

Key mapping (facts from BLIP's models/vit.py + models/med.py and transformers' BLIP modelling code; the former
transformers script `convert_blip_original_pytorch_to_hf.py` renames the same way):

    visual_encoder.cls_token                 → vision_model.embeddings.class_embedding        (1, 1, d)
    visual_encoder.pos_embed                 → vision_model.embeddings.position_embedding     (1, N+1, d)
    visual_encoder.patch_embed.proj.*        → vision_model.embeddings.patch_embedding.*      Conv2d
    visual_encoder.blocks.i.norm1.*          → vision_model.encoder.layers.i.layer_norm1.*
    visual_encoder.blocks.i.attn.qkv.*       → vision_model.encoder.layers.i.self_attn.qkv.*  fused (3d, d)
    visual_encoder.blocks.i.attn.proj.*      → vision_model.encoder.layers.i.self_attn.projection.*
    visual_encoder.blocks.i.norm2.*          → vision_model.encoder.layers.i.layer_norm2.*
    visual_encoder.blocks.i.mlp.fc{1,2}.*    → vision_model.encoder.layers.i.mlp.fc{1,2}.*
    visual_encoder.norm.*                    → vision_model.post_layernorm.*
    text_encoder.<rest>, text_decoder.<rest> → the same names (BERT naming on both sides); the BERT
                                               `embeddings.position_ids` buffer is rebuilt by transformers
    text_decoder.cls.predictions.decoder.{weight,bias} are tied to word_embeddings / predictions.bias on both
    sides (the source copies are checked to be equal to what they are tied to).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
from collections import Counter
from pathlib import Path

from ..errors import VlpeftError
from ..io import file_sha256, read_json, write_json

DEFAULT_PROCESSOR = "Salesforce/blip-image-captioning-base"
DEFAULT_OUT = "checkpoints/blip-base-pretrained"
README_URL = "https://github.com/salesforce/BLIP#pre-trained-checkpoints"
CHECKPOINT_URLS = {  # BLIP's README, "Pre-trained checkpoints" table
    "model_base.pth": "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base.pth",
    "model_base_capfilt_large.pth":
        "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_capfilt_large.pth",
    "model_base_14M.pth": "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_14M.pth",
    "model_large.pth": "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_large.pth",
}
OUTPUTS = {  # output folder (task) → (transformers class name, source prefixes it takes)
    "caption": ("BlipForConditionalGeneration", ("visual_encoder", "text_decoder")),
    "vqa": ("BlipForQuestionAnswering", ("visual_encoder", "text_encoder", "text_decoder")),
}
VIT_LAYER_NORM_EPS = 1e-6    # BLIP models/vit.py: partial(nn.LayerNorm, eps=1e-6) (transformers' default: 1e-5)
BERT_LAYER_NORM_EPS = 1e-12  # BLIP configs/med_config.json
HEAD_DIM = 64                # BLIP-base: 768 wide, 12 heads (ViT and BERT); ViT-L: 1024 wide, 16 heads
RECORD = "conversion.json"
PARTIAL = ".conversion-in-progress"
FORMAT = 1


class ConvertError(VlpeftError, ValueError):
    """A conversion that cannot be done as asked; the message says why and what to pass instead."""


# ---------------------------------------------------------------------------------------------------------
# The key mapping: (source template, target template); {n} a layer number, {p} weight|bias, {rest} anything
_VISION = (
    ("cls_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding"),
    ("patch_embed.proj.{p}", "embeddings.patch_embedding.{p}"),
    ("blocks.{n}.norm1.{p}", "encoder.layers.{n}.layer_norm1.{p}"),
    ("blocks.{n}.attn.qkv.{p}", "encoder.layers.{n}.self_attn.qkv.{p}"),
    ("blocks.{n}.attn.proj.{p}", "encoder.layers.{n}.self_attn.projection.{p}"),
    ("blocks.{n}.norm2.{p}", "encoder.layers.{n}.layer_norm2.{p}"),
    ("blocks.{n}.mlp.fc1.{p}", "encoder.layers.{n}.mlp.fc1.{p}"),
    ("blocks.{n}.mlp.fc2.{p}", "encoder.layers.{n}.mlp.fc2.{p}"),
    ("norm.{p}", "post_layernorm.{p}"),
)
RULES = tuple(("visual_encoder." + s, "vision_model." + t) for s, t in _VISION) + (
    ("text_encoder.{rest}", "text_encoder.{rest}"),
    ("text_decoder.{rest}", "text_decoder.{rest}"),
)
NOT_WEIGHTS = re.compile(r"(^|\.)embeddings\.position_ids$")  # a BERT buffer (arange) transformers rebuilds
_FIELDS = {"n": r"\d+", "p": r"weight|bias", "rest": r".+"}


def _compile(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, …
    return re.compile("".join(re.escape(x) if i % 2 == 0 else f"(?P<{x}>{_FIELDS[x]})" for i, x in enumerate(parts)))


_FORWARD = [(_compile(s), t) for s, t in RULES]
_BACKWARD = [(_compile(t), s) for s, t in RULES]


def _apply(key: str, table) -> str | None:
    if NOT_WEIGHTS.search(key):
        return None
    for pattern, template in table:
        m = pattern.fullmatch(key)
        if m:
            return template.format(**m.groupdict())
    return None


def rename_key(source_key: str) -> str | None:
    """The transformers name of an original-BLIP key, or None for a key no BLIP caption/VQA model holds."""
    return _apply(source_key, _FORWARD)


def source_key(target_key: str) -> str | None:
    """The original-BLIP name a transformers key is filled from (the inverse of `rename_key`)."""
    return _apply(target_key, _BACKWARD)


# ---------------------------------------------------------------------------------------------------------
# Reading the source
def load_original_state_dict(src: str | Path, allow_pickle: bool = False) -> tuple[dict, list[str]]:
    """The `"model"` state dict of an original BLIP checkpoint (and the pickle's top-level keys)."""
    import torch
    try:
        obj = torch.load(src, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if not allow_pickle and "Unsupported global" in str(e):  # a real pickle with Python objects in it
            raise ConvertError(f"{src} holds Python objects besides tensors ({first}); if you trust its source, pass "
                               f"--allow-pickle (it then runs the pickle's code)") from None
        raise ConvertError(f"cannot read {src} as a torch checkpoint ({type(e).__name__}: {first}); is it BLIP's "
                           f"model_base.pth? ({CHECKPOINT_URLS['model_base.pth']})") from None
    top = sorted(map(str, obj)) if isinstance(obj, dict) else []
    sd = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConvertError(f"{src} is not an original BLIP checkpoint: expected a dict with a 'model' state dict "
                           f"of tensors (as in model_base.pth); found top-level keys {top[:10]}")
    if all(k.startswith("module.") for k in sd):  # saved from a DistributedDataParallel wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, top


def _need(sd: dict, key: str):
    if key not in sd:
        raise ConvertError(f"required source key {key!r} is missing from the checkpoint; it is needed to infer "
                           f"the model's shape. Is this an original BLIP pre-training checkpoint (model_base.pth)?")
    return sd[key]


def _layers(sd: dict, prefix: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if found and found != set(range(len(found))):
        raise ConvertError(f"layers under {prefix!r} are not numbered 0..{len(found) - 1}: {sorted(found)}")
    return len(found)


def _heads(width: int, given: int | None, which: str) -> int:
    if given is None:
        if width % HEAD_DIM:
            raise ConvertError(f"cannot infer the {which} attention heads of a {width}-wide model (BLIP uses "
                               f"{HEAD_DIM}-wide heads: 12 for 768, 16 for 1024); pass --{which}-heads")
        given = width // HEAD_DIM
    if given <= 0 or width % given:
        raise ConvertError(f"{which} width {width} is not divisible by {given} heads")
    return given


def infer_config(sd: dict, vision_heads: int | None = None, text_heads: int | None = None) -> dict:
    """Sizes read off the weights (heads: BLIP's 64-wide heads unless given). Plain values, for the record."""
    pos = _need(sd, "visual_encoder.pos_embed")
    patch = _need(sd, "visual_encoder.patch_embed.proj.weight")
    width, positions = int(pos.shape[-1]), int(pos.shape[-2])
    if pos.dim() != 3 or pos.shape[0] != 1 or patch.dim() != 4 or patch.shape[-1] != patch.shape[-2]:
        raise ConvertError(f"unexpected ViT shapes: pos_embed {tuple(pos.shape)}, patch_embed.proj.weight "
                           f"{tuple(patch.shape)} (expected (1, N+1, d) and (d, 3, p, p))")
    patch_size, grid = int(patch.shape[-1]), math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise ConvertError(f"pos_embed has {positions} rows: not 1 + a square number of patches")
    vision_layers = _layers(sd, "visual_encoder.blocks.")
    qkv = _need(sd, "visual_encoder.blocks.0.attn.qkv.weight")
    if tuple(qkv.shape) != (3 * width, width):
        raise ConvertError(f"visual_encoder.blocks.0.attn.qkv.weight is {tuple(qkv.shape)}, expected a fused "
                           f"({3 * width}, {width}) q|k|v projection")
    vision = dict(hidden_size=width, num_hidden_layers=vision_layers,
                  num_attention_heads=_heads(width, vision_heads, "vision"),
                  intermediate_size=int(_need(sd, "visual_encoder.blocks.0.mlp.fc1.weight").shape[0]),
                  patch_size=patch_size, image_size=grid * patch_size, hidden_act="gelu",
                  layer_norm_eps=VIT_LAYER_NORM_EPS)

    words = _need(sd, "text_decoder.bert.embeddings.word_embeddings.weight")
    vocab, hidden = (int(x) for x in words.shape)
    layers = _layers(sd, "text_decoder.bert.encoder.layer.")
    encoder_layers = _layers(sd, "text_encoder.encoder.layer.")
    if encoder_layers and encoder_layers != layers:
        raise ConvertError(f"text encoder has {encoder_layers} layers, text decoder {layers}: transformers' BLIP "
                           f"uses one text config for both")
    enc_words = sd.get("text_encoder.embeddings.word_embeddings.weight")
    if enc_words is not None and tuple(enc_words.shape) != (vocab, hidden):
        raise ConvertError(f"text encoder embeddings {tuple(enc_words.shape)} differ from the decoder's "
                           f"{(vocab, hidden)}")
    cross = int(_need(sd, "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight").shape[1])
    if cross != width:
        raise ConvertError(f"the text decoder cross-attends to {cross}-wide states but the ViT is {width} wide; "
                           f"transformers' BLIP sets the cross-attention width to the vision width")
    dec = "text_decoder.bert."
    text = dict(vocab_size=vocab, hidden_size=hidden, encoder_hidden_size=cross, num_hidden_layers=layers,
                num_attention_heads=_heads(hidden, text_heads, "text"),
                intermediate_size=int(_need(sd, dec + "encoder.layer.0.intermediate.dense.weight").shape[0]),
                max_position_embeddings=int(_need(sd, dec + "embeddings.position_embeddings.weight").shape[0]),
                hidden_act="gelu", layer_norm_eps=BERT_LAYER_NORM_EPS)
    extra = {}
    if "vision_proj.weight" in sd:  # BLIP's ITC embedding width (256); only BlipForImageTextRetrieval uses it
        extra["image_text_hidden_size"] = int(sd["vision_proj.weight"].shape[0])
    return {"vision": vision, "text": text, **extra}


def interpolate_pos_embed(pos, new_grid: int):
    """BLIP's `interpolate_pos_embed` (models/vit.py): the class row kept, the patch grid resized bicubically."""
    import torch
    import torch.nn.functional as F
    old_grid, dim = math.isqrt(pos.shape[1] - 1), pos.shape[-1]
    if old_grid == new_grid:
        return pos
    grid = pos[:, 1:].reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).flatten(1, 2).to(pos.dtype)], dim=1)


# ---------------------------------------------------------------------------------------------------------
# Where the source came from, and whether it was fine-tuned on VQA
FINE_TUNED_ON_VQA = tuple(re.compile(p) for p in (  # names of BLIP checkpoints fine-tuned on VQA
    r"blip[-_]vqa",                                   # Salesforce/blip-vqa-base, blip-vqa-capfilt-large
    r"vqa[-_](base|large|capfilt)(?![a-z])",          # vqa-base, vqa-capfilt…
    r"model_(base_|large_)?vqa",                      # BLIP's model_vqa.pth, model_base_vqa_capfilt_large.pth
    r"fine-?tuned[-_]?(on[-_]?)?vqa",
))
_PRETRAIN_ONLY = ("visual_encoder_m.", "text_encoder_m.", "itm_head.", "image_queue", "text_queue", "temp")


def _vqa_name(text: str) -> str | None:
    low = text.lower().replace("\\", "/")
    for pattern in FINE_TUNED_ON_VQA:
        m = pattern.search(low)
        if m:
            return m.group(0)
    return None


def source_kind(sd: dict) -> str:
    """'pre-training' (BLIP_Pretrain's state dict), 'vqa-finetuned' (exactly BLIP_VQA's parts) or 'other'."""
    prefixes = {k.split(".")[0] for k in sd}
    if any(k.startswith(_PRETRAIN_ONLY) for k in sd) and {"visual_encoder", "text_encoder",
                                                          "text_decoder"} <= prefixes:
        return "pre-training"
    if prefixes == {"visual_encoder", "text_encoder", "text_decoder"}:
        return "vqa-finetuned"
    return "other"


def looks_vqa_finetuned(model_path: str) -> str | None:
    """A reason string if `model_path` (hub name, checkpoint file or directory) looks fine-tuned on VQA: its name
    (blip-vqa…, vqa-base, vqa-capfilt, BLIP's model_vqa.pth / model_base_vqa_*.pth), a `conversion.json` beside
    it or one level up (from `convert_blip`), or its config.json (`finetuned_on_vqa`, `_name_or_path`). Else None."""
    text = str(model_path)
    hit = _vqa_name(text)
    if hit:
        return f"{text!r}: the name contains {hit!r}, a BLIP checkpoint fine-tuned on VQA"
    path = Path(text).expanduser()
    if not path.is_dir():
        return None
    for record in (path / RECORD, path.parent / RECORD):
        rec = _read_json(record)
        if rec is None:
            continue
        if rec.get("finetuned_on_vqa"):
            return f"{record}: {rec.get('finetuned_reason') or 'converted from a checkpoint fine-tuned on VQA'}"
        hit = _vqa_name(str(rec.get("source", {}).get("name", "")))
        if hit:
            return f"{record}: converted from {rec['source']['name']!r}, whose name contains {hit!r}"
    cfg = _read_json(path / "config.json") or {}
    if cfg.get("finetuned_on_vqa"):
        return f"{path / 'config.json'}: finetuned_on_vqa is set"
    for field in ("_name_or_path", "name_or_path"):
        hit = _vqa_name(str(cfg.get(field, "")))
        if hit:
            return f"{path / 'config.json'}: {field} {cfg[field]!r} contains {hit!r}"
    return None


def _read_json(path: Path) -> dict | None:
    """A JSON object, or None for a file that is missing, unreadable or not an object (a best-effort look)."""
    try:
        obj = read_json(path, missing_ok=True)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ---------------------------------------------------------------------------------------------------------
# Filling one transformers model
def _group(keys) -> dict[str, int]:
    """Unmapped source keys by prefix: a top-level part none of the outputs takes → 'part.*', else the key."""
    used = {p for _, prefixes in OUTPUTS.values() for p in prefixes}
    counts = Counter()
    for k in keys:
        head = k.split(".")[0]
        counts[k if head in used else (head + ".*" if "." in k else head)] += 1
    return dict(sorted(counts.items()))


def _fill(model, task: str, sd: dict, pos_embed) -> dict:
    """Copy every source tensor the task takes into `model`; fail naming any target weight left unfilled."""
    import torch
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


# ---------------------------------------------------------------------------------------------------------
# The output folder: fresh, ours (complete or partial), or someone else's
def _state(out: Path) -> str:
    if not out.exists():
        return "fresh"
    if not out.is_dir():
        return "foreign"
    if (out / RECORD).exists():
        return "complete"
    if (out / PARTIAL).exists():
        return "partial"
    return "fresh" if not any(out.iterdir()) else "foreign"


def _clear(out: Path) -> None:
    """Remove only what a conversion writes."""
    for task in OUTPUTS:
        if (out / task).is_dir():
            shutil.rmtree(out / task)
    for name in (RECORD, RECORD + ".tmp", *(p.name for p in out.glob(f".{RECORD}.*.tmp"))):
        (out / name).unlink(missing_ok=True)


def _source_info(src: Path, sha: str | None = None) -> dict:
    st = src.stat()
    return {"path": str(src), "name": src.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": sha or file_sha256(src), "published_at": CHECKPOINT_URLS.get(src.name)}


def _same_source(rec: dict, src: Path) -> tuple[bool, str | None]:
    """Is `rec` a conversion of `src`? Path+size+mtime equal is trusted; otherwise the file is hashed."""
    old = rec.get("source", {})
    st = src.stat()
    if (old.get("path"), old.get("size"), old.get("mtime_ns")) == (str(src), st.st_size, st.st_mtime_ns):
        return bool(old.get("sha256")), old.get("sha256")
    sha = file_sha256(src)
    return sha == old.get("sha256"), sha


# ---------------------------------------------------------------------------------------------------------
def convert_blip(src: str | Path, out: str | Path, processor: str = DEFAULT_PROCESSOR, image_size: int | None = None,
                 force: bool = False, vision_heads: int | None = None, text_heads: int | None = None,
                 allow_pickle: bool = False) -> Path:
    """Convert an original BLIP pre-training checkpoint into `out/caption`, `out/vqa` and `out/conversion.json`.

    `processor`: a saved BlipProcessor (directory, or a hub name in the local HF cache) that gives the tokenizer
    and image processor; its vocabulary must match the checkpoint's. `image_size`: default the checkpoint's own
    (from pos_embed: 224 for model_base.pth); another size resizes the position embeddings as BLIP does when it
    fine-tunes at 384/480. A folder that is not a previous conversion is never touched; a complete conversion
    of the same source with the same options is returned at once; `force` redoes one of ours."""
    src, out = Path(src).expanduser().resolve(), Path(out).expanduser()
    if not src.is_file():
        raise ConvertError(f"source checkpoint {src} does not exist; download it from "
                           f"{CHECKPOINT_URLS['model_base.pth']} (BLIP's README: {README_URL})")
    local_processor = Path(processor).expanduser()
    options = {"processor": str(local_processor.resolve()) if local_processor.is_dir() else str(processor),
               "image_size": image_size, "vision_heads": vision_heads, "text_heads": text_heads}
    done, sha = _claim_output(src, out, options, force)             # 1. the output folder: ours, or refused
    if done:
        return out
    proc = load_blip_processor(processor)                            # 2. what to convert
    sd, top = load_original_state_dict(src, allow_pickle)
    config, shapes, pos_embed, notes = _target_config(sd, proc, image_size, vision_heads, text_heads)
    out.mkdir(parents=True, exist_ok=True)                           # 3. both task folders, each read back
    (out / PARTIAL).write_text(json.dumps({"source": str(src)}))     # first: a crash leaves a folder known as ours
    _clear(out)
    outputs, used = {}, set()
    for task in OUTPUTS:
        outputs[task], task_used = _write_task(task, config, sd, pos_embed, proc, out)
        used |= task_used
    kind, name_hit = source_kind(sd), _vqa_name(src.name)            # 4. the record, written last
    reason = (f"the file name contains {name_hit!r}" if name_hit else
              "its keys are exactly BLIP_VQA's (visual_encoder, text_encoder, text_decoder; no pre-training heads)"
              if kind == "vqa-finetuned" else None)
    tok, text = proc.tokenizer, shapes["text"]
    record = {
        "format": FORMAT, "tool": "vlpeft.blip.convert",
        "source": {**_source_info(src, sha), "checkpoint_keys": top, "tensors": len(sd)},
        "source_kind": kind, "finetuned_on_vqa": reason is not None, "finetuned_reason": reason,
        "options": options, "config": shapes,
        "tokens": {k: tok.convert_ids_to_tokens(text[k]) for k in ("pad_token_id", "bos_token_id", "sep_token_id",
                                                                    "eos_token_id")},
        "outputs": outputs,
        "unmapped_source": _group([k for k in sd if k not in used]),
        "notes": notes,
    }
    write_json(out / RECORD, record, indent=2)  # written last, atomically: marks a complete conversion
    (out / PARTIAL).unlink(missing_ok=True)
    return out


def _claim_output(src: Path, out: Path, options: dict, force: bool) -> tuple[bool, str | None]:
    """(done, source sha256 if it was hashed): a complete conversion of the same source and options is done; a
    folder that is not ours, or ours for another source or options without `force`, is refused."""
    state, sha = _state(out), None
    if state == "foreign":
        raise ConvertError(f"output folder {out} exists and is not a conversion made by `vlpeft convert-blip` "
                           f"(no {RECORD}); refusing to write into it. Choose a new or empty folder, or remove it.")
    if state == "complete":
        rec = _read_json(out / RECORD) or {}
        same, sha = _same_source(rec, src)
        if same and rec.get("options") == options and not force:
            return True, sha
        if not force:
            why = ("the same source with other options" if same else
                   f"another source ({rec.get('source', {}).get('path')})")
            raise ConvertError(f"output folder {out} already holds a conversion of {why}; pass --force to replace "
                               f"it, or choose another --out")
    return False, sha


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


def _target_config(sd: dict, proc, image_size, vision_heads, text_heads):
    """The transformers BlipConfig of the source (shapes read off its weights, the special tokens from the
    processor's checked tokenizer), its position embeddings at the asked image size, and notes for the record."""
    from transformers import BlipConfig
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


def _write_task(task: str, config, sd: dict, pos_embed, proc, out: Path) -> tuple[dict, set]:
    """One task folder: filled from the source, saved, and read back through `load_model` tensor by tensor (the
    contract: what a run loads is what was converted). Returns its record and the source keys it used."""
    import torch
    from .models import TASK_CLASSES, load_model, save_model
    torch.manual_seed(0)
    model = TASK_CLASSES[task](config).eval()
    report = _fill(model, task, sd, pos_embed)
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


def load_blip_processor(path: str):
    """A BlipProcessor from a folder saved with `save_pretrained` or a hub name in the local HF cache (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BlipProcessor
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


# ---------------------------------------------------------------------------------------------------------
# Command line: `vlpeft convert-blip SRC --out DIR …` (wired by vlpeft.cli)
DESCRIPTION = f"""\
Convert BLIP's original pre-training checkpoint into transformers checkpoints for the study.

Download the pre-trained "BLIP w/ ViT-B" checkpoint published in BLIP's README ({README_URL}):
  {CHECKPOINT_URLS['model_base.pth']}
  (or, CapFilt-L: {CHECKPOINT_URLS['model_base_capfilt_large.pth']})

It writes OUT/caption (BlipForConditionalGeneration), OUT/vqa (BlipForQuestionAnswering, its answer decoder
initialised from the pre-trained text decoder, as BLIP's blip_vqa does) and OUT/conversion.json. With the
default --out this is what the `paper` preset's model_path expects: {DEFAULT_OUT}/{{task}}.
Nothing is downloaded: the tokenizer and image processor come from --processor."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command's arguments; also its --help description (where to download the checkpoint) if none is set."""
    if not parser.description:
        parser.description, parser.formatter_class = DESCRIPTION, argparse.RawDescriptionHelpFormatter
    parser.add_argument("src", help="the original checkpoint, e.g. model_base.pth")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--processor", default=DEFAULT_PROCESSOR,
                        help=f"a saved BlipProcessor folder or a cached hub name (default: {DEFAULT_PROCESSOR})")
    parser.add_argument("--image-size", type=int, help="input size (default: the checkpoint's, 224 for "
                        "model_base.pth); another size interpolates the position embeddings")
    parser.add_argument("--vision-heads", type=int, help="ViT attention heads (default: width / 64)")
    parser.add_argument("--text-heads", type=int, help="BERT attention heads (default: width / 64)")
    parser.add_argument("--force", action="store_true", help="redo a previous conversion in OUT")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load a checkpoint that holds Python objects besides tensors (trusted files only)")
    return parser


def main_cmd(args: argparse.Namespace) -> Path:
    """Run a parsed `convert-blip` command; a ConvertError propagates (vlpeft.cli prints user errors)."""
    out = convert_blip(args.src, args.out, processor=args.processor, image_size=args.image_size,
                       force=args.force, vision_heads=args.vision_heads, text_heads=args.text_heads,
                       allow_pickle=args.allow_pickle)
    rec = json.loads((out / RECORD).read_text())
    cfg = rec["config"]
    print(f"converted {rec['source']['name']} (sha256 {rec['source']['sha256'][:12]}…) → {out}/{{caption,vqa}}")
    print(f"  vision: {cfg['vision']['num_hidden_layers']} layers × {cfg['vision']['hidden_size']}, "
          f"{cfg['vision']['image_size']} px / patch {cfg['vision']['patch_size']}; text: "
          f"{cfg['text']['num_hidden_layers']} layers × {cfg['text']['hidden_size']}, "
          f"vocab {cfg['text']['vocab_size']}")
    print("  not used: " + ", ".join(f"{k}: {n} keys" for k, n in rec["unmapped_source"].items()))
    if rec.get("finetuned_on_vqa"):
        print(f"  WARNING: the source looks fine-tuned on VQA ({rec['finetuned_reason']})")
    return out
