"""What the notebooks call besides `train.run`: the run config from the parameters cell (assets prepared by the
one route in `vlpeft.assets`), a look at an injected method, a curve plot.
(Anything a notebook would otherwise define lives here, so the notebooks stay a parameters cell + calls.)"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .catalog import METHODS, variant


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
    from .assets import get_world, prepare
    from .rundir import config_dict, run_hash
    from .train import RunConfig, validate
    repo_root_cwd()
    w = get_world(world)
    fields = {"data_root": w.data_root, "model_path": w.model_path} | dict(config)
    model_root = str(Path(fields["model_path"].format(task="caption")).parent)
    prepare(w, fields["data_root"], model_root, progress=progress)
    cfg = validate(RunConfig(**fields))
    if "out_dir" not in config:
        c = config_dict(cfg)
        cfg.out_dir = (f"runs/notebooks/{cfg.task}/{cfg.method}/"
                       f"{variant(cfg.method, cfg.tune_classifier)}_s{cfg.size}_r{cfg.data_ratio:g}_seed{cfg.seed}"
                       f"-{run_hash(c)}")
    return cfg


def show_method(cfg) -> str:
    """The trainable count and what the method adds to the first text-decoder block."""
    from .methods import MethodConfig, apply_method, trainable_summary
    from .models import load_model
    from .train import model_path
    model = load_model(cfg.task, model_path(cfg))
    apply_method(model, MethodConfig(cfg.method, cfg.size, cfg.tune_classifier), seed=cfg.seed)
    tower = model.text_decoder.bert
    added = [(n, tuple(p.shape)) for n, p in tower.named_parameters() if p.requires_grad]
    text = f"{trainable_summary(model)}\n\n{METHODS[cfg.method].title} in the text decoder:\n"
    text += "\n".join(f"  {n}: {s}" for n, s in added[:12]) + (f"\n  … {len(added) - 12} more" if len(added) > 12 else "")
    print(text)
    return text


def curve_chart(out_dir: str):
    """The run's validation curve (paper Fig. 6–10) as an altair chart."""
    import altair as alt
    import pandas as pd
    out = Path(out_dir)
    curve = pd.DataFrame(json.loads((out / "curve.json").read_text()))
    metric = json.loads((out / "metrics.json").read_text())["metric"]
    return alt.Chart(curve, title=f"validation {metric} over training").mark_line(point=True).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("val:Q", title=metric)).properties(width=360, height=220)
