"""BLIP's ORIGINAL pre-training checkpoint: where it is published (and the hub processor that goes with it),
reading it, and the model sizes its weights say.

Salesforce published BLIP's pre-trained weights only in the original code base's layout
(github.com/salesforce/BLIP, README "Pre-trained checkpoints", "BLIP w/ ViT-B" column): `CHECKPOINT_URLS`.
Each is a torch pickle `{"model": state_dict, ...}` of `BLIP_Pretrain` (models/blip_pretrain.py): the ViT
`visual_encoder.*` (models/vit.py), the BERT text encoder `text_encoder.*` and the LM-head decoder
`text_decoder.*` (models/med.py), plus what only pre-training needs (momentum copies `*_m.*`, `vision_proj`,
`text_proj`, `itm_head`, `temp`, the queues). The hub checkpoints `Salesforce/blip-image-captioning-base` and
`Salesforce/blip-vqa-base` are *fine-tuned* (COCO captions, VQAv2); `vlpeft.blip.convert` makes the pre-trained
start from this file.

torch is imported inside the two functions that need it: `vlpeft convert-blip --help` reads the URLs here.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import VlpeftError

README_URL = "https://github.com/salesforce/BLIP#pre-trained-checkpoints"
DEFAULT_PROCESSOR = "Salesforce/blip-image-captioning-base"  # BLIP's tokenizer and image processor, as on the hub
CHECKPOINT_URLS = {  # BLIP's README, "Pre-trained checkpoints" table
    "model_base.pth": "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base.pth",
    "model_base_capfilt_large.pth":
        "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_capfilt_large.pth",
    "model_base_14M.pth": "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_14M.pth",
    "model_large.pth": "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_large.pth",
}
VIT_LAYER_NORM_EPS = 1e-6    # BLIP models/vit.py: partial(nn.LayerNorm, eps=1e-6) (transformers' default: 1e-5)
BERT_LAYER_NORM_EPS = 1e-12  # BLIP configs/med_config.json
HEAD_DIM = 64                # BLIP-base: 768 wide, 12 heads (ViT and BERT); ViT-L: 1024 wide, 16 heads


class ConvertError(VlpeftError, ValueError):
    """A conversion that cannot be done as asked; the message says why and what to pass instead."""


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


# ---------------------------------------------------------------------------------------------------------
# The sizes the weights say
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
