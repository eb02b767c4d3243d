"""The two tasks of the study, one object each: splits, examples, collation, loss, decoding, metric, schedule.

    task = TASKS["vqa"]
    train, val, test = task.splits(Paths(root))               # Table I (vlpeft.data)
    loss = task.loss(model, batch)                            # teacher-forced cross-entropy of the target text
    texts = task.predict(model, batch, tokenizer)             # generated captions / answers
    score = task.score(predictions, items)                    # CIDEr / VQA accuracy

Nothing outside this module compares a task's name. Training, evaluation, pre-training and the tests all go
through these methods, so the forward that is trained is the forward that is decoded and scored:

- **Images** enter as pixels or as the frozen vision tower's cached states (`batch["image_embeds"]`, see
  `vlpeft.features`); `image_states` is the only place the vision tower runs (with its position table
  interpolated when the image size differs from the checkpoint's).
- **Caption** (paper §IV): the decoder continues the prompt `a picture of`, cross-attending to the image;
  the prompt and padding are masked out of the loss (-100), as BLIP does. Decoding: beam search.
- **VQA**: the text encoder reads `question: {q} answer:` cross-attending to the image; the decoder
  generates the answer (answers are generated, not ranked) cross-attending to one of two *routes*, a property
  of the checkpoint (its config.json's `vqa_route`) that a run may override (`RunConfig.vqa_route`):
  `mplug` — the image states and the question states together, `[image; question]` with the joint mask, as the
  paper's model (mPLUG's `models/model_vqa_mplug.py`: `torch.cat([image_output, question_output], 1)`);
  `blip` — the question states only, as BLIP (`models/blip_vqa.py`). Real BLIP checkpoints carry no route and
  take `blip`. A run may answer on a route other than its checkpoint's own: allowed, said in one line at its start,
  and recorded (`vqa_route` in metrics.json); a route string other than these two is refused wherever a model is
  loaded (`vqa_route`, `Task.on_route`). The question's padding mask is passed to the answer decoder's
  cross-attention in training *and* in decoding. (BLIP's own `generate` uses an all-ones mask there, so at
  inference the decoder would attend to the [PAD] states of every question shorter than its batch's longest — an
  answer would then depend on its batch-mates, and the model would be scored under conditions it was not trained
  in. We keep the mask.)
- **The image half on the `mplug` route.** In mPLUG-base (`config_bert_stride3.json`, `stride_layer: 3`) the
  `image_output` its answer decoder reads has passed a fusion layer that also updates the image states; BLIP's
  architecture has no such layer (its text encoder cross-attends to the image and leaves the image stream as it
  is), so ours is the vision tower's output, as in mPLUG-large, and it is frozen under every PEFT method
  ("+ classifier" included; only full fine-tuning trains the tower). What it implies: a PEFT run adapts how the
  question is encoded and how the answer decoder reads [image; question], never the image states themselves,
  which mPLUG-base's fusion layer (trained by its full fine-tuning, or by a method placed in it) could move; and the
  cached image states (`vlpeft.features`) are exactly what the answer decoder reads on this route.

Decoding is part of a run's config (the paper gives none): beams, at most and at least so many new tokens, per
task (`RunConfig.caption_beams` …, `vqa_min_tokens`; `Task.decoding`). The embedded studies decode captions with
3 beams and at most 30 tokens, answers greedily with at most 6; the `paper` preset decodes as the checkpoint
family's released code (`study.presets.PAPER_DECODING`, which cites it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import metrics
from .blip.checkpoints import looks_vqa_finetuned
from .blip.models import vision_states
from .catalog import TASK_INFO, TaskInfo
from .config import RunConfig
from .data import Examples, Paths, load_captions, load_vqa, stack_images
from .errors import ConfigError
from .io import progress_bar

CAPTION_PROMPT = "a picture of"                # paper §IV: the caption prompt
VQA_TEMPLATE = "question: {question} answer:"  # paper §IV: "Question: {question} Answer:" (lower-cased tokenizer)
MAX_TEXT_TOKENS = 40
VQA_ROUTES = {"mplug": "[image; question]", "blip": "the question only"}  # route → what the answer decoder reads


def image_states(model, batch: dict) -> torch.Tensor:
    """(B, 1+N, d): the cached states when the batch carries them, else the vision tower on the pixels."""
    if "image_embeds" in batch:
        return batch["image_embeds"]
    return vision_states(model, batch["pixel_values"])


def own_route(checkpoint: dict) -> str:
    """A checkpoint's own VQA route, from its config.json: its `vqa_route`, `blip` when it has none (real BLIP)."""
    return checkpoint.get("vqa_route") or "blip"


def vqa_route(model) -> str:
    """The model's VQA route (`VQA_ROUTES`): its config's `vqa_route`, `blip` when it has none (real BLIP). Any
    other string is refused, wherever the model was loaded (never read as one of the two)."""
    route = getattr(model.config, "vqa_route", None) or "blip"
    if route not in VQA_ROUTES:
        raise ConfigError(f"unknown VQA route {route!r} in the model's config (vqa_route); choose mplug ([image; "
                          f"question], the paper's model) or blip (the question states, BLIP's)")
    return route


def _tokenize(tokenizer, texts: list[str]):
    return tokenizer(texts, padding="longest", truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt")


def decoder_targets(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder input ids starting with BLIP's [DEC] (bos, what `generate` starts from), their mask, and labels
    with the padding masked out (-100)."""
    enc = _tokenize(tokenizer, texts)
    ids = enc.input_ids.clone()
    ids[:, 0] = tokenizer.bos_token_id
    return ids, enc.attention_mask, ids.masked_fill(enc.attention_mask == 0, -100)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ log p(label_t | label_<t) per sequence, over the labels that are not -100: (B, T, V), (B, T) → (B,)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (target != -100)).sum(-1)


@dataclass(frozen=True)
class Task:
    info: TaskInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def metric(self) -> str:
        return self.info.metric

    # -- data ------------------------------------------------------------------------------------------------
    def splits(self, paths: Paths) -> tuple[list, list, list]:
        raise NotImplementedError

    def train_examples(self, items: list, images) -> Examples:
        raise NotImplementedError

    def eval_examples(self, items: list, images) -> Examples:
        raise NotImplementedError

    def collate(self, tokenizer, batch: list[dict]) -> dict:
        raise NotImplementedError

    def image_paths(self, items: list) -> list:
        return [it.image for it in items]

    def start_problem(self, model_path: str) -> str | None:
        """Why a checkpoint is not a fair start for this task (None: it is)."""
        return None

    def resolve_route(self, route: str, checkpoint: dict) -> str:
        """The run's VQA route given the asked one and the checkpoint's config.json (raises ConfigError)."""
        if route:
            raise ConfigError(f"--vqa-route {route} applies to VQA runs only; leave it empty for --task {self.name}")
        return ""

    def on_route(self, model, route: str):
        """The loaded model set on the run's VQA route and checked (a route the task does not know is refused)."""
        return model

    def route_note(self, route: str, checkpoint: dict) -> str | None:
        """The line a run on a VQA route other than its checkpoint's own starts with (None: no such line)."""
        return None

    def tool_problem(self) -> str | None:
        """Why this machine cannot score the task (None: it can)."""
        return None

    # -- model -----------------------------------------------------------------------------------------------
    def forward(self, model, batch: dict, labels: bool = True):
        """The decoder's output for the batch's target text (with the mean cross-entropy when `labels`)."""
        raise NotImplementedError

    def loss(self, model, batch: dict) -> torch.Tensor:
        return self.forward(model, batch).loss

    def target_logprobs(self, model, batch: dict) -> torch.Tensor:
        """Teacher-forced log-probability of each example's target text (B,), from the training forward."""
        out = self.forward(model, batch, labels=False)
        return token_logprobs(out.logits, batch["labels"])

    def decoding(self, cfg: RunConfig | None = None) -> dict:
        """`generate`'s settings from a run's config (its `<task>_beams`, `_max_tokens`, `_min_tokens`; without
        one, RunConfig's defaults): beam search, greedy at one beam, never sampling. Every count is of new tokens,
        [SEP] included in the most (transformers' max/min_new_tokens)."""
        cfg = cfg or RunConfig()
        beams, most, least = (getattr(cfg, f"{self.name}_{k}") for k in ("beams", "max_tokens", "min_tokens"))
        kw = dict(num_beams=beams, max_new_tokens=most, do_sample=False)
        return kw | {"min_new_tokens": least} if least else kw   # 0: transformers' default, as before the field

    def generate(self, model, batch: dict, tokenizer, **overrides):
        """`generate`'s output (sequences, and scores when asked): `decoding()`'s settings, then `overrides`
        (a run's own: `**task.decoding(cfg)`)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, model, batch: dict, tokenizer, **decoding) -> list[str]:
        raise NotImplementedError

    def score(self, predictions: dict, items: list) -> float:
        raise NotImplementedError

    def references(self, item) -> list[str]:
        raise NotImplementedError

    # -- schedule (paper appendix), as multipliers of the peak LR for LambdaLR ----------------------------------
    def plan_steps(self, cfg, n_train: int) -> int:
        raise NotImplementedError

    def warmup(self, cfg) -> int:
        raise NotImplementedError

    def lr_lambda(self, cfg, total: int):
        raise NotImplementedError


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class CaptionTask(Task):
    def splits(self, paths):
        return tuple(load_captions(paths, s) for s in ("train", "val", "test"))

    def train_examples(self, items, images):
        """Every reference caption of every training image is one (image, caption) example."""
        return Examples([(it.image, {"target": c, "id": it.image_id}) for it in items for c in it.captions], images)

    def eval_examples(self, items, images):
        return Examples([(it.image, {"id": it.image_id}) for it in items], images)

    def collate(self, tokenizer, batch, prompt: str = CAPTION_PROMPT):
        out = stack_images(batch)
        if "target" in batch[0]:  # [DEC] a picture of <caption> [SEP]; loss on the caption and [SEP] only
            ids, mask, labels = decoder_targets(tokenizer, [f"{prompt} {b['target']}".strip() for b in batch])
            labels[:, :1 + len(tokenizer(prompt, add_special_tokens=False).input_ids)] = -100
            return out | {"input_ids": ids, "attention_mask": mask, "labels": labels}
        return out

    def forward(self, model, batch, labels=True):
        return model.text_decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  position_ids=batch.get("position_ids"),  # pre-training's offsets; else 0..T-1
                                  encoder_hidden_states=image_states(model, batch),
                                  labels=batch["labels"] if labels else None)

    def prompt_ids(self, tokenizer, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """[DEC] a picture of — the training text's first tokens, without the [SEP] the tokenizer appends."""
        enc = tokenizer([CAPTION_PROMPT] * batch_size, return_tensors="pt")
        ids = enc.input_ids[:, :-1].clone()
        ids[:, 0] = tokenizer.bos_token_id
        return ids.to(device), enc.attention_mask[:, :-1].to(device)

    def generate(self, model, batch, tokenizer, **overrides):
        image = image_states(model, batch)
        ids, mask = self.prompt_ids(tokenizer, image.shape[0], image.device)
        cfg = model.config.text_config
        kw = self.decoding() | overrides
        return model.text_decoder.generate(input_ids=ids, attention_mask=mask, encoder_hidden_states=image,
                                           eos_token_id=cfg.sep_token_id, pad_token_id=cfg.pad_token_id, **kw)

    @torch.no_grad()
    def predict(self, model, batch, tokenizer, **decoding):
        seqs = self.generate(model, batch, tokenizer, **decoding)
        n_prompt = self.prompt_ids(tokenizer, 1, "cpu")[0].shape[1]
        return [t.strip() for t in tokenizer.batch_decode(seqs[:, n_prompt:], skip_special_tokens=True)]

    def score(self, predictions, items):
        return metrics.cider(predictions, {it.image_id: list(it.captions) for it in items})

    def tool_problem(self):
        return metrics.java_problem()

    def references(self, item):
        return list(item.captions)

    def plan_steps(self, cfg, n_train):
        return cfg.steps                                                   # iteration-based (paper: 4000)

    def warmup(self, cfg):
        return cfg.warmup_steps

    def lr_lambda(self, cfg, total):
        w = self.warmup(cfg)                                               # 0 → peak over warm-up, cosine to 0
        return lambda s: s / w if s < w else _cosine((s - w) / max(1, total - w))


class VqaTask(Task):
    def splits(self, paths):
        return tuple(load_vqa(paths, s) for s in ("train", "val", "test"))

    def train_examples(self, items, images):
        return Examples([(it.image, {"question": it.question, "target": it.answer, "id": it.question_id})
                         for it in items], images)

    def eval_examples(self, items, images):
        return Examples([(it.image, {"question": it.question, "id": it.question_id}) for it in items], images)

    def collate(self, tokenizer, batch):
        q = self.question_ids(tokenizer, [VQA_TEMPLATE.format(question=b["question"]) for b in batch])
        out = stack_images(batch) | q
        if "target" in batch[0]:
            ids, mask, labels = decoder_targets(tokenizer, [b["target"] for b in batch])
            out |= {"decoder_input_ids": ids, "decoder_attention_mask": mask, "labels": labels}
        return out

    def start_problem(self, model_path):
        """A checkpoint already fine-tuned on VQA (e.g. Salesforce/blip-vqa-base, trained on VQAv2 train+val)
        would make VQA consistent with its "pre-training" and score it on its own training questions."""
        reason = looks_vqa_finetuned(model_path)
        return f"refusing to start VQA from {model_path!r}: {reason}" if reason else None

    def resolve_route(self, route, checkpoint):
        """"" takes the checkpoint's own (`vqa_route` in its config.json; BLIP's released ones have none: blip).
        mplug needs image states as wide as the question states: BLIP-large's 1024-wide ViT beside its 768-wide
        text tower is refused, never reshaped."""
        where = "--vqa-route" if route else "the checkpoint's config.json vqa_route"
        route = route or own_route(checkpoint)
        if route not in VQA_ROUTES:
            raise ConfigError(f"unknown VQA route {route!r} ({where}); choose mplug ([image; question], the paper's "
                              f"model) or blip (the question states, BLIP's), or leave --vqa-route empty for the "
                              f"checkpoint's own")
        vision = (checkpoint.get("vision_config") or {}).get("hidden_size")
        text = (checkpoint.get("text_config") or {}).get("hidden_size")
        if route == "mplug" and vision and text and vision != text:
            raise ConfigError(f"--vqa-route mplug: this checkpoint's image states are {vision} wide and its question "
                              f"states {text}; the answer decoder cannot read both (use --vqa-route blip)")
        return route

    def on_route(self, model, route):
        if route:
            model.config.vqa_route = route   # the run's, whatever the checkpoint says ("": the checkpoint's own)
        vqa_route(model)                      # refuses a route string it does not know, here at load
        return model

    def route_note(self, route, checkpoint):
        """Allowed, and said: a run answering on a route its checkpoint was not pre-trained for."""
        own = own_route(checkpoint)
        if route and route != own:
            return (f"vlpeft: this VQA run's answer decoder reads {VQA_ROUTES[route]} (route {route}), not what its "
                    f"checkpoint's own route {own} reads ({VQA_ROUTES.get(own, '?')}): allowed, and recorded as "
                    f"vqa_route in metrics.json")
        return None

    def question_ids(self, tokenizer, texts: list[str]) -> dict:
        """The text encoder's input: as BLIP's blip_vqa, the first token is [ENC] (the token its image-grounded
        text encoder was pre-trained with) in place of [CLS]."""
        q = _tokenize(tokenizer, texts)
        ids = q.input_ids.clone()
        enc = tokenizer.convert_tokens_to_ids("[ENC]")
        if enc != tokenizer.unk_token_id:
            ids[:, 0] = enc
        return {"input_ids": ids, "attention_mask": q.attention_mask}

    def answer_memory(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """What the answer decoder cross-attends to, and its mask, by the model's route (`vqa_route`):
        blip: the question states (B, T_q, d); mplug: [image states; question states] (B, 1+N+T_q, d)."""
        image = image_states(model, batch)                                                  # (B, 1+N, d)
        mask = batch["attention_mask"]                                                      # (B, T_q)
        question = model.text_encoder(input_ids=batch["input_ids"], attention_mask=mask,    # (B, T_q, d), reading
                                      position_ids=batch.get("position_ids"),               #   the image; position
                                      encoder_hidden_states=image).last_hidden_state        #   offsets: pre-training
        if vqa_route(model) == "blip":
            return question, mask
        return torch.cat([image, question], 1), torch.cat([mask.new_ones(image.shape[:2]), mask], 1)

    def forward(self, model, batch, labels=True):
        # BLIP's own forward feeds `labels` (with -100 padding) back in as decoder input, so the route is
        # written out: question encoder → answer decoder, with the memory's mask in the cross-attention
        memory, mask = self.answer_memory(model, batch)
        return model.text_decoder(input_ids=batch["decoder_input_ids"], attention_mask=batch["decoder_attention_mask"],
                                  position_ids=batch.get("decoder_position_ids"),
                                  encoder_hidden_states=memory, encoder_attention_mask=mask,
                                  labels=batch["labels"] if labels else None)

    def generate(self, model, batch, tokenizer, **overrides):
        memory, mask = self.answer_memory(model, batch)
        bos = torch.full((memory.shape[0], 1), tokenizer.bos_token_id, device=memory.device)
        cfg = model.config.text_config
        kw = self.decoding() | overrides
        return model.text_decoder.generate(input_ids=bos, encoder_hidden_states=memory,
                                           encoder_attention_mask=mask,  # as in training
                                           eos_token_id=cfg.sep_token_id, pad_token_id=cfg.pad_token_id, **kw)

    @torch.no_grad()
    def predict(self, model, batch, tokenizer, **decoding):
        return [t.strip() for t in tokenizer.batch_decode(self.generate(model, batch, tokenizer, **decoding),
                                                          skip_special_tokens=True)]

    def score(self, predictions, items):
        return metrics.vqa_accuracy(predictions, {it.question_id: list(it.answers) for it in items})

    def references(self, item):
        return list(item.answers)

    def plan_steps(self, cfg, n_train):
        return cfg.epochs * math.ceil(n_train / cfg.batch_size)           # epoch-based (paper: 10 epochs)

    def warmup(self, cfg):
        return max(1, round(cfg.warmup_per_ratio * cfg.data_ratio))

    def lr_lambda(self, cfg, total):
        floor = 1e-6 / cfg.lr                                             # 1e-6 → peak over 800 × ratio steps,
        w = self.warmup(cfg)                                              # cosine to 1e-6
        return lambda s: floor + (1 - floor) * (s / w if s < w else _cosine((s - w) / max(1, total - w)))


TASKS: dict[str, Task] = {"caption": CaptionTask(TASK_INFO["caption"]), "vqa": VqaTask(TASK_INFO["vqa"])}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


class TaskModel(nn.Module):
    """The model with its task's loss as `forward(batch)`: the module data parallelism (DDP) wraps."""

    def __init__(self, model: nn.Module, task: Task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict) -> torch.Tensor:
        return self.task.loss(self.model, batch)


@torch.no_grad()
def evaluate(model, task: Task, tokenizer, loader, items, device="cpu", progress: bool = False,
             decoding: dict | None = None) -> tuple[float, dict]:
    """Generate for every example of `loader` (with `decoding`: a run's `task.decoding(cfg)`; None: the defaults)
    and score against `items`: (score, id → text)."""
    model.eval()
    preds = {}
    for batch in progress_bar(iterable=loader, desc=f"generate {task.name}", disable=not progress, leave=False):
        batch = to_device(batch, device)
        preds.update(zip(batch["ids"], task.predict(model, batch, tokenizer, **(decoding or {}))))
    return task.score(preds, items), preds


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
