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
from .data import Paths, Pixels, load_karpathy
from .io import own, write_json
from .methods import count_parameters, unique_parameters
from .config import PretrainConfig
from .models import build_processor, build_tokenizer, random_blip, save_model, vision_states
from .tasks import CAPTION_PROMPT, TASKS, evaluate


def pretrain(cfg: PretrainConfig, progress: bool = True, force: bool = False) -> Path:
    """Pre-train and save; a second call with the same config returns the cached checkpoint at once. The out
    folder must be new, empty, or this config's own (`io.own`): nothing else is ever overwritten."""
    out = Path(cfg.out)
    if own(out, "pre-trained model", cfg.as_dict(), "card.json") and not force:
        return out
    torch.manual_seed(cfg.seed)
    paths = Paths(Path(cfg.data_root))
    tokenizer = build_tokenizer(world.vocabulary())
    processor = build_processor(tokenizer, cfg.spec.image_size)
    vqa = random_blip("vqa", tokenizer, cfg.spec, cfg.seed).train()  # holds all three towers
    itm_head = torch.nn.Linear(cfg.spec.hidden, 2)

    corpus = load_karpathy(paths.pretrain, paths.images, "all")
    images = Pixels(processor.image_processor)
    lm = TASKS["caption"]
    train = lm.train_examples(corpus, images)
    loader = torch.utils.data.DataLoader(
        train, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
        collate_fn=lambda b: lm.collate(tokenizer, b), generator=torch.Generator().manual_seed(cfg.seed))
    params = unique_parameters(vqa) + list(itm_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    enc_id = tokenizer.convert_tokens_to_ids("[ENC]")
    prompt = TASKS["vqa"].question_ids(tokenizer, [CAPTION_PROMPT])  # [ENC] a picture of, as a question

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
    card = {"config": cfg.as_dict(),
            "corpus_images": len(corpus), "corpus_pairs": len(train), "steps": step,
            "final_losses": {k: round(v.item(), 4) for k, v in losses.items()}, "wall_s": round(wall, 1),
            "params": count_parameters(vqa)[1],
            "zero_shot": zero_shot(caption, vqa, tokenizer, paths, images, cfg.zero_shot_eval)}
    save_model(caption, processor, out / "caption")
    save_model(vqa, processor, out / "vqa")
    write_json(out / "card.json", card)  # written last, atomically: marks a complete checkpoint
    return out


def _losses(vqa, itm_head, b, enc_id, prompt) -> dict[str, torch.Tensor]:
    ids, mask = b["input_ids"], b["attention_mask"]
    B = ids.shape[0]
    image = vision_states(vqa, b["pixel_values"])                                      # (B, 1+N, d)
    # 1. LM: the captioning forward — decoder over [DEC] a picture of <caption>, cross-attending to the image
    lm = TASKS["caption"].loss(vqa, b | {"image_embeds": image})
    # 2. ITM: [ENC] + caption; negatives are the captions of the next image in the batch
    enc_ids = ids.clone()
    enc_ids[:, 0] = enc_id
    neg = torch.roll(torch.arange(B), 1)
    fused = vqa.text_encoder(input_ids=torch.cat([enc_ids, enc_ids[neg]]), attention_mask=torch.cat([mask, mask[neg]]),
                             encoder_hidden_states=torch.cat([image, image])).last_hidden_state   # (2B, T, d)
    itm = F.cross_entropy(itm_head(fused[:, 0]), torch.cat([torch.ones(B), torch.zeros(B)]).long())
    # 3. ELM: the VQA forward with "a picture of" in the question's place and the caption as the answer, so
    #    the encoder → decoder route starts pre-trained — without a question ever being seen
    elm = TASKS["vqa"].loss(vqa, {"image_embeds": image, "input_ids": prompt["input_ids"].expand(B, -1),
                                  "attention_mask": prompt["attention_mask"].expand(B, -1), "decoder_input_ids": ids,
                                  "decoder_attention_mask": mask, "labels": b["labels"]})
    return {"lm": lm, "itm": itm, "elm": elm}


def zero_shot(caption, vqa, tokenizer, paths: Paths, images: Pixels, n: int) -> dict:
    """CIDEr on the caption test split and VQA accuracy on the VQA test split, before any fine-tuning."""
    if n <= 0:
        return {}
    out = {"n": n}
    for name, model in (("caption", caption), ("vqa", vqa)):
        task = TASKS[name]
        items = task.splits(paths)[2][:n]
        loader = torch.utils.data.DataLoader(task.eval_examples(items, images), batch_size=32,
                                             collate_fn=lambda b, t=task: t.collate(tokenizer, b))
        score, preds = evaluate(model, task, tokenizer, loader, items)
        first = items[0]
        out[task.metric] = round(score, 4)
        out[f"example_{name}"] = {"prediction": preds[loader.dataset.records[0][1]["id"]],
                                  "references": task.references(first)}
    return out
