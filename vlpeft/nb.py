"""What the notebooks call besides `train.run` (anything a notebook would otherwise define lives here, so the
notebooks stay a parameters cell and a few calls): the run config from the parameters cell, the method's own
code under its equation, checks shown on screen, and what the run produced.

Importing this module makes every chart render offline: interactive in a live JupyterLab kernel (altair's
JupyterChart with the vega bundle vl-convert ships: tooltips, legend selections), static SVG and PNG everywhere
else (papermill, nbval, exported HTML). A user's mistake in a cell shows as the CLI's one line.
"""
from __future__ import annotations

import copy
import inspect
import json
import os
from pathlib import Path

from .catalog import METHODS
from .config import RunConfig
from .errors import user_error
from .rundir import run_id
from .worlds.assets import get_world, prepare

# The run-side imports (torch, transformers, the model and training code) sit inside the functions that need them,
# for start-up speed: `99_analysis` imports this module for its offline charts and never trains, and starts without
# torch (benchmarks/pipeline.py measures `import vlpeft.nb`).

SMOKE_BANNER = ("**Smoke world — a wiring check.** A 16-px world of 54 images and a 20-step model: the run takes "
                "seconds and its numbers mean nothing. The study's answer is in `reports/tiny/` (and "
                "`reports/dial/`); set `world = \"embedded\"` and the study's schedule (the commented lines of the "
                "parameters cell) for a real run.")


def live_kernel() -> bool:
    """Whether a JupyterLab (jupyter_server) session started this kernel: it sets JPY_SESSION_NAME for its kernels,
    papermill and nbval do not."""
    return bool(os.environ.get("JPY_SESSION_NAME")) and os.environ.get("VLPEFT_STATIC_CHARTS") != "1"


def _offline_charts() -> None:
    """Charts that need no network: interactive in a live JupyterLab kernel (altair's JupyterChart widget with
    the vega bundle vl-convert ships, so tooltips and the legend selections work offline), static SVG + PNG
    everywhere else (papermill, nbval, exported HTML)."""
    try:
        import altair as alt
    except ImportError:  # pragma: no cover - altair is a dependency
        return
    if live_kernel():
        alt.renderers.enable("jupyter", offline=True)
    else:
        alt.renderers.register("vlpeft", _svg_and_png)
        alt.renderers.enable("vlpeft")


def _svg_and_png(spec: dict, **metadata):
    """A chart as static SVG and PNG, drawn by vl-convert (no browser, no network). SVG is what HTML exports and
    a live JupyterLab session show; PNG is what JupyterLab shows in a notebook it does not trust (one executed by
    papermill and opened later), where it refuses to render SVG."""
    from altair.vegalite.v6.display import png_renderer, svg_renderer
    png = png_renderer(spec, **metadata)
    png_bundle, png_meta = png if isinstance(png, tuple) else (png, {})
    return {**svg_renderer(spec, **metadata), **png_bundle}, png_meta


_offline_charts()


def _one_line_errors() -> None:
    """In a notebook, a user's mistake (`errors.user_error`) reads as the CLI's one or two lines instead of a
    traceback; the cell still fails (papermill and a sweep record it). `VLPEFT_DEBUG=1` keeps tracebacks."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return
    shell = get_ipython()
    if shell is None or os.environ.get("VLPEFT_DEBUG") == "1":
        return

    def show(shell, etype, value, tb, tb_offset=None):
        error = user_error(value)
        stb = (shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset) if error is None
               else [f"vlpeft: error: {error}"])   # a bug keeps its traceback; a mistake is its message
        shell._showtraceback(etype, value, stb)    # what the cell shows, and what papermill records
        return stb
    shell.set_custom_exc((Exception,), show)


_one_line_errors()


def repo_root_cwd() -> Path:
    """Notebooks run from notebooks/ under Jupyter/nbval and from the repo root under papermill: use the root."""
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "pyproject.toml").exists():
        os.chdir(here.parent)
    return Path.cwd()


def run_config(config: dict, world: str = "smoke", progress: bool = True):
    """The notebook's RunConfig: its world's assets prepared (cached; `real` prepares nothing), the world's
    data root and model unless the config names others, and — when the config names no `out_dir` — a run
    folder derived from the parameters, so that changing a parameter runs that configuration."""
    from .train import validate
    repo_root_cwd()
    w = get_world(world)
    fields = {"data_root": w.data_root, "model_path": w.model_path} | dict(config)
    requested = RunConfig(**fields)
    prepare(w, requested.data_root, requested.model_root, progress=progress)
    cfg = validate(requested)
    if "out_dir" not in config:
        cfg.out_dir = f"runs/notebooks/{cfg.task}/{cfg.method}/{run_id(cfg)}"
    return cfg


def banner(world: str):
    from IPython.display import Markdown
    return Markdown(SMOKE_BANNER) if world == "smoke" else Markdown(f"World: `{world}`.")


# ---------------------------------------------------------------------------------------------------------
# The equation's code, from the package itself
REPO = Path(__file__).resolve().parent.parent


def shown_path(path: str) -> str:
    """A source file as a reader should see it: ours relative to the repository (vlpeft/methods/lora.py), an
    installed package's by its package path (peft/tuners/lora/layer.py) — never this machine's absolute path."""
    p = Path(path).resolve()
    if p.is_relative_to(REPO):
        return str(p.relative_to(REPO))
    return str(p).split("site-packages/")[-1] if "site-packages/" in str(p) else p.name


def source(obj, contains: str | None = None, context: int = 0):
    """The source of `obj` (a function, method or class) as a highlighted code cell output; with `contains`,
    only the lines holding it (± `context` lines): the one expression, not the whole module."""
    from IPython.display import Code
    lines, start = inspect.getsourcelines(obj)
    if contains is not None:
        hits = [i for i, line in enumerate(lines) if contains in line]
        keep = sorted({j for i in hits for j in range(max(0, i - context), min(len(lines), i + context + 1))})
        lines = [lines[j] for j in keep]
    where = f"# {shown_path(inspect.getsourcefile(obj))}:{start}\n"
    return Code(where + "".join(lines), language="python")


# ---------------------------------------------------------------------------------------------------------
# Checks on screen
def _first_items(cfg, split: str, n: int, teacher_forced: bool):
    """The task, the first `n` items of a split and their batch — as training sees them (teacher-forced
    targets) or as evaluation does — and the tokenizer."""
    from .blip.models import load_processor
    from .data import Paths, Pixels
    from .tasks import get_task
    task = get_task(cfg.task)
    items = task.splits(Paths.of(cfg))[("train", "val", "test").index(split)][:n]
    processor = load_processor(cfg.checkpoint)
    make = task.train_examples if teacher_forced else task.eval_examples
    data = make(items, Pixels(processor.image_processor))
    batch = task.collate(processor.tokenizer, [data[i] for i in range(min(n, len(data)))])
    return task, items, batch, processor.tokenizer


def identity_check(cfg) -> float:
    """max |Δlogits| between the model with the method injected (at its initialisation) and the base model, on
    validation examples; a method whose catalogue entry says so (`identity_at_init`: LoRA, the adapters) must start
    *equal* to the base model (asserted)."""
    import torch

    from .methods import MethodConfig, apply_method
    from .train import base_model
    base = base_model(cfg)                              # on the run's VQA route, as the run trains it
    injected = apply_method(copy.deepcopy(base), MethodConfig(cfg.method, cfg.size, cfg.tune_classifier), cfg.seed)
    task, _, batch, _ = _first_items(cfg, "val", 4, teacher_forced=True)
    with torch.no_grad():
        delta = (task.forward(injected, batch, labels=False).logits
                 - task.forward(base, batch, labels=False).logits).abs().max().item()
    entry = METHODS[cfg.method]
    if entry.family == "full":
        print(f"max |Δlogits| = {delta} — full fine-tuning starts from the base model itself")
    elif entry.identity_at_init:
        assert delta == 0.0, f"{cfg.method} must start equal to the base model, max |Δlogits| = {delta}"
        print(f"max |Δlogits| at initialisation = {delta} — {entry.title} starts as the base model "
              f"({entry.identity_at_init})")
    elif entry.family == "embedding":
        print(f"max |Δlogits| at initialisation = {delta:.4f} — {entry.title} cannot start as the base "
              f"model: its {cfg.size} learned positions are attended to from the first step, and the text moves to "
              f"positions {cfg.size}..{cfg.size}+T-1")
    else:
        print(f"max |Δlogits| at initialisation = {delta:.4f} — {entry.title} does not start as the base model")
    return delta


def count_check(cfg):
    """The trainable count: on this model against its closed-form formula (asserted), and on the BLIP-base
    shape at the same size (on the meta device), where the paper's percentages apply."""
    import pandas as pd
    import torch
    from transformers import BlipConfig

    from .blip.models import TASK_CLASSES
    from .methods import MethodConfig, apply_method, available_towers, closed_form_count, count_parameters
    from .train import base_model
    rows = []
    for shape in ("this model", "BLIP-base shape"):
        if shape == "this model":
            model = base_model(cfg)
        else:
            with torch.device("meta"):
                model = TASK_CLASSES[cfg.task](BlipConfig())
        apply_method(model, MethodConfig(cfg.method, cfg.size, cfg.tune_classifier), cfg.seed)
        trainable, total = count_parameters(model)
        towers = len(available_towers(model))  # the text towers the method goes into
        row = {"model": shape, "trainable": trainable, "all": total, "trainable %": round(100 * trainable / total, 4)}
        if METHODS[cfg.method].count is not None:   # full fine-tuning trains every parameter: no formula
            expected, formula = closed_form_count(cfg.method, cfg.size, model.config.text_config, towers,
                                                  cfg.tune_classifier)
            assert trainable == expected, f"counted {trainable}, the formula gives {expected}"
            row |= {"formula": formula, "= formula": expected}
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def show_method(cfg) -> str:
    """The trainable count (peft's format) and what the method adds to the text decoder — only that."""
    from .methods import MethodConfig, apply_method, trainable_summary
    from .train import base_model
    model = base_model(cfg)
    apply_method(model, MethodConfig(cfg.method, cfg.size, cfg.tune_classifier), seed=cfg.seed)
    tower = model.text_decoder.bert
    added = [(n, tuple(p.shape)) for n, p in tower.named_parameters() if p.requires_grad]
    text = f"{trainable_summary(model)}\n\n{METHODS[cfg.method].title} in the text decoder ({len(added)} tensors):\n"
    text += "\n".join(f"  {n}: {s}" for n, s in added[:8]) + (f"\n  … {len(added) - 8} more" if len(added) > 8 else "")
    print(text)
    return text


# ---------------------------------------------------------------------------------------------------------
# What the run produced
def examples(cfg, n: int = 4):
    """Generated captions/answers of the run's saved method weights on test examples, beside the references."""
    import pandas as pd
    import torch

    from .train import trained_model
    task, items, batch, tokenizer = _first_items(cfg, "test", n, teacher_forced=False)
    model = trained_model(cfg, cfg.out_dir)
    with torch.no_grad():
        preds = task.predict(model, batch, tokenizer, **task.decoding(cfg))
    rows = [({"question": it.question} if hasattr(it, "question") else {})
            | {"generated": pred, "references": " | ".join(dict.fromkeys(task.references(it)))}
            for it, pred in zip(items, preds)]
    return pd.DataFrame(rows)


def curve_chart(out_dir: str):
    """The run's validation curve (paper Fig. 6–10) as an altair chart."""
    import altair as alt
    import pandas as pd
    out = Path(out_dir)
    curve = pd.DataFrame(json.loads((out / "curve.json").read_text()))
    metric = json.loads((out / "metrics.json").read_text())["metric"]
    return alt.Chart(curve, title=f"validation {metric} over training").mark_line(point=True).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("val:Q", title=metric)).properties(width=360, height=220)
