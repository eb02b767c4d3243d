"""The catalogue: every method and task of the study, named once. It imports nothing heavy, so the CLI, the
sweep, the results table, the claims and the figures read it without loading torch.

Adding a method is one entry in METHODS plus one file with its `apply(model, towers, cfg) -> undo list`
(named by the entry's `impl`; see `vlpeft/methods/__init__.py`): its weights are whatever parameters the
injection adds, and they are the only ones trained.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import MethodError


@dataclass(frozen=True)
class Method:
    name: str
    family: str            # "full" | "embedding" (prompt, prefix) | "layer" (LoRA, adapters): paper §III
    title: str             # what a figure legend or a notebook heading calls it
    knob: str | None       # what Table II's size means for it (None: no size)
    default_size: int      # the size a run gets when none is given (the middle of the tiny grid)
    notebook: str          # notebooks/<notebook>.ipynb: its read-along notebook, which a sweep cell executes
    colour: str            # embedding methods in blues, layer methods in warm colours, full fine-tuning black
    impl: str | None       # "module:function" that injects it (None: full fine-tuning, nothing injected)


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("full", "full", "full fine-tuning", None, 0, "01_full_finetune", "black", None),
    Method("prompt", "embedding", "prompt-tuning", "prompt length p", 8, "02_prompt_tuning", "#4c78a8",
           "vlpeft.methods.prompt:apply"),
    Method("prefix", "embedding", "prefix-tuning", "prefix length p", 8, "03_prefix_tuning", "#72b7b2",
           "vlpeft.methods.prefix:apply"),
    Method("lora", "layer", "LoRA", "rank r", 8, "04_lora", "#e45756", "vlpeft.methods.lora:apply"),
    Method("serial_adapter", "layer", "serial adapter", "hidden size h", 16, "05_serial_adapter", "#f58518",
           "vlpeft.methods.adapter:apply_serial"),
    Method("parallel_adapter", "layer", "parallel adapter", "hidden size h", 16, "06_parallel_adapter",
           "#b279a2", "vlpeft.methods.adapter:apply_parallel"),
]}
FAMILY_COLOURS = {"embedding": "#4c78a8", "layer": "#e45756", "full": "black"}


def method(name: str) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def peft_methods() -> list[str]:
    """The parameter-efficient methods (everything but full fine-tuning), in catalogue order."""
    return [m.name for m in METHODS.values() if m.family != "full"]


def family_methods(family: str) -> list[str]:
    return [m.name for m in METHODS.values() if m.family == family]


def family_of(name: str) -> str | None:
    return METHODS[name].family if name in METHODS else None


@dataclass(frozen=True)
class TaskInfo:
    name: str
    metric: str            # the key metrics.json reports its score under
    metric_label: str
    title: str
    paper_figure: str      # the paper's figure of this task's data-size and parameter-size results
    consistent: bool       # consistent with pre-training (the paper's central distinction)


TASK_INFO: dict[str, TaskInfo] = {t.name: t for t in [
    TaskInfo("caption", "cider", "CIDEr", "captioning (consistent with pre-training)", "Fig. 3", True),
    TaskInfo("vqa", "vqa_acc", "VQA accuracy", "VQA (inconsistent)", "Fig. 4", False),
]}
METRIC_LABEL = {t.metric: t.metric_label for t in TASK_INFO.values()}


def variant(method_name: str, tune_classifier: bool) -> str:
    """The label figures use: "lora", "lora+cls", …; full fine-tuning already tunes the classifier."""
    return method_name if method_name == "full" or not tune_classifier else f"{method_name}+cls"
