"""Load BLIP captioning / VQA models and their processor — one path for real checkpoints and the embedded one.

Real world: `Salesforce/blip-image-captioning-base` and `Salesforce/blip-vqa-base` (or any BLIP checkpoint
directory) are loaded with `from_pretrained`, exactly as below. Embedded world: a tiny BLIP built from
`transformers`' own BLIP classes (`tiny_blip_config`), with a word-level tokenizer for the shapes-world
vocabulary laid out like BLIP's BERT tokenizer ([PAD]=0, [CLS], [SEP], [DEC] as bos, [ENC]), pre-trained
by `vlpeft.worlds.pretrain` and saved with `save_pretrained` — so it is then loaded by the same two functions.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForQuestionAnswering,
    BlipProcessor,
)
from transformers.utils import logging as hf_logging

from ..config import TinySpec
from ..errors import ModelError
from ..io import write_json
from .checkpoints import check_path as _check_path

# Nothing downloads at run or test time (vlpeft/__init__.py sets HF_HUB_OFFLINE before transformers is imported;
# every from_pretrained here also passes local_files_only).
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
# One loading path for both worlds. Each check fails before any work, naming the file and what to do.
TASK_TOWERS = {"caption": ("vision_model", "text_decoder"), "vqa": ("vision_model", "text_encoder", "text_decoder")}
BLIP_SPECIAL = {"pad": "[PAD]", "sep": "[SEP]", "bos": "[DEC]"}   # + [ENC]: BLIP's tokenizer (models/blip.py)


def check_tokenizer(tokenizer, text_config: dict, where: str) -> None:
    """The tokenizer the model was trained with: its size is the model's vocabulary, and BLIP's special tokens
    ([PAD], [SEP], [DEC] as bos, [ENC]) sit at the rows the config names — else a run would train on the wrong
    rows (a tokenizer without them, or with [DEC] and [ENC] swapped)."""
    problems = []
    if len(tokenizer) != text_config.get("vocab_size", len(tokenizer)):
        problems.append(f"{len(tokenizer)} tokens for a {text_config['vocab_size']}-row vocabulary")
    for role, token in BLIP_SPECIAL.items():
        got = getattr(tokenizer, f"{role}_token", None)
        want = text_config.get(f"{role}_token_id")
        if got != token or (want is not None and getattr(tokenizer, f"{role}_token_id") != want):
            problems.append(f"{role} is {got!r} (id {getattr(tokenizer, f'{role}_token_id', None)}), BLIP's is "
                            f"{token!r}" + (f" at row {want}" if want is not None else ""))
    enc = tokenizer.convert_tokens_to_ids("[ENC]")
    if enc is None or enc == tokenizer.unk_token_id:
        problems.append("no [ENC] token (BLIP's image-grounded text encoder starts with it)")
    if problems:
        raise ModelError(f"{where}: the tokenizer does not match the model: {'; '.join(problems)}. The folder needs "
                         f"BLIP's tokenizer files (save the processor with save_pretrained, or re-run `vlpeft "
                         f"convert-blip --processor …` with BLIP's processor)")


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
    """The checkpoint's BlipProcessor, its tokenizer checked against the model's config (`check_tokenizer`)."""
    where, cfg = _check_path(path)
    try:
        processor = BlipProcessor.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise ModelError(f"cannot load a BLIP processor from {where!r}: {str(e).splitlines()[0]}") from None
    check_tokenizer(processor.tokenizer, cfg.get("text_config") or {}, where)
    return processor


def load_model(task: str, path: str | Path, dtype: torch.dtype | None = None):
    """`BlipForConditionalGeneration` (task 'caption') or `BlipForQuestionAnswering` ('vqa') from a checkpoint
    that holds every weight the task needs (transformers would initialise a missing tower at random, silently)."""
    if task not in TASK_CLASSES:
        raise ModelError(f"unknown task {task!r}; choose one of {sorted(TASK_CLASSES)}")
    where, _ = _check_path(path)
    try:
        model, info = TASK_CLASSES[task].from_pretrained(where, dtype=dtype, local_files_only=True,
                                                         output_loading_info=True)
    except OSError as e:
        raise ModelError(f"cannot load a BLIP {task} model from {where!r}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - safetensors' own errors (a truncated file) name no file
        if type(e).__name__ not in ("SafetensorError", "HeaderTooLarge", "EOFError", "UnpicklingError"):
            raise
        files = sorted(p.name for p in Path(where).glob("*.safetensors")) if Path(where).is_dir() else []
        raise ModelError(f"{where}/{files[0] if len(files) == 1 else '*.safetensors'}: the weights file is "
                         f"corrupt or truncated ({type(e).__name__}: {e}); re-save or re-convert the "
                         f"checkpoint") from None
    missing = info.get("missing_keys") or []
    if missing:
        groups = sorted({k.split(".")[0] for k in missing})
        raise ModelError(f"{where}: no weights for {', '.join(g + '.*' for g in groups)} ({len(missing)} tensors "
                         f"would start random). A {task} run needs {', '.join(t + '.*' for t in TASK_TOWERS[task])}"
                         + (" — a caption checkpoint given to --task vqa?" if "text_encoder" in groups else "")
                         + " `vlpeft convert-blip` writes both task folders.")
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
        write_json(out / "card.json", card)
    return out


def random_blip(task: str, tokenizer, spec: TinySpec = TinySpec(), seed: int = 0):
    """A randomly initialised BLIP of the embedded shape (tests, and the start of pre-training)."""
    torch.manual_seed(seed)
    return honour_cross_attention_masks(TASK_CLASSES[task](tiny_blip_config(tokenizer, spec))).eval()
