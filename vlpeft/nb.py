"""What the notebooks call besides `train.run`: assets on demand, a look at an injected method, a curve plot.
(Anything a notebook would otherwise define lives here, so the notebooks stay a parameters cell + calls.)"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .methods import MethodConfig, apply_method, trainable_summary
from .models import load_model
from .pretrain import PretrainConfig, pretrain
from .world import WorldConfig, ensure_world

# world name → (shapes world, pre-training). "smoke" takes seconds (tests, first look); "embedded" is the
# study's default (minutes, cached); "real" means real BLIP on real files: nothing to prepare.
WORLDS = {
    "smoke": (WorldConfig(seed=3, image_size=16, n_train=40, n_restval=4, n_val=10, n_test=10, n_pretrain_extra=20,
                          questions_per_image=3),
              dict(steps=20, batch_size=16, zero_shot_eval=0)),
    "embedded": (WorldConfig(), {}),
}
SMOKE_SPEC = dict(image_size=16, patch_size=8, hidden=32, layers=2, heads=2, intermediate=64, max_positions=160)


def repo_root_cwd() -> Path:
    """Notebooks run from notebooks/ under Jupyter/nbval and from the repo root under papermill: use the root."""
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "pyproject.toml").exists():
        os.chdir(here.parent)
    return Path.cwd()


def ensure_assets(world: str, data_root: str, model_path: str) -> None:
    """Write the world and pre-train its BLIP unless both are already there (a file lock makes concurrent
    notebooks wait for one another instead of racing)."""
    if world == "real":
        return
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose smoke, embedded or real")
    from filelock import FileLock
    from .models import TinySpec
    world_cfg, pre = WORLDS[world]
    model_root = Path(model_path.format(task="caption")).parent
    model_root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(model_root) + ".lock"):
        ensure_world(data_root, world_cfg, progress=False)
        spec = TinySpec(**SMOKE_SPEC) if world == "smoke" else TinySpec()
        pretrain(PretrainConfig(data_root=data_root, out=str(model_root), spec=spec, **pre), progress=False)


def show_method(cfg) -> str:
    """The injected modules of the first text block, and the trainable count, for a RunConfig."""
    model = load_model(cfg.task, cfg.model_path.format(task=cfg.task))
    apply_method(model, MethodConfig(cfg.method, cfg.size, cfg.tune_classifier))
    block = model.text_decoder.bert.encoder.layer[0]
    text = f"{trainable_summary(model)}\n\nfirst text-decoder block after injection:\n{block}"
    if cfg.method in ("prompt", "prefix"):
        tower = model.text_decoder.bert
        text += f"\n\nadded to the text decoder:\n{getattr(tower, cfg.method + '_tuning')}"
        text += "".join(f"\n  {n}: {tuple(p.shape)}" for n, p in getattr(tower, cfg.method + "_tuning").named_parameters())
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
