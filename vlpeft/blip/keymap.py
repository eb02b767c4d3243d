"""Which original BLIP tensor fills which transformers one: the rename rules, both ways, and which source parts
each converted model takes.

Facts from BLIP's models/vit.py + models/med.py and transformers' BLIP modelling code; the former transformers
script `convert_blip_original_pytorch_to_hf.py` renames the same way:

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
    sides (the converter checks the source copies equal what they are tied to).
"""
from __future__ import annotations

import re

OUTPUTS = {  # output folder (task) → (transformers class name, source parts it takes)
    "caption": ("BlipForConditionalGeneration", ("visual_encoder", "text_decoder")),
    "vqa": ("BlipForQuestionAnswering", ("visual_encoder", "text_encoder", "text_decoder")),
}

# (source template, target template); {n} a layer number, {p} weight|bias, {rest} anything
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
