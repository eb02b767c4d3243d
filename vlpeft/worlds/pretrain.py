"""Pre-train the embedded tiny BLIP on the shapes world, so that it starts where the paper's model starts.

One vision encoder, text encoder and text decoder share five objectives. Two *recipes* (`PretrainConfig.recipe`,
saved in the card and, as the VQA route, in the checkpoint's config.json) differ in the third:

1. LM   — captioning: the decoder, cross-attending to the image, continues the prompt `a picture of`
          (exactly the captioning task's forward; with the consistency dial at 1 this is what makes
          captioning *consistent*). Both recipes: mPLUG's caption decoder reads the image states alone
          (`models/model_caption_mplug.py`), as BLIP's does (`models/blip_pretrain.py`).
2. ITM  — image–text matching: the text encoder, cross-attending to the image, tells a matching caption
          from a caption of another image in the batch. Both recipes (mPLUG's ITM, BLIP's ITM).
3. mplug — **PrefixLM**, mPLUG's prefix language modelling (the mPLUG paper, arXiv 2205.12005, §3.3; `prefix_task`
          in its `configs/pretrain_mplug_base.yaml`): each caption is cut at a uniformly random word boundary, at
          least one word on each side; the text encoder reads `[ENC]` + the prefix over the image, and the decoder
          *continues* the caption (`[DEC]` + the rest) cross-attending to [image states; fused prefix states] —
          the route mPLUG's VQA decoder reads (`models/model_vqa_mplug.py`: `torch.cat([image_output,
          question_output], 1)`), so the decoder's first position learns to produce a content word from fused
          image + text states. mPLUG's pre-training code is not public; what we chose where its paper is silent:
          the cut is drawn per caption from the pre-training generator, a one-word caption keeps an empty prefix,
          the prefix is the encoder's whole input (no prompt before it), and the image half of the memory is the
          vision tower's states (our text encoder is BLIP's, which does not update the image stream as mPLUG's
          fusion does).
   blip — **ELM**, encoder-conditioned LM: the VQA task's forward on BLIP's route (question states only) with
          `a picture of` in the question's place and the caption as the answer, so the VQA model starts with a
          pre-trained encoder → decoder route (BLIP's decoder reads the image; BLIP_Pretrain has no such
          objective, and BLIP's VQA decoder starts from its captioning decoder).
   Neither ever shows a question–answer pair: VQA stays inconsistent with pre-training.
4. TLM  — text-only LM on the footing corpus (`shapes.text_corpus`): the decoder, with no image, produces every
          word a downstream caption or answer uses (BLIP's decoder starts from BERT, which has produced
          every word of its vocabulary).
5. MLM  — BERT's own objective on the same text, for the text encoder (through a head that is discarded).

Every text enters at a random position offset (half the time 0, otherwise up to the last row the text fits
in), so every position row a prompt or prefix can shift a text onto is trained, as BERT's 512 rows are.

The result is two `save_pretrained` directories, `<out>/caption` and `<out>/vqa`, loaded later by
`vlpeft.blip.models.load_model` exactly like real BLIP checkpoints (their config.json carries `vqa_route`:
the recipe's), plus `<out>/card.json`: how it was made (its config, recipe included, the world's, corpus sizes,
steps, final losses, wall time), the zero-shot metrics, and the captioning loss with the text shifted by p
positions (what a prompt/prefix of length p costs at the start).
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import BlipForConditionalGeneration

from .. import numerics
from ..blip.models import (
    build_processor,
    build_tokenizer,
    honour_cross_attention_masks,
    random_blip,
    save_model,
    vision_states,
)
from ..config import PretrainConfig
from ..data import Paths, Pixels, load_karpathy
from ..errors import ConfigError, Interrupted, Preempted
from ..io import file_sha256, own, progress_bar, provenance, write_json
from ..methods import count_parameters, unique_parameters
from ..records import load_json
from ..signals import StopSignals
from ..tasks import CAPTION_PROMPT, TASKS, decoder_targets, evaluate
from . import shapes

SHIFTS = (0, 8, 32, 128)  # prompt/prefix lengths whose shift the card prices
RECIPES = {"mplug": "mplug", "blip": "blip"}  # recipe → the VQA route its checkpoints carry (tasks.VQA_ROUTES)


def pretrain(cfg: PretrainConfig, progress: bool = True, force: bool = False) -> Path:
    """Pre-train and save; a second call with the same config returns the cached checkpoint at once. The out
    folder must be new, empty, or this config's own (`io.own`): nothing else is ever overwritten."""
    check_pretrain(cfg)
    out = Path(cfg.out)
    if own(out, "pre-trained model", cfg.as_dict(), "card.json", force=force):   # force: any model of ours, redone
        return out
    with numerics.computing(cfg.numerics):   # the same weights on any x86-64 machine (numerics.py)
        return _pretrain(cfg, out, progress)


def _pretrain(cfg: PretrainConfig, out: Path, progress: bool) -> Path:
    torch.manual_seed(cfg.seed)
    paths = Paths(Path(cfg.data_root))
    tokenizer = build_tokenizer(shapes.vocabulary())
    processor = build_processor(tokenizer, cfg.spec.image_size)
    corpus = Corpus(cfg, paths, tokenizer, processor)                       # 1. the image–text pairs and the text
    vqa = random_blip("vqa", tokenizer, cfg.spec, cfg.seed).train()          # 2. all three towers, trained together
    vqa.config.vqa_route = RECIPES[cfg.recipe]                                #    (the route travels with it)
    if cfg.share_text_towers:
        share_text_towers(vqa)
    step, losses, curve, wall = _train(cfg, vqa, corpus, tokenizer, progress, out)
    if cfg.share_text_towers:                                                # 3. the two task models, as BLIP's
        untie_text_towers(vqa)                                               #    released checkpoints are
    vqa.eval()
    caption = honour_cross_attention_masks(BlipForConditionalGeneration(vqa.config)).eval()
    missing = caption.load_state_dict(vqa.state_dict(), strict=False).missing_keys
    assert not missing, f"caption model keys not covered by pre-training: {missing}"
    card = {"config": cfg.as_dict(), "world": json.loads((paths.root / "world.json").read_text()),  # 4. the card
            "corpus_images": len(corpus.items), "corpus_pairs": len(corpus.pairs.dataset),
            "text_sentences": len(corpus.texts.dataset), "steps": step,
            "final_losses": {k: round(v.item(), 4) for k, v in losses.items()},
            "loss_curve": curve,   # the summed objectives, mean over each 1 % of the steps (§7 of the schedule)
            "wall_s": round(wall, 1), "params": count_parameters(vqa)[1],
            "footing": "text-only LM (decoder) and MLM (encoder) on a corpus holding every caption/answer word, "
                       "never a question; every text at a random position offset (rows 0.."
                       f"{cfg.spec.max_positions - 1})",
            "zero_shot": zero_shot(caption, vqa, tokenizer, paths, corpus.images, cfg.zero_shot_eval),
            "shift_loss": shift_loss(caption, tokenizer, paths, corpus.images, cfg.zero_shot_eval),
            "provenance": provenance()}   # its `numerics`: the path, caps, threads and CPU it was made on
    save_model(caption, processor, out / "caption")
    save_model(vqa, processor, out / "vqa")
    card["weights_sha256"] = weight_hashes(out)   # the stand-in's identity (presets.STANDINS holds the committed)
    write_json(out / "card.json", card)  # written last, atomically: marks a complete checkpoint
    return out


def weight_hashes(out: Path) -> dict[str, str]:
    """{task: sha256 of its model.safetensors}: equal hashes, equal weights (safetensors writes tensors in a fixed
    order with a sorted header)."""
    return {task: file_sha256(out / task / "model.safetensors") for task in ("caption", "vqa")}


def check_pretrain(cfg: PretrainConfig) -> None:
    """Refuse a pre-training that cannot run, naming the field (before anything is written)."""
    if (problem := numerics.mode_problem(cfg.numerics)) is not None:
        raise ConfigError(problem)
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"--recipe {cfg.recipe!r}: choose one of {', '.join(RECIPES)} (mplug: the paper's model; "
                          f"blip: BLIP's)")
    for name in ("steps", "batch_size", "warmup"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(cfg, name)}")
    for name in ("zero_shot_eval",):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(cfg, name)}")
    for name in ("lr", "weight_decay"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            kind = "positive" if name == "lr" else "non-negative"
            raise ConfigError(f"--{name.replace('_', '-')} must be a finite {kind} number, got {value}")
    if not (Path(cfg.data_root) / "annotations").is_dir():
        raise ConfigError(f"--data-root {cfg.data_root}: no annotations/ folder; write the shapes world first "
                          f"(`vlpeft world --out {cfg.data_root}`)")


class Corpus:
    """The pre-training data: image–caption pairs (`dataset_pretrain.json`, through the captioning task's own
    collation, with `cfg.lm_prompt` before each caption, and the raw captions for PrefixLM) and the text-only
    footing sentences, in seeded order."""

    def __init__(self, cfg: PretrainConfig, paths: Paths, tokenizer, processor):
        self.items = load_karpathy(paths.pretrain, paths.images, "all")
        sentences = load_json(paths.root / "annotations" / "pretrain_text.json", required=("sentences",))["sentences"]
        self.images = Pixels(processor.image_processor)
        lm = TASKS["caption"]
        self.g = torch.Generator().manual_seed(cfg.seed)
        self.pairs = torch.utils.data.DataLoader(
            lm.train_examples(self.items, self.images), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
            collate_fn=lambda b: lm.collate(tokenizer, b, cfg.lm_prompt) | {"captions": [x["target"] for x in b]},
            generator=self.g)
        self.texts = torch.utils.data.DataLoader(
            sentences, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
            collate_fn=lambda b: tokenizer(b, padding="longest", return_tensors="pt"), generator=self.g)

    def batches(self, steps: int):
        """`steps` (pair batch, text batch) couples: the pairs epoch after epoch, the text cycling beside them."""
        text, step = cycle(self.texts), 0
        while step < steps:
            for b in self.pairs:
                if step >= steps:
                    return
                yield b, next(text)
                step += 1


def _train(cfg: PretrainConfig, vqa, corpus: Corpus, tokenizer, progress: bool, out: Path):
    """The optimisation: (steps done, last losses, wall seconds). Ctrl-C or a stop signal ends it with a message
    saying that an unfinished pre-training keeps nothing and how it starts again."""
    heads = torch.nn.ModuleDict({"itm": torch.nn.Linear(cfg.spec.hidden, 2),                 # discarded after
                                 "mlm": torch.nn.Linear(cfg.spec.hidden, len(tokenizer))})
    params = unique_parameters(vqa) + list(heads.parameters())
    # fused: one kernel whose square root is the CPU's own exact instruction; the per-tensor path takes MKL's vector
    # square root, which rounds otherwise on another vendor's CPU (numerics.py); as fine-tuning's optimiser
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.numerics == "pinned")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    objectives = Objectives(vqa, heads, tokenizer, cfg.spec.max_positions, corpus.g, cfg.recipe)
    t0, step, losses, curve, window = time.time(), 0, {}, [], []   # curve: the summed loss, mean per 1 % of steps
    again = (f"an unfinished pre-training keeps nothing: run the same command again to start it over in {out} "
             f"(about {cfg.steps} steps)")
    try:
        with progress_bar(total=cfg.steps, desc="pre-train", disable=not progress) as bar, StopSignals() as stop:
            for pairs, text in corpus.batches(cfg.steps):
                losses = objectives(pairs, text)
                opt.zero_grad(set_to_none=True)
                total = sum(losses.values())
                total.backward()
                window.append(total.item())
                if len(window) >= max(1, cfg.steps // 100) or step + 1 == cfg.steps:
                    curve.append(round(sum(window) / len(window), 4))
                    window.clear()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                step += 1
                bar.update()
                bar.set_postfix({k: f"{v.item():.2f}" for k, v in losses.items()}, refresh=False)
                if stop.requested and step < cfg.steps:   # at the last step: just finish
                    raise Preempted(f"pre-training stopped by {stop.requested} at step {step} of {cfg.steps}; {again}")
    except KeyboardInterrupt:
        raise Interrupted(f"pre-training interrupted at step {step} of {cfg.steps}; {again}") from None
    return step, losses, curve, time.time() - t0


SHARED = ("crossattention", "intermediate", "output")   # per block; the self-attention stays each tower's own


def share_text_towers(vqa) -> None:
    """BLIP_Pretrain's `tie_encoder_decoder_weights(text_decoder.bert, text_encoder, '', '/attention')`: the text
    encoder and decoder share every weight but their self-attention (embeddings, cross-attention, FFN)."""
    enc, dec = vqa.text_encoder, vqa.text_decoder
    dec.bert.embeddings = enc.embeddings
    for e, d in zip(enc.encoder.layer, dec.bert.encoder.layer):
        for name in SHARED:
            setattr(d, name, getattr(e, name))
    dec.cls.predictions.decoder.weight = enc.embeddings.word_embeddings.weight  # the LM head stays tied to its words


def untie_text_towers(vqa) -> None:
    """Give the decoder its own copies again (BLIP's released checkpoints store both towers in full)."""

    enc, dec = vqa.text_encoder, vqa.text_decoder
    dec.bert.embeddings = copy.deepcopy(enc.embeddings)
    for d in dec.bert.encoder.layer:
        for name in SHARED:
            setattr(d, name, copy.deepcopy(getattr(d, name)))
    dec.cls.predictions.decoder.weight = dec.bert.embeddings.word_embeddings.weight


def cycle(loader):
    while True:
        yield from loader


def offset_positions(mask: torch.Tensor, max_positions: int, g: torch.Generator) -> torch.Tensor:
    """(B, T) position ids starting at 0 for half of the texts and at a random row for the others, so that
    every row up to max_positions - T is trained."""
    B, T = mask.shape
    start = torch.randint(1, max(2, max_positions - T + 1), (B, 1), generator=g)
    start = start * (torch.rand(B, 1, generator=g) < 0.5)
    return start + torch.arange(T)


def prefix_lm_batch(tokenizer, captions: list[str], g: torch.Generator) -> dict:
    """PrefixLM's inputs in the VQA task's batch layout: each caption cut at a uniformly random word boundary
    k ∈ [1, n-1] (a one-word caption: k = 0, an empty prefix); the prefix is the encoder's text (`[ENC]` w_1..w_k),
    the rest the decoder's target (`[DEC]` w_k+1..w_n `[SEP]`)."""
    prefixes, rests = [], []
    for caption in captions:
        words = caption.split()
        k = int(torch.randint(1, len(words), (1,), generator=g)) if len(words) > 1 else 0
        prefixes.append(" ".join(words[:k]))
        rests.append(" ".join(words[k:]))
    ids, mask, labels = decoder_targets(tokenizer, rests)
    return TASKS["vqa"].question_ids(tokenizer, prefixes) | {"decoder_input_ids": ids, "decoder_attention_mask": mask,
                                                             "labels": labels}


class Objectives:
    """The five pre-training losses of one step (see the module docstring); the third is the recipe's."""

    def __init__(self, vqa, heads, tokenizer, max_positions: int, g: torch.Generator, recipe: str = "mplug"):
        self.vqa, self.heads, self.tok, self.max_pos, self.g = vqa, heads, tokenizer, max_positions, g
        self.recipe = recipe
        self.enc_id = tokenizer.convert_tokens_to_ids("[ENC]")
        self.prompt = TASKS["vqa"].question_ids(tokenizer, [CAPTION_PROMPT])  # [ENC] a picture of, as a question

    def pos(self, mask):
        return offset_positions(mask, self.max_pos, self.g)

    def __call__(self, b: dict, text: dict) -> dict[str, torch.Tensor]:
        vqa, ids, mask = self.vqa, b["input_ids"], b["attention_mask"]
        B = ids.shape[0]
        image = vision_states(vqa, b["pixel_values"])                                  # (B, 1+N, d)
        # 1. LM: the captioning forward, cross-attending to the image
        lm = TASKS["caption"].loss(vqa, b | {"image_embeds": image, "position_ids": self.pos(mask)})
        # 2. ITM: [ENC] + caption; negatives are the captions of the next image in the batch. Known flaw, kept (a fix
        #    changes the stand-in: it waits for the next change of the recipe): a batch holds captions, five per
        #    image, shuffled, so a rolled "negative" can be another caption of the positive's own image and ITM is
        #    taught to call a match a mismatch. In the stand-in's pre-training (the defaults: seed 0, 1000 steps of
        #    32 on the embedded world) that is 5 of its 32 000 negatives (0.016 %; a uniform shuffle expects 4.1),
        #    and 8 more are another image's caption word for word one of the positive's own (`tools/itm_negatives.py`
        #    counts both from the corpus and the generator's draws, without training)
        enc_ids = ids.clone()
        enc_ids[:, 0] = self.enc_id
        neg = torch.roll(torch.arange(B), 1)
        both = torch.cat([mask, mask[neg]])
        fused = vqa.text_encoder(input_ids=torch.cat([enc_ids, enc_ids[neg]]), attention_mask=both,
                                 position_ids=self.pos(both),
                                 encoder_hidden_states=torch.cat([image, image])).last_hidden_state  # (2B, T, d)
        itm = F.cross_entropy(self.heads["itm"](fused[:, 0]), torch.cat([torch.ones(B), torch.zeros(B)]).long())
        # 3. the recipe's: the VQA forward on the model's route (mplug: [image; prefix], blip: question only)
        if self.recipe == "mplug":   # PrefixLM: [ENC] + a caption's prefix → [DEC] + the rest
            third, p = "prefix_lm", prefix_lm_batch(self.tok, b["captions"], self.g)
            batch = p | {"position_ids": self.pos(p["attention_mask"]),
                         "decoder_position_ids": self.pos(p["decoder_attention_mask"])}
        else:                        # ELM: "a picture of" as the question and the caption as the answer
            third = "elm"
            q_ids, q_mask = self.prompt["input_ids"].expand(B, -1), self.prompt["attention_mask"].expand(B, -1)
            batch = {"input_ids": q_ids, "attention_mask": q_mask, "position_ids": self.pos(q_mask),
                     "decoder_input_ids": ids, "decoder_attention_mask": mask, "decoder_position_ids": self.pos(mask),
                     "labels": b["labels"]}
        conditioned = TASKS["vqa"].loss(vqa, batch | {"image_embeds": image})
        # 4. TLM: the decoder alone on the footing text ([DEC] first, as every decoder text)
        t_ids, t_mask = text["input_ids"].clone(), text["attention_mask"]
        t_ids[:, 0] = self.tok.bos_token_id
        tlm = vqa.text_decoder(input_ids=t_ids, attention_mask=t_mask, position_ids=self.pos(t_mask),
                               labels=t_ids.masked_fill(t_mask == 0, -100)).loss
        # 5. MLM: BERT's objective for the text encoder, 15 % of the words masked
        m_ids = text["input_ids"].clone()
        special = torch.isin(m_ids, torch.tensor(self.tok.all_special_ids))
        chosen = (torch.rand(m_ids.shape, generator=self.g) < 0.15) & ~special
        m_ids[chosen] = self.tok.mask_token_id
        h = vqa.text_encoder(input_ids=m_ids, attention_mask=t_mask, position_ids=self.pos(t_mask)).last_hidden_state
        mlm = F.cross_entropy(self.heads["mlm"](h[chosen]), text["input_ids"][chosen]) if chosen.any() else h.sum() * 0
        return {"lm": lm, "itm": itm, third: conditioned, "tlm": tlm, "mlm": mlm}


def _test_loader(task, items, tokenizer, images, train: bool = False):
    examples = task.train_examples(items, images) if train else task.eval_examples(items, images)
    return torch.utils.data.DataLoader(examples, batch_size=32, collate_fn=lambda b: task.collate(tokenizer, b))


def zero_shot(caption, vqa, tokenizer, paths: Paths, images: Pixels, n: int) -> dict:
    """CIDEr on the caption test split and VQA accuracy on the VQA test split, before any fine-tuning."""
    if n <= 0:
        return {}
    out = {"n": n}
    for name, model in (("caption", caption), ("vqa", vqa)):
        task = TASKS[name]
        items = task.splits(paths)[2][:n]
        loader = _test_loader(task, items, tokenizer, images)
        score, preds = evaluate(model, task, tokenizer, loader, items)
        out[task.metric] = round(score, 4)
        out[f"example_{name}"] = {"prediction": preds[loader.dataset.records[0][1]["id"]],
                                  "references": task.references(items[0])}
    return out


@torch.no_grad()
def shift_loss(caption, tokenizer, paths: Paths, images: Pixels, n: int, shifts=SHIFTS) -> dict:
    """Mean captioning loss on test captions with the text at positions p..p+T-1 instead of 0..T-1: what a
    prompt/prefix of length p costs before it has learned anything (the footing keeps it small)."""
    if n <= 0:
        return {}
    task = TASKS["caption"]
    items = task.splits(paths)[2][:n]
    batches = [b | {"image_embeds": vision_states(caption, b["pixel_values"])}  # decoded and encoded once
               for b in _test_loader(task, items, tokenizer, images, train=True)]
    out = {}
    for p in shifts:
        losses = []
        for b in batches:
            positions = p + torch.arange(b["input_ids"].shape[1]).expand_as(b["input_ids"])
            losses.append(task.loss(caption, b | {"position_ids": positions}).item())
        out[str(p)] = round(sum(losses) / len(losses), 4)
    return out
