"""Load BLIP captioning / VQA models and their processor — one path for real checkpoints and the embedded one.

Real world: `Salesforce/blip-image-captioning-base` and `Salesforce/blip-vqa-base` (or any BLIP checkpoint
directory) are loaded with `from_pretrained`, exactly as below. Embedded world: a tiny BLIP built from
`transformers`' own BLIP classes (`tiny_blip_config`), with a word-level tokenizer for the shapes-world
vocabulary laid out like BLIP's BERT tokenizer ([PAD]=0, [CLS], [SEP], [DEC] as bos, [ENC]), pre-trained
by `vlpeft.pretrain` and saved with `save_pretrained` — so it is then loaded by the same two functions.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering,
                          BlipProcessor)
from transformers.utils import logging as hf_logging

from ..config import TinySpec
from ..errors import ModelError

# Nothing downloads at run or test time: a hub name only resolves if it is already in the local cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
hf_logging.disable_progress_bar()  # no "Loading weights" bars inside runs
hf_logging.set_verbosity_error()  # keep "some weights unused" chatter (expected: see load_*) out of notebooks

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]  # BLIP/BERT layout, [PAD]=0
TASK_CLASSES = {"caption": BlipForConditionalGeneration, "vqa": BlipForQuestionAnswering}


# ---------------------------------------------------------------------------------------------------------
# The embedded tiny BLIP: every model-size knob in one place
def build_tokenizer(words: list[str], max_len: int = 64) -> BertTokenizer:
    """A word-level BERT tokenizer over `words` with BLIP's special tokens ([DEC] is bos, [ENC] extra)."""
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + [w for w in words if w not in SPECIAL_TOKENS])}
    return BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", additional_special_tokens=["[ENC]"],
                         model_max_length=max_len)


def build_processor(tokenizer, image_size: int) -> BlipProcessor:
    try:  # the torchvision-free image processor; same normalisation as BLIP's default
        from transformers import BlipImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers
        from transformers import BlipImageProcessor as ImageProcessor
    return BlipProcessor(image_processor=ImageProcessor(size={"height": image_size, "width": image_size}),
                         tokenizer=tokenizer)


def tiny_blip_config(tokenizer, spec: TinySpec = TinySpec()) -> BlipConfig:
    vision = dict(hidden_size=spec.hidden, intermediate_size=spec.intermediate, num_hidden_layers=spec.layers,
                  num_attention_heads=spec.heads, image_size=spec.image_size, patch_size=spec.patch_size)
    text = dict(vocab_size=len(tokenizer), hidden_size=spec.hidden, encoder_hidden_size=spec.hidden,
                intermediate_size=spec.intermediate, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                max_position_embeddings=spec.max_positions, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
                eos_token_id=tokenizer.sep_token_id)
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=spec.hidden,
                      image_text_hidden_size=spec.hidden)


# ---------------------------------------------------------------------------------------------------------
# One loading path for both worlds
def _check_path(path: str | Path) -> str:
    """A checkpoint directory whose files look whole, or a hub name (resolved from the local cache only)."""
    local = Path(path).expanduser()
    if local.is_dir():
        config = local / "config.json"
        if not config.is_file():
            raise ModelError(f"{local}: no config.json — not a transformers checkpoint directory. Convert an "
                             f"original BLIP checkpoint with `vlpeft convert-blip`, or point at a save_pretrained "
                             f"directory.")
        try:
            json.loads(config.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelError(f"{config}: not valid JSON ({e}); the checkpoint is corrupt — re-save or re-convert "
                             f"it") from None
        return str(local)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)) and not str(path).startswith("."):
        return str(path)  # a hub name such as Salesforce/blip-image-captioning-base: local HF cache only
    raise ModelError(f"model path {str(path)!r} does not exist. For the embedded model run `vlpeft pretrain`; "
                     f"for real BLIP pass a checkpoint directory or a hub name already in the local HF cache.")


def honour_cross_attention_masks(model):
    """Make BLIP's cross-attention apply the mask it is given (transformers 5.x drops it).

    `BlipTextAttention.forward` hands the prepared encoder mask to its `BlipTextSelfAttention` as
    `attention_mask`, which then, for cross-attention, replaces it with its own (absent) `encoder_attention_mask`:
    every caller's `encoder_attention_mask` is silently ignored, so the answer decoder attends to the [PAD]
    states of a padded question, in training and in decoding, and an answer depends on its batch-mates. A
    forward pre-hook on each cross-attention passes the mask under the name the module reads; BLIP's code runs
    unchanged. `tests/test_tasks.py` checks the outcome (masked states are ignored; an answer is the same alone
    or in any batch), so a change in transformers fails loudly there."""
    def pass_mask(module, args, kwargs):
        if kwargs.get("encoder_hidden_states") is not None and kwargs.get("encoder_attention_mask") is None:
            kwargs["encoder_attention_mask"] = kwargs.get("attention_mask")
        return args, kwargs
    for name, module in model.named_modules():
        if name.endswith("crossattention.self"):
            module.register_forward_pre_hook(pass_mask, with_kwargs=True)
    return model


def load_processor(path: str | Path) -> BlipProcessor:
    path = _check_path(path)
    try:
        return BlipProcessor.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a BLIP processor from {path!r}: {str(e).splitlines()[0]}") from None


def load_model(task: str, path: str | Path, dtype: torch.dtype | None = None):
    """`BlipForConditionalGeneration` (task 'caption') or `BlipForQuestionAnswering` ('vqa') from a checkpoint."""
    if task not in TASK_CLASSES:
        raise ModelError(f"unknown task {task!r}; choose one of {sorted(TASK_CLASSES)}")
    path = _check_path(path)
    try:
        model = TASK_CLASSES[task].from_pretrained(path, dtype=dtype)
    except OSError as e:
        raise ModelError(f"cannot load a BLIP {task} model from {path!r}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - safetensors' own errors (a truncated file) name no file
        if type(e).__name__ not in ("SafetensorError", "HeaderTooLarge", "EOFError", "UnpicklingError"):
            raise
        files = sorted(p.name for p in Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
        raise ModelError(f"{path}/{files[0] if len(files) == 1 else '*.safetensors'}: the weights file is "
                         f"corrupt or truncated ({type(e).__name__}: {e}); re-save or re-convert the "
                         f"checkpoint") from None
    return honour_cross_attention_masks(model).eval()


def vision_states(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The vision tower's output (B, 1+N, d) for images of any size: the ViT's position table is interpolated
    whenever the image size differs from the checkpoint's (e.g. the paper's 256 px on BLIP-base's 384 px
    table; transformers would otherwise silently use the first rows), and used as is when it matches."""
    return model.vision_model(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state


def save_model(model, processor, out: str | Path, card: dict | None = None) -> Path:
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if card is not None:
        from ..io import write_json
        write_json(out / "card.json", card)
    return out


def random_blip(task: str, tokenizer, spec: TinySpec = TinySpec(), seed: int = 0):
    """A randomly initialised BLIP of the embedded shape (tests, and the start of pre-training)."""
    torch.manual_seed(seed)
    return honour_cross_attention_masks(TASK_CLASSES[task](tiny_blip_config(tokenizer, spec))).eval()
