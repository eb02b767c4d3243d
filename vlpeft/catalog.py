"""The catalogue: every method and task of the study, named once, with every fact about a method on its entry. It
imports nothing heavy, so the CLI, the sweep, the results table, the claims and the figures read it without loading
torch.

Adding a method is one entry in METHODS plus one file with its `apply(model, towers, cfg) -> undo list` and its
`count(size, text_config) -> (n, formula)` (named by the entry's `impl` and `count`; see `vlpeft/methods/__init__.py`
and docs/adding_a_method.md): its weights are whatever parameters the injection adds, and they are the only ones
trained. Every shared test check takes it from here. The paper's study is named below (PAPER_PEFT): a new method
joins no committed grid and no claim; it runs as `--methods` extras beside the paper's (`study.presets.grid`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import MethodError


@dataclass(frozen=True)
class Method:
    name: str
    family: str            # "full" | "embedding" (prompt, prefix) | "layer" (LoRA, adapters): paper §III
    title: str             # what a figure legend or a notebook heading calls it
    knob: str | None       # what its size means ("rank r"); None: it has no size (a run's size stays 0)
    default_size: int      # the size a run gets when none is given: the middle of `tiny_sizes` (0 without a size)
    notebook: str          # notebooks/<notebook>.ipynb: its read-along notebook, which a sweep cell executes
    colour: str            # embedding methods in blues, layer methods in warm colours, full fine-tuning black
    impl: str | None       # "module:function" that injects it (None: full fine-tuning, nothing injected)
    count: str | None = None   # "module:function": its trainable parameters per text tower in closed form, and the
    #                            formula in words (None: full fine-tuning, which trains every parameter)
    identity_at_init: str = ""   # why the injected model starts equal to the base model ("": it does not)
    paper_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per task: Table II's sizes
    paper_lr: dict[str, float] = field(default_factory=dict)               # per task: Table II's learning rate
    tiny_sizes: tuple[int, ...] = ()           # the embedded grid's sizes, ascending (default_size the middle)
    embedded_lr: dict[str, float] = field(default_factory=dict)  # per task: the embedded schedule's learning rate
    #                                                              (reports/tiny/schedule.md)

    @property
    def sized(self) -> bool:
        """Whether it has a size (Table II's knob): prompt length, rank, hidden size. Full fine-tuning has none."""
        return self.knob is not None


TABLE_II_PROMPT = (2, 4, 8, 16, 32, 64, 128)   # Table II (and the appendix): prompt and prefix lengths, LoRA ranks,
TABLE_II_LORA = (2, 4, 8, 16, 32)                # adapter hidden sizes, per task
TABLE_II_ADAPTER = {"caption": (16, 32, 64, 128), "vqa": (16, 32, 64, 128, 256, 512)}
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("full", "full", "full fine-tuning", None, 0, "01_full_finetune", "black", None,
           identity_at_init="nothing is injected",
           paper_lr={"caption": 1e-5, "vqa": 2e-5},     # not in Table II: BLIP's fine-tuning learning rates
           embedded_lr={"caption": 2e-4, "vqa": 3e-4}),
    Method("prompt", "embedding", "prompt-tuning", "prompt length p", 8, "02_prompt_tuning", "#4c78a8",
           "vlpeft.methods.prompt:apply", "vlpeft.methods.prompt:count",
           paper_sizes={"caption": TABLE_II_PROMPT, "vqa": TABLE_II_PROMPT}, paper_lr={"caption": 3e-4, "vqa": 3e-4},
           tiny_sizes=(2, 8, 32), embedded_lr={"caption": 3e-3, "vqa": 3e-3}),
    Method("prefix", "embedding", "prefix-tuning", "prefix length p", 8, "03_prefix_tuning", "#72b7b2",
           "vlpeft.methods.prefix:apply", "vlpeft.methods.prefix:count",
           paper_sizes={"caption": TABLE_II_PROMPT, "vqa": TABLE_II_PROMPT}, paper_lr={"caption": 3e-4, "vqa": 3e-4},
           tiny_sizes=(2, 8, 32), embedded_lr={"caption": 3e-3, "vqa": 3e-3}),
    Method("lora", "layer", "LoRA", "rank r", 8, "04_lora", "#e45756", "vlpeft.methods.lora:apply",
           "vlpeft.methods.lora:count", identity_at_init="its output projection is zero",
           paper_sizes={"caption": TABLE_II_LORA, "vqa": TABLE_II_LORA}, paper_lr={"caption": 5e-6, "vqa": 3e-4},
           tiny_sizes=(2, 8, 32), embedded_lr={"caption": 1e-3, "vqa": 2e-3}),
    Method("serial_adapter", "layer", "serial adapter", "hidden size h", 16, "05_serial_adapter", "#f58518",
           "vlpeft.methods.adapter:apply_serial", "vlpeft.methods.adapter:count",
           identity_at_init="its output projection is zero",
           paper_sizes=TABLE_II_ADAPTER, paper_lr={"caption": 1e-6, "vqa": 3e-4},
           tiny_sizes=(4, 16, 64), embedded_lr={"caption": 1e-3, "vqa": 2e-3}),
    Method("parallel_adapter", "layer", "parallel adapter", "hidden size h", 16, "06_parallel_adapter",
           "#b279a2", "vlpeft.methods.adapter:apply_parallel", "vlpeft.methods.adapter:count",
           identity_at_init="its output projection is zero",
           paper_sizes=TABLE_II_ADAPTER, paper_lr={"caption": 1e-6, "vqa": 3e-4},
           tiny_sizes=(4, 16, 64), embedded_lr={"caption": 1e-3, "vqa": 2e-3}),
]}
FAMILY_COLOURS = {"embedding": "#4c78a8", "layer": "#e45756", "full": "black"}

# The paper's study, by name: its five PEFT methods (§III) and full fine-tuning. The committed grids (paper, tiny,
# tiny-blip, dial) and claims 1–11 take these and only these; a method added to METHODS runs where it is asked for
# (`--methods`), and the report shows it beside the paper's families, in no claim.
PAPER_PEFT = ("prompt", "prefix", "lora", "serial_adapter", "parallel_adapter")
PAPER_METHODS = (*PAPER_PEFT, "full")


def method(name: str) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def size_problem(name: str, size) -> str | None:
    """What is wrong with a method's size (Table II's knob), or None: the one check, for the CLI, runs and
    injections."""
    entry = method(name)
    if not entry.sized:
        return f"{entry.title} has no size; leave --size at 0 (got {size})" if size else None
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        return f"{name} needs a positive {entry.knob} (size), got {size!r}"
    return None


def peft_methods() -> list[str]:
    """The parameter-efficient methods of the catalogue (everything but full fine-tuning), in catalogue order."""
    return [m.name for m in METHODS.values() if m.family != "full"]


def family_methods(family: str, paper: bool = False) -> list[str]:
    """The catalogue's methods of a family (`paper`: only the paper's), in catalogue order."""
    return [m.name for m in METHODS.values() if m.family == family and (not paper or m.name in PAPER_METHODS)]


def family_of(name: str) -> str | None:
    return METHODS[name].family if name in METHODS else None


def extras(names) -> list[str]:
    """The catalogue methods among `names` beyond the paper's study, in the order given (an unknown name is left
    to the filter that refuses it with the grid's valid values)."""
    return [n for n in names if n in METHODS and n not in PAPER_METHODS]


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
