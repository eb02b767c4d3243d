"""Generate captions / answers and score them: CIDEr on captions, VQA accuracy on generated answers.

Shared by pre-training (zero-shot numbers) and fine-tuning (validation curve and test metric).
Decoding settings (documented, as the paper does not give them): captions by beam search with
`CAPTION_BEAMS` beams and at most `CAPTION_MAX_TOKENS` new tokens (BLIP's own default is 3 beams);
answers greedily, at most `ANSWER_MAX_TOKENS` tokens — answers are *generated*, not ranked over a list.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from . import metrics
from .data import CAPTION_PROMPT

CAPTION_BEAMS = 3
CAPTION_MAX_TOKENS = 30
ANSWER_MAX_TOKENS = 6


def _strip_prompt(text: str) -> str:
    text = text.strip()
    return text[len(CAPTION_PROMPT):].strip() if text.startswith(CAPTION_PROMPT) else text


@torch.no_grad()
def predict(model, tokenizer, task: str, loader, device="cpu", progress: bool = False) -> dict:
    """id → generated caption (prompt removed) or answer, for every example of `loader`."""
    model.eval()
    out = {}
    for b in tqdm(loader, desc=f"generate {task}", disable=not progress, leave=False):
        kw = dict(pixel_values=b["pixel_values"].to(device), input_ids=b["input_ids"].to(device),
                  attention_mask=b["attention_mask"].to(device))
        if task == "caption":
            seqs = model.generate(**kw, num_beams=CAPTION_BEAMS, max_new_tokens=CAPTION_MAX_TOKENS)
        else:
            seqs = model.generate(**kw, num_beams=1, do_sample=False, max_new_tokens=ANSWER_MAX_TOKENS)
        texts = tokenizer.batch_decode(seqs, skip_special_tokens=True)
        for i, t in zip(b["ids"], texts):
            out[i] = _strip_prompt(t) if task == "caption" else t.strip()
    return out


def score(task: str, predictions: dict, items) -> float:
    """CIDEr (caption; 1.0 = "100 CIDEr") or VQA accuracy in [0, 1] against the items' references."""
    if task == "caption":
        return metrics.cider(predictions, {it.image_id: list(it.captions) for it in items})
    return metrics.vqa_accuracy(predictions, {it.question_id: list(it.answers) for it in items})


def evaluate(model, tokenizer, task: str, loader, items, device="cpu", progress: bool = False) -> tuple[float, dict]:
    preds = predict(model, tokenizer, task, loader, device, progress)
    return score(task, preds, items), preds
