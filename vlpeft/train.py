"""One fine-tuning run: the unit every method notebook and every sweep cell executes.

    cfg = RunConfig(task="vqa", method="lora", size=8, data_ratio=0.4, out_dir="runs/demo/vqa/lora/r8")
    metrics = run(cfg)

The paper's optimisation (§IV and appendix, Table II): AdamW, weight decay 0.05, cross-entropy loss, the task's
schedule (`vlpeft.tasks`: captioning warms up 0 → peak over `warmup_steps` then cosine to 0 over `steps`; VQA
warms up 1e-6 → peak over `warmup_per_ratio × data_ratio` steps then cosine to 1e-6 over `epochs` epochs).
The validation metric is computed every `eval_every` steps (the curves of Fig. 6–10); the paper reports the
best validation metric over training, and we also report the test metric of that best checkpoint.

The loop reads top to bottom: set-up → a typed run state (fresh, or resumed from the folder's checkpoint) →
`train_step` → `evaluate_if_due` → checkpoint → `finish`. The run folder (`vlpeft.rundir`) answers for one
config and one owner; data parallelism (`vlpeft.parallel`) and fault injection (`vlpeft.faults`) live beside
the loop. A run killed at any point and started again with the same config resumes from its checkpoint and
ends with the same metrics as an uninterrupted run: BLIP's text towers have no dropout here, and the data
order is a seeded permutation per epoch addressable by step (`data.StepBatches`), whatever the number of
DataLoader workers.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import compiling, faults, numerics
from .blip.checkpoints import check_path
from .blip.models import load_model, load_processor
from .catalog import METHODS, variant
from .config import RunConfig, starting_checkpoint
from .data import Paths, Pixels, StepBatches, check_images, nested_subset, question_prior, ratio_problem
from .devices import PRECISIONS, autocast_dtype, device_problem, resolve_device
from .errors import ConfigError, Interrupted, MetricError, Preempted
from .features import ensure_features
from .io import progress_bar, provenance, write_json
from .methods import (
    MethodConfig,
    apply_method,
    count_parameters,
    load_method,
    save_method,
    size_problem,
    trainable_parameters,
    trainable_state_dict,
)
from .parallel import Ranks, ranks
from .rundir import RunFolder, config_dict
from .signals import StopSignals
from .tasks import TaskModel, evaluate, get_task, to_device

POSITIVE = ("batch_size", "steps", "epochs", "eval_batch_size", "caption_beams", "caption_max_tokens", "vqa_beams",
            "vqa_max_tokens")
NON_NEGATIVE = ("warmup_steps", "warmup_per_ratio", "eval_every", "eval_size", "test_size", "threads",
                "checkpoint_every", "image_size", "caption_min_tokens", "vqa_min_tokens")


def validate(cfg: RunConfig) -> RunConfig:
    """Refuse a config before any work, with the field and what to do; returns it with defaults filled in (the
    method's default size, the checkpoint's own VQA route)."""
    task = get_task(cfg.task)
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    entry = METHODS[cfg.method]
    if entry.sized and cfg.size == 0:
        cfg = dataclasses.replace(cfg, size=entry.default_size)
    problem = next((p for p in field_problems(cfg) if p is not None), None)
    if problem is not None:
        raise ConfigError(problem)
    if (problem := task.tool_problem()) is not None:
        raise MetricError(problem)
    if (problem := task.start_problem(cfg.checkpoint)) and not cfg.allow_vqa_finetuned:
        raise ConfigError(f"{problem}. The study needs a pre-trained start (the task must not be consistent with it "
                          f"by accident): convert BLIP's pre-training checkpoint with `vlpeft convert-blip`, or pass "
                          f"--allow-vqa-finetuned if you mean it.")
    return dataclasses.replace(cfg, vqa_route=task.resolve_route(cfg.vqa_route, check_path(cfg.checkpoint)[1]))


def field_problems(cfg: RunConfig):
    """What is wrong with each field, in the order a user would fix them: None for a field that is fine."""
    yield size_problem(cfg.method, cfg.size)
    yield ratio_problem(cfg.data_ratio)
    for name in ("lr", "weight_decay"):
        value = getattr(cfg, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value)) or value < 0 or (name == "lr" and value == 0):
            yield f"{name} must be a finite {'positive' if name == 'lr' else 'non-negative'} number, got {value}"
    if not (isinstance(cfg.label_smoothing, (int, float)) and 0.0 <= cfg.label_smoothing < 1.0):
        yield f"label_smoothing must be in [0, 1), got {cfg.label_smoothing} (0.0: the paper's loss, 0.1: BLIP's)"
    yield from (f"{name} must be positive, got {getattr(cfg, name)}" for name in POSITIVE if getattr(cfg, name) <= 0)
    yield from (f"{name} must be 0 or more, got {getattr(cfg, name)}" for name in NON_NEGATIVE
                if getattr(cfg, name) < 0)
    for task in ("caption", "vqa"):
        least, most = getattr(cfg, f"{task}_min_tokens"), getattr(cfg, f"{task}_max_tokens")
        if least > most:
            yield f"{task}_min_tokens ({least}) is more than {task}_max_tokens ({most}); lower it or raise the most"
    if cfg.num_workers < -1:
        yield f"num_workers must be -1 (auto) or 0 or more, got {cfg.num_workers}"
    yield device_problem(cfg.device)
    for name, what in (("out_dir", "run folder"), ("feature_cache", "feature-cache folder")):
        value = getattr(cfg, name)
        if value and Path(value).exists() and not Path(value).is_dir():
            yield (f"--{name.replace('_', '-')} {value} is a file, not a folder; the {what} must be a folder "
                   f"(new or vlpeft's own)")
    if cfg.compile not in compiling.COMPILE_CHOICES:
        yield f"unknown --compile {cfg.compile!r}; choose auto (where it pays), on or off"
    yield numerics.mode_problem(cfg.numerics)
    yield numerics.threads_problem(cfg.threads, cfg.numerics)
    if cfg.precision not in PRECISIONS:
        yield f"unknown precision {cfg.precision!r}; choose {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}"
    yield faults.check(cfg.fault)
    if not (Path(cfg.data_root) / "annotations").is_dir():
        yield (f"data root {cfg.data_root!r} has no annotations/ folder; run `vlpeft world --out {cfg.data_root}` "
               f"or point --data-root at real MSCOCO/VQAv2 files (see the README)")


# ---------------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """Everything a run builds before its first step."""
    cfg: RunConfig
    dp: Ranks
    device: torch.device
    amp: torch.dtype | None
    task: object
    tokenizer: object
    model: torch.nn.Module
    loss_module: torch.nn.Module        # the task's loss (compiled where it pays; in DDP when there are several ranks)
    params: list
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_set: torch.utils.data.Dataset
    val: tuple                          # (loader, items)
    test: tuple
    total: int
    trainable: int
    all_params: int
    compiled: str                       # whether the training step is compiled, and why (compiling.plan)
    features: str | None = None         # the feature-cache key the run read its image states from
    question_prior: float | None = None  # VQA: what the question alone scores on the run's validation questions

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def train_loader(self, start: int):
        """Batches of steps start..total-1 (the sampler replays the seeded order from any step)."""
        sampler = StepBatches(len(self.train_set), self.cfg.batch_size, self.cfg.seed, start, self.total,
                              self.dp.rank, self.dp.world)
        return make_loader(self.cfg, self.device, self.task, self.tokenizer, self.train_set, batch_sampler=sampler)


def make_loader(cfg: RunConfig, device: torch.device, task, tokenizer, dataset, **kw):
    """A DataLoader with the task's collation: in-process on the CPU, up to 8 pinned-memory workers on CUDA."""
    workers = cfg.num_workers if cfg.num_workers >= 0 else (
        0 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) // 2)))
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None, collate_fn=functools.partial(task.collate, tokenizer), **kw)


def build(cfg: RunConfig, dp: Ranks, progress: bool = False) -> Setup:
    """Data first (a bad image or annotation is found before anything is written), then model and method."""
    task = get_task(cfg.task)
    all_train, val_items, test_items = task.splits(Paths.of(cfg))
    train_items = nested_subset(all_train, cfg.data_ratio, cfg.seed)
    val_items = val_items[:cfg.eval_size] if cfg.eval_size else val_items
    # the fairness check's bar (reports/tiny/schedule.md §2): the question-type prior of the whole training split on
    # the questions this run validates on
    prior = question_prior(all_train, val_items)[0] if cfg.task == "vqa" else None
    test_items = test_items[:cfg.test_size] if cfg.test_size else test_items
    check_images(task.image_paths(train_items + val_items + test_items))

    device = resolve_device(cfg, dp)
    processor = load_processor(cfg.checkpoint)
    if cfg.image_size:
        processor.image_processor.size = {"height": cfg.image_size, "width": cfg.image_size}
    model = base_model(cfg)
    model.text_decoder.label_smoothing = cfg.label_smoothing     # the run's choice, whatever the checkpoint says
    apply_method(model, MethodConfig(cfg.method, cfg.size, cfg.tune_classifier), seed=cfg.seed)
    model.to(device)
    trainable, all_params = count_parameters(model)
    amp = autocast_dtype(cfg, device)

    images = Pixels(processor.image_processor, keep=cfg.cache_images)
    vision_frozen = not any(p.requires_grad for p in model.vision_model.parameters())
    if cfg.feature_cache and vision_frozen:  # full fine-tuning trains the tower: never cached
        images = ensure_features(model, processor, task.image_paths(train_items + val_items + test_items),
                                 cfg.feature_cache, dtype=amp or torch.float32, device=device, progress=progress)

    train_set = task.train_examples(train_items, images)
    total = task.plan_steps(cfg, len(train_set))
    warmup = task.warmup(cfg)
    if warmup >= total:
        raise ConfigError(f"the warm-up ({warmup} steps) is not shorter than the run ({total} steps): the LR "
                          f"would never reach its peak; shorten the warm-up or train longer")
    params = trainable_parameters(model)
    # fused AdamW (one kernel over every tensor) where the device has it: the same update, ~5 % faster a step
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type in ("cpu", "cuda") or None)
    loss_module = dp.wrap(TaskModel(model, task))
    compile_it, why = compiling.plan(cfg, total, device)
    if compile_it:
        loss_module = compiling.CompiledLoss(loss_module, cfg.compile_cache)

    def loader(items):
        return make_loader(cfg, device, task, processor.tokenizer, task.eval_examples(items, images),
                           batch_size=cfg.eval_batch_size)
    return Setup(cfg=cfg, dp=dp, device=device, amp=amp, task=task, tokenizer=processor.tokenizer, model=model,
                 loss_module=loss_module, params=params, optimizer=optimizer,
                 scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, task.lr_lambda(cfg, total)),
                 train_set=train_set, val=(loader(val_items), val_items), test=(loader(test_items), test_items),
                 total=total, trainable=trainable, all_params=all_params, compiled=why,
                 features=getattr(images, "folder", Path("")).name or None, question_prior=prior)


# ---------------------------------------------------------------------------------------------------------
@dataclass
class RunState:
    """What a checkpoint saves besides the weights and the optimiser."""
    step: int = 0
    curve: list = field(default_factory=list)      # [{step, val, loss, lr}]
    best_val: float | None = None
    best_step: int = -1
    running: list = field(default_factory=list)    # training losses since the last evaluation
    train_s: float = 0.0
    eval_s: float = 0.0                            # time spent on the validation curve
    samples: int = 0
    wall_before: float = 0.0                       # wall time of earlier (interrupted) attempts
    checkpoint_step: int = 0


def train_step(s: Setup, batch: dict, step: int) -> float:
    """One optimiser step on one global batch; returns the global batch's loss (NaN: the run diverged)."""
    with s.autocast():
        loss = faults.inject(s.cfg.fault, step, s.loss_module(to_device(batch, s.device)))
    mean = s.dp.mean(loss.detach()).item()
    if not math.isfinite(mean):
        return mean
    s.optimizer.zero_grad(set_to_none=True)
    try:
        loss.backward()                            # DDP averages the gradients over ranks here
    except Exception as e:  # noqa: BLE001 - only the compiler's own failure is handled; anything else re-raises
        if compiling.fall_back(s.loss_module, e):
            return train_step(s, batch, step)      # the same step again, eager
        raise
    torch.nn.utils.clip_grad_norm_(s.params, 1.0)
    s.optimizer.step()
    s.scheduler.step()
    return mean



def base_model(cfg: RunConfig):
    """The run's checkpoint on the run's VQA route — the model every run, notebook check and trained model starts
    from: `cfg.vqa_route` wins over the checkpoint's own (`validate` resolves "" to it), and a route the tasks do not
    know is refused here, at load (`Task.on_route`)."""
    return get_task(cfg.task).on_route(load_model(cfg.task, cfg.checkpoint), cfg.vqa_route)


def trained_model(cfg: RunConfig, folder: str | Path):
    """A finished run's model for inference: `base_model` with the method weights the run saved in `folder`."""
    return load_method(base_model(cfg), Path(folder) / "method", cfg.seed).eval()


def validate_now(s: Setup) -> float:
    with s.autocast():
        return evaluate(s.model, s.task, s.tokenizer, *s.val, s.device, decoding=s.task.decoding(s.cfg))[0]


def evaluate_if_due(s: Setup, state: RunState, folder: RunFolder, log) -> None:
    """Every `eval_every` steps and at the last: the validation point of the curve; best weights kept."""
    step = state.step
    if not s.dp.main or not ((s.cfg.eval_every and step % s.cfg.eval_every == 0) or step == s.total):
        return
    t0 = time.time()
    val = validate_now(s)
    state.eval_s += time.time() - t0
    s.model.train()
    loss = sum(state.running) / len(state.running)
    state.curve.append({"step": step, "val": val, "loss": loss, "lr": s.scheduler.get_last_lr()[0]})
    state.running = []
    log.write(f"step {step}: loss {loss:.4f} val {s.task.metric} {val:.4f}\n")
    log.flush()
    if state.best_val is None or val > state.best_val:
        state.best_val, state.best_step = val, step
        save_file(trainable_state_dict(s.model), folder.best_path)
    write_json(folder.path / "curve.json", state.curve)


def checkpoint_if_due(s: Setup, state: RunState, folder: RunFolder, started: float, now: bool = False) -> None:
    """Every `checkpoint_every` steps (or `now`, when the run is asked to stop), the state to resume from."""
    every = s.cfg.checkpoint_every
    if s.dp.main and (now or (every and state.step % every == 0)) and state.step < s.total:
        state.checkpoint_step = state.step
        folder.save_checkpoint(trainable_state_dict(s.model), s.optimizer, s.scheduler,
                               dataclasses.asdict(state) | {"wall_before": state.wall_before + time.time() - started})


def resume_or_start(s: Setup, folder: RunFolder, saved) -> RunState:
    """The checkpoint's state (`saved`, from `RunFolder.load_checkpoint`), or a fresh one whose curve starts with
    the zero-shot validation point."""
    if saved is None:
        state = RunState()
        if s.dp.main:
            state.curve.append({"step": 0, "val": validate_now(s), "loss": None, "lr": 0.0})
        return state
    state, weights, optim = saved
    s.model.load_state_dict(weights, strict=False)
    s.optimizer.load_state_dict(optim["opt"])
    s.scheduler.load_state_dict(optim["sched"])
    torch.set_rng_state(optim["rng"]["cpu"])
    if "cuda" in optim["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(optim["rng"]["cuda"])
    return RunState(**state)


def finish(s: Setup, state: RunState, folder: RunFolder, status: str, started: float) -> dict:
    """Test metric of the best validation checkpoint, the method's weights from it, metrics.json last."""
    test, test_s = None, 0.0
    if status == "complete":
        if state.best_step != state.step and folder.best_path.exists():
            s.model.load_state_dict(load_file(folder.best_path), strict=False)
        t0 = time.time()
        with s.autocast():
            test = evaluate(s.model, s.task, s.tokenizer, *s.test, s.device, decoding=s.task.decoding(s.cfg))[0]
        test_s = time.time() - t0
        save_method(s.model, folder.path / "method")
    write_json(folder.path / "curve.json", state.curve)
    cfg, start = s.cfg, starting_checkpoint(s.cfg.checkpoint)
    metrics = {
        "status": status, "task": cfg.task, "method": cfg.method, "family": METHODS[cfg.method].family,
        "variant": variant(cfg.method, cfg.tune_classifier), "size": cfg.size,
        "tune_classifier": cfg.tune_classifier, "data_ratio": cfg.data_ratio, "seed": cfg.seed,
        "metric": s.task.metric, "best_val": state.best_val, "best_step": state.best_step, "test": test,
        "final_val": state.curve[-1]["val"] if state.curve else None,
        "zero_shot_val": state.curve[0]["val"] if state.curve and state.curve[0]["step"] == 0 else None,
        "trainable_params": s.trainable, "all_params": s.all_params,
        "trainable_pct": 100 * s.trainable / s.all_params, "n_train": len(s.train_set), "steps": state.step,
        "planned_steps": s.total, "wall_s": state.wall_before + time.time() - started, "train_s": state.train_s,
        "eval_s": state.eval_s, "test_s": test_s,
        "samples_per_s": state.samples / max(state.train_s, 1e-9),
        "peak_memory_mb": torch.cuda.max_memory_allocated(s.device) / 2**20 if s.device.type == "cuda" else None,
        "device": str(s.device), "vision_features": s.features,
        "compiled": s.compiled.startswith("compiled") and getattr(s.loss_module, "failed", "") is None,
        "compile": s.compiled if getattr(s.loss_module, "failed", None) is None else f"eager: {s.loss_module.failed}",
        "error": None if status == "complete" else "non-finite loss",
        "vqa_route": cfg.vqa_route or None, "recipe": start.get("pretrain", {}).get("recipe"),
        "question_prior": s.question_prior, "start": start, "provenance": provenance(),
    }
    return folder.finish(metrics)


# ---------------------------------------------------------------------------------------------------------
def run(cfg: RunConfig, progress: bool = True, overwrite: bool = False) -> dict:
    """Train, evaluate and write the run folder; return metrics.json's content. A complete run of the same
    config is not redone; an interrupted one resumes from its checkpoint; another config is refused."""
    cfg = validate(cfg)
    dp = ranks()
    folder, config = RunFolder(cfg.out_dir), config_dict(cfg)
    folder.check(config, overwrite, probe=dp.main)  # read-only: another config is refused before any work
    if folder.is_complete() and not overwrite:
        return folder.metrics()
    if dp.main and (note := get_task(cfg.task).route_note(cfg.vqa_route, check_path(cfg.checkpoint)[1])):
        print(note, file=sys.stderr, flush=True)   # a route not the checkpoint's own: allowed, said
    with numerics.computing(cfg.numerics, cfg.threads):  # one number on any machine (numerics.py)
        return _run(cfg, dp, folder, config, progress, overwrite)


def _run(cfg: RunConfig, dp, folder: RunFolder, config: dict, progress: bool, overwrite: bool) -> dict:
    s = build(cfg, dp, progress)                   # bad data or model: refused with nothing written
    if dp.main:
        folder.claim(config, overwrite)            # one owner from here on
    state = RunState()
    try:
        saved = folder.load_checkpoint()           # a damaged checkpoint is refused before anything is written
        if dp.main:
            folder.start(config)
        started, status = time.time(), "complete"
        state = resume_or_start(s, folder, saved)
        bar = progress_bar(total=s.total, initial=state.step, disable=not (progress and dp.main),
                           desc=f"{cfg.task} {variant(cfg.method, cfg.tune_classifier)} s={cfg.size} "
                                f"r={cfg.data_ratio}")
        log = (folder.path / "train.log").open("a") if dp.main else open(os.devnull, "w")
        s.model.train()
        with bar, log, StopSignals() as stop:
            for batch in s.train_loader(state.step):
                t0 = time.time()
                loss = train_step(s, batch, state.step)
                if not math.isfinite(loss):
                    status = "diverged"
                    log.write(f"step {state.step}: loss {loss} — run diverged\n")
                    break
                state.step += 1
                state.train_s += time.time() - t0
                state.samples += len(batch["ids"]) * dp.world
                state.running.append(loss)
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{s.scheduler.get_last_lr()[0]:.2e}",
                                sps=f"{state.samples / max(state.train_s, 1e-9):.0f}", refresh=False)
                evaluate_if_due(s, state, folder, log)
                checkpoint_if_due(s, state, folder, started, now=stop.requested is not None)
                if stop.requested and state.step < s.total:   # at the last step: just finish
                    log.write(f"step {state.step}: {stop.requested} — checkpointed, stopping\n")
                    raise Preempted(f"{stop.requested} at step {state.step} of {s.total}: the checkpoint is saved in "
                                    f"{folder.checkpoint_dir}; run the same command again (or the sweep) to resume "
                                    f"from step {state.checkpoint_step}")
        if not dp.main:  # rank 0 evaluates and writes; the others return what it wrote
            dp.barrier()
            return folder.metrics()
        metrics = finish(s, state, folder, status, started)
        dp.barrier()
        return metrics
    except KeyboardInterrupt:
        resume = (f"resume from step {state.checkpoint_step}" if state.checkpoint_step else "start again")
        raise Interrupted(f"interrupted at step {state.step} of {cfg.out_dir}; run the same command again to "
                          f"{resume}") from None
    finally:
        if dp.main:
            folder.release()
