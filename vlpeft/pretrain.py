"""Pre-train the embedded tiny BLIP on the shapes-world image–caption corpus (kept apart from models.py so
each file reads top to bottom).

In the spirit of BLIP/mPLUG, three objectives share one vision encoder, text encoder and text decoder:

1. LM   — captioning: the decoder, cross-attending to the image, continues the prompt `a picture of`
          (exactly `BlipForConditionalGeneration`'s path; this is what makes captioning *consistent*).
2. ITM  — image–text matching: the text encoder, cross-attending to the image, tells a matching caption
          from a caption of another image in the batch (trains the text encoder on image–text pairs).
3. ELM  — encoder-conditioned LM: the decoder continues from the text encoder's states for `a picture of`
          + image (the path `BlipForQuestionAnswering` uses), so the VQA model starts with a pre-trained
          encoder→decoder route — yet it has never seen a question.

The result is two `save_pretrained` directories, `<out>/caption` and `<out>/vqa`, loaded later by
`vlpeft.models.load_model` exactly like real BLIP checkpoints, plus `<out>/card.json`: how it was made
(config, corpus size, steps, seed, final losses, wall time) and the zero-shot metrics.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import BlipForConditionalGeneration

from . import world
from .data import (CaptionEval, CaptionTrain, Collator, ImageCache, Paths, VqaSet, load_karpathy, load_vqa)
from .evaluate import evaluate
from .models import TinySpec, build_processor, build_tokenizer, random_blip, save_model


@dataclass
class PretrainConfig:
    data_root: str = "data/shapes"
    out: str = "checkpoints/embedded"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    zero_shot_eval: int = 150       # test images / questions for the zero-shot numbers (0: skip)
    spec: TinySpec = dataclasses.field(default_factory=TinySpec)


def _complete(out: Path, cfg: PretrainConfig) -> bool:
    card = out / "card.json"
    return card.exists() and json.loads(card.read_text()).get("config") == json.loads(json.dumps(
        dataclasses.asdict(cfg), default=str))


def pretrain(cfg: PretrainConfig, progress: bool = True, force: bool = False) -> Path:
    """Pre-train and save; a second call with the same config returns the cached checkpoint at once."""
    out = Path(cfg.out)
    if not force and _complete(out, cfg):
        return out
    torch.manual_seed(cfg.seed)
    paths = Paths(Path(cfg.data_root))
    tokenizer = build_tokenizer(world.vocabulary())
    processor = build_processor(tokenizer, cfg.spec.image_size)
    vqa = random_blip("vqa", tokenizer, cfg.spec, cfg.seed).train()  # holds all three towers
    itm_head = torch.nn.Linear(cfg.spec.hidden, 2)

    corpus = load_karpathy(paths.pretrain, paths.images, "all")
    images = ImageCache(processor.image_processor)
    train = CaptionTrain(corpus, images)
    loader = torch.utils.data.DataLoader(
        train, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
        collate_fn=Collator(tokenizer, tokenizer.bos_token_id, "caption"),
        generator=torch.Generator().manual_seed(cfg.seed))
    params = list(vqa.parameters()) + list(itm_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    enc_id = tokenizer.convert_tokens_to_ids("[ENC]")
    prompt = tokenizer(["a picture of"], return_tensors="pt")

    t0, step, losses = time.time(), 0, {}
    bar = tqdm(total=cfg.steps, desc="pre-train", disable=not progress)
    while step < cfg.steps:
        for b in loader:
            if step >= cfg.steps:
                break
            losses = _losses(vqa, itm_head, b, enc_id, prompt)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update()
            bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
    bar.close()
    wall = time.time() - t0

    # split the pre-trained towers into the two task models, as BLIP's released checkpoints are
    vqa.eval()
    caption = BlipForConditionalGeneration(vqa.config).eval()
    missing = caption.load_state_dict(vqa.state_dict(), strict=False).missing_keys
    assert not missing, f"caption model keys not covered by pre-training: {missing}"
    card = {"config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
            "corpus_images": len(corpus), "corpus_pairs": len(train), "steps": step,
            "final_losses": {k: round(v.item(), 4) for k, v in losses.items()}, "wall_s": round(wall, 1),
            "params": sum(p.numel() for p in vqa.parameters()),
            "zero_shot": zero_shot(caption, vqa, tokenizer, paths, images, cfg.zero_shot_eval)}
    save_model(caption, processor, out / "caption")
    save_model(vqa, processor, out / "vqa")
    world.write_json(out / "card.json", card, indent=2)  # written last, atomically: marks a complete checkpoint
    return out


def _losses(vqa, itm_head, b, enc_id, prompt) -> dict[str, torch.Tensor]:
    px, ids, mask, labels = b["pixel_values"], b["input_ids"], b["attention_mask"], b["labels"]
    B = ids.shape[0]
    image = vqa.vision_model(pixel_values=px).last_hidden_state                       # (B, 1+N, d)
    # 1. LM: decoder over [DEC] a picture of <caption>, cross-attending to the image
    lm = vqa.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image, labels=labels).loss
    # 2. ITM: [ENC] + caption; negatives are the captions of the next image in the batch
    enc_ids = ids.clone()
    enc_ids[:, 0] = enc_id
    neg = torch.roll(torch.arange(B), 1)
    txt = torch.cat([enc_ids, enc_ids[neg]])                                          # (2B, T)
    txt_mask = torch.cat([mask, mask[neg]])
    fused = vqa.text_encoder(input_ids=txt, attention_mask=txt_mask,
                             encoder_hidden_states=torch.cat([image, image])).last_hidden_state
    target = torch.cat([torch.ones(B), torch.zeros(B)]).long()
    itm = F.cross_entropy(itm_head(fused[:, 0]), target)
    # 3. ELM: decoder continues from the text encoder's states for "a picture of" + image (the VQA route)
    p_ids, p_mask = prompt.input_ids.expand(B, -1), prompt.attention_mask.expand(B, -1)
    q = vqa.text_encoder(input_ids=p_ids, attention_mask=p_mask, encoder_hidden_states=image).last_hidden_state
    elm = vqa.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=q,
                           encoder_attention_mask=p_mask, labels=labels).loss
    return {"lm": lm, "itm": itm, "elm": elm}


def zero_shot(caption, vqa, tokenizer, paths: Paths, images: ImageCache, n: int) -> dict:
    """CIDEr on the caption test split and VQA accuracy on the VQA test split, before any fine-tuning."""
    if n <= 0:
        return {}
    cap_items = load_karpathy(paths.karpathy, paths.images, "test")[:n]
    vqa_items = load_vqa(paths, "test")[:n]
    mk = lambda ds, task: torch.utils.data.DataLoader(  # noqa: E731
        ds, batch_size=32, collate_fn=Collator(tokenizer, tokenizer.bos_token_id, task))
    cider, cap_preds = evaluate(caption, tokenizer, "caption", mk(CaptionEval(cap_items, images), "caption"),
                                cap_items)
    acc, vqa_preds = evaluate(vqa, tokenizer, "vqa", mk(VqaSet(vqa_items, images), "vqa"), vqa_items)
    first = cap_items[0]
    return {"caption_cider": round(cider, 4), "vqa_accuracy": round(acc, 4), "n": n,
            "example_caption": {"prediction": cap_preds[first.image_id], "references": list(first.captions)},
            "example_answer": {"question": vqa_items[0].question, "prediction": vqa_preds[vqa_items[0].question_id],
                               "answers": list(vqa_items[0].answers)}}
