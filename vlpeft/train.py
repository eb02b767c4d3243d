"""One fine-tuning run: the unit every method notebook and every sweep cell executes.

    cfg = RunConfig(task="vqa", method="lora", size=8, data_ratio=0.4, out_dir="runs/demo/vqa/lora/r8")
    metrics = run(cfg)

The paper's optimisation (§IV, appendix; DESIGN §2): AdamW, weight decay 0.05, cross-entropy loss.
Captioning is iteration-based: warm-up 0 → peak LR over `warmup_steps`, then cosine to 0 over `steps`.
VQA is epoch-based: warm-up 1e-6 → peak over `warmup_per_ratio × data_ratio` steps, then cosine to 1e-6 over
`epochs` epochs. The validation metric is computed every `eval_every` steps (the curve of Fig. 6–10); the
paper reports the best validation metric over training, and we also report the test metric of that best
checkpoint. Output folder (DESIGN §4):

    config.json      this RunConfig, written first
    curve.json       [{step, val, loss, lr}] — the validation curve
    train.log        one line per evaluation
    checkpoint/      resumable state every `checkpoint_every` steps (method weights, optimiser, scheduler,
                     RNG, data position, curve); removed when the run completes
    method/          the method's weights only (safetensors) at the best validation step
    metrics.json     written last and atomically: a run is complete iff it exists

A run killed at any point and started again with the same config resumes from its checkpoint and ends with
the same metrics as an uninterrupted run (training is deterministic on CPU: no dropout in BLIP's text
towers, a seeded per-epoch data order).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .data import (CaptionEval, CaptionTrain, Collator, DataError, ImageCache, Paths, VqaSet, check_ratio,
                   load_karpathy, load_vqa, nested_subset)
from .evaluate import evaluate
from .methods import (FAMILY, METHODS, MethodConfig, apply_method, count_parameters, save_method,
                      trainable_state_dict)
from .models import load_model, load_processor
from .world import write_json

TASKS = ("caption", "vqa")
METRIC = {"caption": "cider", "vqa": "vqa_acc"}


@dataclass
class RunConfig:
    # what is trained
    task: str = "caption"                 # caption (consistent with pre-training) | vqa (inconsistent)
    method: str = "lora"                  # full | prompt | prefix | lora | serial_adapter | parallel_adapter
    size: int = 8                         # prompt/prefix length, LoRA rank or adapter hidden size (0 for full)
    tune_classifier: bool = False         # "+ classifier": also fine-tune the decoder's LM head
    data_ratio: float = 1.0               # fraction of the training split (nested subsets, see data.py)
    seed: int = 0
    # optimisation (embedded-world defaults; the paper's values are in sweep.PAPER and DESIGN §2)
    lr: float = 1e-3                      # peak learning rate
    weight_decay: float = 0.05
    batch_size: int = 32                  # paper: 256 over 4 GPUs
    steps: int = 300                      # caption: total iterations (paper: 4000)
    warmup_steps: int = 30                # caption: warm-up 0 → peak (paper: 400)
    epochs: int = 3                       # vqa: epochs (paper: 10)
    warmup_per_ratio: int = 60            # vqa: warm-up 1e-6 → peak over this × data_ratio steps (paper: 800)
    # evaluation
    eval_every: int = 50                  # steps between validation evaluations (0: only at the end)
    eval_size: int = 100                  # validation images / questions (0: the whole split)
    test_size: int = 0                    # test images / questions (0: the whole split)
    # where
    model_path: str = "checkpoints/embedded/{task}"  # a BLIP checkpoint dir or hub name; {task} is filled in
    data_root: str = "data/shapes"
    out_dir: str = "runs/scratch"
    # how
    device: str = "auto"                  # auto | cpu | cuda | cuda:1 …
    precision: str = "auto"               # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    image_size: int = 0                   # 0: the processor's own size (the world's 48 px; BLIP-base 384)
    threads: int = 0                      # torch CPU threads (0: leave as is)
    checkpoint_every: int = 50            # steps between resumable checkpoints (0: never)
    cache_images: bool = True             # keep processed images in memory (the small embedded world)
    fault: str = ""                       # test hook: "nan:K" (NaN loss at step K) | "crash:K" | "kill:K"


class ConfigError(ValueError):
    """A run configuration refused before any work; the message says what to change."""


def validate(cfg: RunConfig) -> None:
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.method != "full" and cfg.size <= 0:
        raise ConfigError(f"size must be positive for {cfg.method}, got {cfg.size}")
    try:
        check_ratio(cfg.data_ratio)
    except DataError as e:
        raise ConfigError(str(e)) from None
    for name in ("lr", "batch_size", "steps", "epochs"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}")
    if not (Path(cfg.data_root) / "annotations").is_dir():
        raise ConfigError(f"data root {cfg.data_root!r} has no annotations/ folder; run `vlpeft world --out "
                          f"{cfg.data_root}` or point --data-root at real MSCOCO/VQAv2 files (see README)")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"unknown precision {cfg.precision!r}; choose auto, fp32, bf16 or fp16")


# ---------------------------------------------------------------------------------------------------------
# Schedules (paper appendix), as multipliers of the peak LR for LambdaLR
def lr_lambda(cfg: RunConfig, total: int):
    if cfg.task == "caption":  # 0 → peak over warm-up, cosine to 0
        w = cfg.warmup_steps
        return lambda s: s / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, total - w)))
    floor = 1e-6 / cfg.lr  # vqa: 1e-6 → peak over 800 × ratio steps, cosine to 1e-6
    w = max(1, round(cfg.warmup_per_ratio * cfg.data_ratio))
    return lambda s: (floor + (1 - floor) * s / w if s < w else
                      floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, total - w))))


def plan_steps(cfg: RunConfig, n_train: int) -> int:
    return cfg.steps if cfg.task == "caption" else cfg.epochs * math.ceil(n_train / cfg.batch_size)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The examples of global step `step`: a seeded permutation per epoch, so any step can be re-created
    after a restart without replaying the data loader."""
    per_epoch = math.ceil(n / batch_size)
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[k * batch_size:(k + 1) * batch_size].tolist()


# ---------------------------------------------------------------------------------------------------------
def task_loss(model, task: str, b: dict) -> torch.Tensor:
    """Cross-entropy of the target text. VQA runs BLIP's question encoder → answer decoder route directly,
    because `BlipForQuestionAnswering.forward` feeds `labels` (with -100 padding) back in as decoder input."""
    if task == "caption":
        return model(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     labels=b["labels"]).loss
    image = model.vision_model(pixel_values=b["pixel_values"]).last_hidden_state                    # (B, 1+N, d)
    q = model.text_encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                           encoder_hidden_states=image).last_hidden_state                          # (B, T_q, d)
    return model.text_decoder(input_ids=b["decoder_input_ids"], attention_mask=b["decoder_attention_mask"],
                              encoder_hidden_states=q, encoder_attention_mask=b["attention_mask"],
                              labels=b["labels"]).loss


def resolve_device(cfg: RunConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_dtype(cfg: RunConfig, device: torch.device):
    if device.type != "cuda" or cfg.precision == "fp32":
        return None
    if cfg.precision == "fp16":
        return torch.float16
    return torch.bfloat16  # auto / bf16


@dataclass
class Ranks:
    """Data-parallel processes started by `accelerate launch` (or torchrun). Every rank trains on its shard of
    each global batch and the gradients are averaged by hand — not through DDP, because the VQA loss calls
    BLIP's towers directly rather than the wrapped model's forward, which DDP's reducer needs. Rank 0 alone
    evaluates and writes files; the others wait for it at the end."""
    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.clone()
            torch.distributed.all_reduce(t)
            t /= self.world
        return t

    def average_grads(self, params) -> None:
        if self.world > 1:
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(self.mean(p.grad))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def ranks() -> Ranks:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    from accelerate import PartialState
    state = PartialState()
    return Ranks(state.process_index, state.num_processes, state.device)


def _fault(cfg: RunConfig, step: int, loss: torch.Tensor) -> torch.Tensor:
    kind, _, at = cfg.fault.partition(":")
    if not kind or int(at) != step:
        return loss
    if kind == "nan":
        return loss * float("nan")
    if kind == "crash":
        raise RuntimeError(f"injected crash at step {step} (RunConfig.fault={cfg.fault!r})")
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ConfigError(f"unknown fault {cfg.fault!r}")


# ---------------------------------------------------------------------------------------------------------
def run(cfg: RunConfig, progress: bool = True) -> dict:
    """Train, evaluate and write the output folder; return metrics.json's content. A complete run is not
    redone; an interrupted one resumes from its checkpoint."""
    validate(cfg)
    out = Path(cfg.out_dir)
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    dp = ranks()
    if dp.main:
        write_json(out / "config.json", dataclasses.asdict(cfg), indent=2)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dp.device if dp.device is not None and cfg.device == "auto" else resolve_device(cfg)
    amp = autocast_dtype(cfg, device)

    # model + method
    model_path = cfg.model_path.format(task=cfg.task)
    processor = load_processor(model_path)
    if cfg.image_size:
        processor.image_processor.size = {"height": cfg.image_size, "width": cfg.image_size}
    tokenizer = processor.tokenizer
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.task, model_path)
    apply_method(model, MethodConfig(cfg.method, cfg.size, cfg.tune_classifier))
    model.to(device)
    trainable, total_params = count_parameters(model)

    # data
    paths = Paths(Path(cfg.data_root))
    images = ImageCache(processor.image_processor, enabled=cfg.cache_images)
    if cfg.task == "caption":
        train_items = nested_subset(load_karpathy(paths.karpathy, paths.images, "train"), cfg.data_ratio, cfg.seed)
        val_items = load_karpathy(paths.karpathy, paths.images, "val")
        test_items = load_karpathy(paths.karpathy, paths.images, "test")
        train_set = CaptionTrain(train_items, images)
        make_eval = CaptionEval
    else:
        train_items = nested_subset(load_vqa(paths, "train"), cfg.data_ratio, cfg.seed)
        val_items, test_items = load_vqa(paths, "val"), load_vqa(paths, "test")
        train_set = VqaSet(train_items, images)
        make_eval = VqaSet
    val_items = val_items[:cfg.eval_size] if cfg.eval_size else val_items
    test_items = test_items[:cfg.test_size] if cfg.test_size else test_items
    collate = Collator(tokenizer, model.config.text_config.bos_token_id, cfg.task)
    loader = lambda items: torch.utils.data.DataLoader(  # noqa: E731
        make_eval(items, images), batch_size=64, collate_fn=collate)
    val_loader, test_loader = loader(val_items), loader(test_items)

    def validate_now() -> float | None:
        if not dp.main:
            return None
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            return evaluate(model, tokenizer, cfg.task, val_loader, val_items, device)[0]

    # optimisation
    total = plan_steps(cfg, len(train_set))
    params = [p for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    scaler = torch.amp.GradScaler(enabled=amp == torch.float16)

    # resume, or start with the zero-shot point of the curve
    ckpt = out / "checkpoint"
    started = time.time()
    state = {"step": 0, "curve": [], "best_val": -1.0, "best_step": -1, "train_time": 0.0, "samples": 0,
             "wall_before": 0.0, "running": []}  # running: train losses since the last evaluation
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        model.load_state_dict(load_file(ckpt / "trainable.safetensors"), strict=False)
        saved = torch.load(ckpt / "optim.pt", weights_only=False)
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        torch.set_rng_state(saved["rng"])
    else:
        zero = validate_now()
        state["curve"].append({"step": 0, "val": zero, "loss": None, "lr": 0.0})
    best_path = out / "best.safetensors"

    bar = tqdm(total=total, initial=state["step"], disable=not (progress and dp.main),
               desc=f"{cfg.task} {cfg.method}{'+cls' if cfg.tune_classifier else ''} s={cfg.size} r={cfg.data_ratio}")
    log = (out / "train.log").open("a") if dp.main else open(os.devnull, "w")
    status = "complete"
    model.train()
    while state["step"] < total:
        step = state["step"]
        t0 = time.time()
        shard = batch_indices(len(train_set), cfg.batch_size, cfg.seed, step)[dp.rank::dp.world]
        b = collate([train_set[i] for i in shard])
        b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            shard_loss = _fault(cfg, step, task_loss(model, cfg.task, b))
        loss = dp.mean(shard_loss.detach())  # the global batch's loss, the same on every rank
        if not torch.isfinite(loss):
            status = "diverged"
            log.write(f"step {step}: loss {loss.item()} — run diverged\n")
            break
        opt.zero_grad(set_to_none=True)
        scaler.scale(shard_loss).backward()
        scaler.unscale_(opt)
        dp.average_grads(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        state["step"] += 1
        state["samples"] += len(b["ids"]) * dp.world
        state["train_time"] += time.time() - t0
        state["running"].append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{sched.get_last_lr()[0]:.2e}",
                        sps=f"{state['samples'] / max(state['train_time'], 1e-9):.0f}")
        s = state["step"]
        if dp.main and ((cfg.eval_every and s % cfg.eval_every == 0) or s == total):
            val = validate_now()
            model.train()
            state["curve"].append({"step": s, "val": val, "loss": sum(state["running"]) / len(state["running"]),
                                   "lr": sched.get_last_lr()[0]})
            log.write(f"step {s}: loss {state['curve'][-1]['loss']:.4f} val {METRIC[cfg.task]} {val:.4f}\n")
            log.flush()
            state["running"] = []
            if val > state["best_val"]:
                state["best_val"], state["best_step"] = val, s
                save_file(trainable_state_dict(model), best_path)
            write_json(out / "curve.json", state["curve"], indent=2)
        if dp.main and cfg.checkpoint_every and s % cfg.checkpoint_every == 0 and s < total:
            _checkpoint(ckpt, model, opt, sched, state, started)
    bar.close()
    log.close()

    if not dp.main:  # rank 0 evaluates and writes; the others return what it wrote
        dp.barrier()
        return json.loads((out / "metrics.json").read_text())

    # test metric of the best validation checkpoint; the method's weights from that checkpoint
    test = None
    if status == "complete":
        if best_path.exists():
            model.load_state_dict(load_file(best_path), strict=False)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            test = evaluate(model, tokenizer, cfg.task, test_loader, test_items, device)[0]
        save_method(model, out / "method")
    write_json(out / "curve.json", state["curve"], indent=2)
    metrics = {
        "status": status, "task": cfg.task, "method": cfg.method, "family": FAMILY[cfg.method],
        "size": cfg.size, "tune_classifier": cfg.tune_classifier, "data_ratio": cfg.data_ratio, "seed": cfg.seed,
        "metric": METRIC[cfg.task], "best_val": state["best_val"] if state["best_step"] >= 0 else None,
        "best_step": state["best_step"], "test": test,
        "final_val": state["curve"][-1]["val"] if state["curve"] else None,
        "zero_shot_val": state["curve"][0]["val"] if state["curve"] and state["curve"][0]["step"] == 0 else None,
        "trainable_params": trainable, "all_params": total_params, "trainable_pct": 100 * trainable / total_params,
        "n_train": len(train_set), "steps": state["step"], "planned_steps": total,
        "wall_s": state["wall_before"] + time.time() - started, "train_s": state["train_time"],
        "samples_per_s": state["samples"] / max(state["train_time"], 1e-9),
        "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
        "device": str(device), "error": None if status == "complete" else "non-finite loss",
    }
    write_json(out / "metrics.json", metrics, indent=2)  # last: marks the run complete
    if ckpt.exists():
        for f in ckpt.iterdir():
            f.unlink()
        ckpt.rmdir()
    best_path.unlink(missing_ok=True)
    dp.barrier()
    return metrics


def _checkpoint(ckpt: Path, model, opt, sched, state: dict, started: float) -> None:
    """Resumable state; state.json is written last, so a checkpoint is only used once it is whole."""
    ckpt.mkdir(exist_ok=True)
    (ckpt / "state.json").unlink(missing_ok=True)
    save_file(trainable_state_dict(model), ckpt / "trainable.safetensors")
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "rng": torch.get_rng_state()},
               ckpt / "optim.pt")
    wall = state["wall_before"] + time.time() - started
    write_json(ckpt / "state.json", state | {"wall_before": wall}, indent=2)
