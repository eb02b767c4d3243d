"""Grids of runs (presets) and the embedded schedule's rule; `study.engine` runs a cell through its method
notebook with papermill, `study.executors` runs the cells locally or on Slurm.

    cells = grid("tiny")                        # every run of the preset, each with its whole RunConfig
    failures = executors.execute(cells, workers=2)   # skips complete cells; a failure never stops the others

A preset names its world (`vlpeft.worlds.assets`): `paper` is real BLIP on real files (nothing is generated),
`tiny` the embedded shapes world, `smoke` the seconds-long wiring check. Each cell runs its method's notebook
(`catalog.METHODS[m].notebook`) through papermill into `runs/<study>/<task>/<method>/<run-id>/run.ipynb`,
handing the notebook the cell's whole RunConfig as one parameter. The run id is readable and carries a short
hash of the results-relevant config (`rundir.run_id`), so two presets that differ only in, say, the LR
never share a folder. A complete cell (metrics.json) is skipped; a failed one keeps papermill's notebook with
its error cell and a `failed.json` with the reason (a dead kernel: the run log's tail), the sweep goes on, and
the next invocation retries only the failed and missing cells. A cell that another sweep is running right
now is skipped and said so. When the vision tower is frozen (every PEFT cell), its outputs are computed once
before the cells (`vlpeft.features`) and shared by all of them.

Presets:
  paper  Table II exactly (paper Table II and appendix): every data ratio × every size of each PEFT, the same with
         "+ classifier", and full fine-tuning at every ratio; BLIP-base converted from BLIP's pre-training
         checkpoint (`vlpeft convert-blip`), MSCOCO/VQAv2 under data/coco.
  tiny   the embedded study for a 2-core CPU: per task and PEFT, 3 data ratios at the middle size and 3 sizes
         at the full data, "+ classifier" at the middle size and full data, full fine-tuning at each ratio; on
         every pre-training draw of `assets.DESIGN`, with its fine-tuning seeds. The tiny BLIP is pre-trained with
         mPLUG's recipe (the paper's model; VQA route mplug).
  tiny-blip  the same grid from the tiny BLIP pre-trained with BLIP's recipe (VQA route blip): the second
         family, for the influence of the base model (reports/tiny-blip).
  dial   the consistency dial (beyond the paper): captioning at three consistency levels × two pre-training
         seeds, prompt-tuning, LoRA and full fine-tuning on the tiny ratio and size axes, three seeds.
  smoke  a handful of runs to check that everything is wired (numbers mean nothing).
Every grid takes the paper's methods by name (`catalog.PAPER_PEFT` and full fine-tuning); a catalogue method beyond
them joins a grid only when named (`grid(..., extra_methods=[...])`, `--methods`), on its own entry's sizes and
learning rates (docs/adding_a_method.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..catalog import METHODS, PAPER_PEFT, variant
from ..catalog import method as catalogue_entry
from ..config import PretrainConfig, RunConfig
from ..errors import ConfigError
from ..rundir import config_dict, run_id
from ..worlds import assets
from ..worlds.assets import DIAL_LEVELS, DIAL_PRETRAIN_SEEDS, RECIPE_WORLD, dial_world, get_world
from ..worlds.shapes import CAPTIONS_PER_IMAGE

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
PEFT = list(PAPER_PEFT)   # the paper's five methods by name (catalog.PAPER_PEFT); full fine-tuning beside them

# ---------------------------------------------------------------------------------------------------------
# The paper's Table II
PAPER_RATIOS = {"caption": [0.01, 0.02, 0.04, 0.08, 0.1, 0.2, 0.4, 0.8, 1.0], "vqa": [0.1, 0.2, 0.4, 0.8, 1.0]}
# Each method's Table II sizes and learning rates are on its catalogue entry (`paper_sizes`, `paper_lr`)
PAPER_BASE = {  # paper §IV + appendix
    "caption": dict(steps=4000, warmup_steps=400, batch_size=256, image_size=256, eval_every=500, eval_size=0,
                    cache_images=False),
    "vqa": dict(epochs=10, warmup_per_ratio=800, batch_size=256, image_size=256, eval_every=2000, eval_size=5000,
                cache_images=False),
}
# Decoding as each family's released code (the paper gives none), by the family whose route a cell runs (VQA: the
# cell's route; captioning: its checkpoint's own, `checkpoint_route`). Lengths are of new tokens, [SEP] included
# in the most (`tasks.Task.decoding`).
# blip  salesforce/BLIP@056a169. VQA: models/blip_vqa.py L91-105, `inference='generate'`: num_beams=3,
#       max_length=10, min_length=1 from [DEC] alone (configs/vqa.yaml L20 ranks 128 candidate answers instead; our
#       answers are generated, so its generate branch). Caption: configs/caption_coco.yaml L24-27 (max_length 20,
#       min_length 5, num_beams 3, prompt 'a picture of ') as train_caption.py L73-74 passes them to models/blip.py
#       L128-163, beam search with repetition_penalty 1.0. transformers 4.15 (requirements.txt) counts the whole
#       sequence in max/min_length: the VQA [DEC] (1 token) and the caption prompt [DEC] a picture of (4, blip.py
#       L137-140) are in it, so 10 → 9 new tokens and min 1 → 0; 20 → 16 and 5 → 1.
# mplug alibaba/AliceMind@a6d5afe, mPLUG/. VQA: vqa_mplug.py L307-310 (--min_length 1, --max_length 10,
#       --beam_size 5; read into the config at L330-332) for models/model_vqa_mplug.py L27, L129 and L180-183, the
#       TextGenerator of models/predictor.py: max_length decoding steps (L197), [SEP] barred while step < min_length
#       (L207-208). Caption: scripts/caption_mplug_base.sh L19-20 (--min_length 8, --max_length 25), caption_mplug.py
#       L328 (--beam_size 5), the same TextGenerator (mPLUG's caption prompt is '', configs/caption_mplug_base.yaml;
#       ours is the paper's, and its lengths count after it).
# What is not followed: how finished beams are ranked and when a search stops. Both families run transformers' beam
# search here (today's: a beam's Σ log p over its number of new tokens, stopping by its early_stopping=False rule);
# BLIP's transformers 4.15 divided by the whole length, prompt included; mPLUG's TextGenerator divides by GNMT's
# ((5 + n) / 6) ** 0.6 (predictor.py L61, L213) and ends a question as soon as its best beam ends (L259).
PAPER_DECODING = {
    "blip": {"caption": dict(caption_beams=3, caption_max_tokens=16, caption_min_tokens=1),
             "vqa": dict(vqa_beams=3, vqa_max_tokens=9, vqa_min_tokens=0)},
    "mplug": {"caption": dict(caption_beams=5, caption_max_tokens=25, caption_min_tokens=8),
              "vqa": dict(vqa_beams=5, vqa_max_tokens=10, vqa_min_tokens=1)},
}

# ---------------------------------------------------------------------------------------------------------
# The embedded world's schedule: the paper's shape, by a rule declared before the study's runs
# (reports/tiny/schedule.md, with the pilot that chose the VQA epochs; tools/pilot_schedule.py)
# (each method's sizes and learning rates: its catalogue entry's `tiny_sizes`, `default_size`, `embedded_lr`)
TINY_BATCH = 32
# Captioning runs a fixed number of steps at every ratio: Table II's 4000 steps at batch 256 are 1.81 epochs of
# Karpathy train + restval (113,287 images × 5 captions ≈ 566,747 pairs); the same number of epochs of the
# embedded world's pairs, warmed up over the same tenth (400 of 4000)
PAPER_CAPTION_EPOCHS = 4000 * 256 / 566_747
CAPTION_WARMUP = 400 / 4000
# VQA is epoch-based; its warm-up is 800 × ratio steps of a 10-epoch run at batch 256 over 605,102 questions
# (2,364 steps an epoch): 3.4 % of the run at every ratio
VQA_WARMUP = 800 / (10 * 2_364)
TINY_VQA_EPOCHS = 10    # the pilot rule's choice from {3, 5, 10} (reports/tiny/schedule.md, section 5)
EVALUATIONS = 5         # validation points per run at full data (and step 0): the curve of Fig. 6–10


def tiny_base(world, vqa_epochs: int = TINY_VQA_EPOCHS) -> dict[str, dict]:
    """The embedded schedule for a world (`shapes.WorldConfig`), from the rules above."""
    pairs = (world.n_train + world.n_restval) * CAPTIONS_PER_IMAGE
    questions = (world.n_train + world.n_restval) * world.questions_per_image
    steps = round(PAPER_CAPTION_EPOCHS * pairs / TINY_BATCH)
    per_epoch = -(-questions // TINY_BATCH)
    return {"caption": dict(steps=steps, warmup_steps=round(CAPTION_WARMUP * steps), batch_size=TINY_BATCH,
                            eval_every=-(-steps // EVALUATIONS), eval_size=100, test_size=0),
            "vqa": dict(epochs=vqa_epochs, warmup_per_ratio=round(VQA_WARMUP * vqa_epochs * per_epoch),
                        batch_size=TINY_BATCH, eval_every=-(-vqa_epochs * per_epoch // EVALUATIONS), eval_size=300,
                        test_size=0)}


TINY_RATIOS = [0.1, 0.3, 1.0]   # (the seeds, per pre-training draw: assets.DESIGN)
SMOKE_BASE = dict(steps=4, warmup_steps=1, epochs=1, warmup_per_ratio=1, batch_size=8, eval_every=2, eval_size=8,
                  test_size=8, lr=1e-3)
# The consistency dial (beyond the paper; README, "The consistency dial"): captioning at every level × pre-training
# seed of
# `assets.DIAL_LEVELS` × `assets.DIAL_PRETRAIN_SEEDS`, for one method of each family and full fine-tuning, on the
# tiny schedule's ratio and size axes
DIAL_METHODS = ["prompt", "lora"]
DIAL_SEEDS = [0, 1, 2]
PRESET_WORLD = {"paper": "real", "tiny": "embedded", "tiny-blip": "embedded-blip", "smoke": "smoke", "dial": "dial-*"}


@dataclass
class Cell:
    study: str
    world: str                  # the world its assets come from (vlpeft.worlds.assets)
    config: RunConfig           # the whole run, out_dir included

    @property
    def run_id(self) -> str:
        return run_id(self.config)

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def notebook(self) -> Path:
        return NOTEBOOK_DIR / f"{METHODS[self.config.method].notebook}.ipynb"


def make_cell(study: str, world: str, runs_root: str, **fields) -> Cell:
    cell = Cell(study, world, RunConfig(**fields))
    cell.config.out_dir = str(Path(runs_root) / study / cell.config.task / cell.config.method / cell.run_id)
    return cell


def _axis(study, world, runs_root, task, method, sizes, ratios, seeds, cls_options, base) -> list[Cell]:
    return [make_cell(study, world, runs_root, task=task, method=method, size=s, tune_classifier=c, data_ratio=r,
                      seed=seed, **base) for s in sizes for r in ratios for c in cls_options for seed in seeds]


def _tiny_axes(args, task: str, methods: list[str], seeds: list[int], fields: dict, classifier: bool,
               world) -> list[Cell]:
    """The tiny schedule's axes for one task and world: per method with a size the data ratios at its middle size
    (its `default_size`), its other sizes at the full data (and with `classifier`, "+ classifier" at the middle
    size and full data); a method without a size on the data ratios alone (full fine-tuning already tunes the
    classifier). Sizes and learning rates are the methods' catalogue entries'. `fields` are the world's paths and
    any overrides; `world` its `WorldConfig`, whose split sizes set the schedule (`tiny_base`)."""
    cells = []
    for m in methods:
        entry = METHODS[m]
        base = tiny_base(world)[task] | {"lr": _fact(entry, "embedded_lr", task)} | fields
        mid = entry.default_size
        cells += _axis(*args, task, m, [mid], TINY_RATIOS, seeds, [False], base)                         # ratio axis
        cells += _axis(*args, task, m, [s for s in entry.tiny_sizes if s != mid], [1.0], seeds, [False], base)  # size
        if classifier and entry.family != "full":
            cells += _axis(*args, task, m, [mid], [1.0], seeds, [True], base)                         # + classifier
    return cells


def _paper_axes(args, task: str, m: str, fields: dict) -> list[Cell]:
    """Table II for one method and task: every data ratio × every size of its entry's `paper_sizes` (none without a
    size), plain and "+ classifier" (full fine-tuning: plain), at its `paper_lr`."""
    entry = METHODS[m]
    sizes = list(_fact(entry, "paper_sizes", task)) if entry.sized else [0]
    base = PAPER_BASE[task] | {"lr": _fact(entry, "paper_lr", task)} | fields
    return _axis(*args, task, m, sizes, PAPER_RATIOS[task], [0], [False] if entry.family == "full" else [False, True],
                 base)


def _fact(entry, name: str, task: str):
    """A per-task fact of a catalogue entry (`paper_sizes`, `paper_lr`, `embedded_lr`), or a clear refusal."""
    facts = getattr(entry, name)
    if task not in facts:
        raise ConfigError(f"method {entry.name} has no {name} for {task} on its catalogue entry (vlpeft/catalog.py); "
                          f"add them there to run it in this grid")
    return facts[task]


def checkpoint_route(model_path: str, recipe_route: str) -> str:
    """The VQA route a cell runs on when none is asked: the checkpoint's own (its config.json's `vqa_route`; a
    released BLIP checkpoint has none: blip) when it is on disk, else the route the world's recipe gives it (real
    BLIP: blip). Every VQA cell carries it explicitly, so that its run id names the route it trains on."""
    config = Path(model_path.format(task="vqa")) / "config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text()).get("vqa_route") or "blip"
        except ValueError:
            pass  # a corrupt config is refused, with its name, when the run loads it
    return recipe_route or "blip"


def grid(preset: str, study: str | None = None, runs_root: str = "runs", data_root: str | None = None,
         model_path: str | None = None, feature_cache: str = "cache/features", image_root: str | None = None,
         compile_cache: str = "cache/compile", extra_methods=(), design: assets.Design | None = None,
         **overrides) -> list[Cell]:
    """Every cell of a preset. Paths default to the preset's world; `overrides` are RunConfig fields;
    `feature_cache=""` computes the vision tower in every step instead of sharing its cached outputs;
    `compile_cache` is the folder every compiled run of the grid shares inductor's kernels in;
    `image_root` is where the images are when not under `<data root>/images`. VQA cells carry the VQA route
    (`RunConfig.vqa_route`): an override's, else the checkpoint's own (`checkpoint_route`); caption cells carry
    none (it does not apply to them). The grids take the paper's methods by name (PEFT and full fine-tuning);
    `extra_methods` (catalogue methods beyond them) are laid out by the same rule beside them, on their own
    entries' sizes and learning rates (the smoke preset: one caption cell each at its default size). `design`: the
    stand-ins of tiny and tiny-blip (`assets.Design`; today's `assets.DESIGN`, or a committed study's own,
    `design_of`)."""
    extra = [catalogue_entry(m).name for m in extra_methods]   # an unknown name is refused here, with the choices
    if image_root:
        overrides["image_root"] = image_root
    route = overrides.pop("vqa_route", "")
    if preset not in PRESET_WORLD:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_WORLD)}")
    study = study or preset
    if preset == "dial":
        if data_root or model_path:
            raise ConfigError("the dial preset has one world per level and seed (vlpeft.worlds.assets.dial_world); "
                              "--data-root and --model-path do not apply")
        cells = []
        for w in (dial_world(level, pseed) for level in DIAL_LEVELS for pseed in DIAL_PRETRAIN_SEEDS):
            where = dict(data_root=w.data_root, model_path=w.model_path, feature_cache=feature_cache,
                         compile_cache=compile_cache)
            cells += _tiny_axes((study, w.name, runs_root), "caption", [*DIAL_METHODS, "full", *extra], DIAL_SEEDS,
                                where | overrides, classifier=False, world=w.world)
        return cells
    world = get_world(PRESET_WORLD[preset])
    args = (study, world.name, runs_root)
    design = design or assets.DESIGN
    draws = design.draws
    if preset in ("tiny", "tiny-blip") and len(draws) > 1 and model_path:
        raise ConfigError(f"the {preset} preset fine-tunes {len(draws)} pre-training draws, one model each "
                          f"(vlpeft.worlds.assets.DESIGN); --model-path does not apply")

    def where(task: str, world=world) -> dict:
        paths = dict(data_root=data_root or world.data_root, model_path=model_path or world.model_path,
                     feature_cache=feature_cache, compile_cache=compile_cache)
        if task == "vqa":
            paths["vqa_route"] = route or checkpoint_route(paths["model_path"], world.vqa_route)
        return paths | overrides
    cells: list[Cell] = []
    for task in ("caption", "vqa"):
        if preset == "paper":
            fields = where(task)
            family = fields.get("vqa_route") or checkpoint_route(fields["model_path"], world.vqa_route)
            fields = PAPER_DECODING[family][task] | fields
            for m in [*PEFT, "full", *extra]:
                cells += _paper_axes(args, task, m, fields)
        elif preset in ("tiny", "tiny-blip"):
            recipe = {name: r for r, name in RECIPE_WORLD.items()}[world.name]
            for draw, seeds in design.seeds.items():   # every draw, with its own fine-tuning seeds
                w = assets.standin(recipe, draw, design)
                cells += _tiny_axes((study, w.name, runs_root), task, [*PEFT, "full", *extra], list(seeds),
                                    where(task, w), classifier=True, world=w.world)
    if preset == "smoke":
        for task, m, size in (("caption", "lora", 4), ("vqa", "prompt", 4), ("vqa", "parallel_adapter", 8)):
            cells += _axis(*args, task, m, [size], [0.5], [0], [False], SMOKE_BASE | where(task))
        for m in extra:
            cells += _axis(*args, "caption", m, [METHODS[m].default_size], [0.5], [0], [False],
                           SMOKE_BASE | where("caption"))
    return cells


def design_of(runs) -> "assets.Design":
    """The stand-ins a study's runs (a runs table) were made from: their pre-training length (`run_lengths`:
    runs before #39 record none, 1000 steps) and, per draw, its fine-tuning seeds."""
    from .results import run_draws, run_lengths
    steps = run_lengths(runs)
    if len(steps) > 1:
        raise ConfigError(f"the runs come from stand-ins of {len(steps)} lengths ({', '.join(map(str, steps))} steps): "
                          f"not one study's design")
    draws = run_draws(runs).astype(int)
    seeds = {int(d): tuple(sorted(set(g.seed.astype(int)))) for d, g in runs.groupby(draws)}
    return assets.Design(steps[0] if steps else PretrainConfig.steps, seeds)


def same_design(*studies: str) -> bool:
    """Whether the studies' folders (each with a runs.csv) were made from one design, the premise of comparing them
    (`make study` re-makes reports/families only then; `vlpeft compare` says what differs)."""
    import pandas as pd
    return len({repr(design_of(pd.read_csv(Path(s) / "runs.csv"))) for s in studies}) == 1


def draw_of(cell: Cell) -> int | None:
    """The pre-training draw a cell fine-tunes (its world's pre-training seed); None for real BLIP."""
    w = get_world(cell.world)
    return w.pretrain.get("seed", 0) if w.synthetic else None


def select(cells: list[Cell], tasks=None, methods=None, sizes=None, ratios=None, seeds=None,
           draws=None) -> list[Cell]:
    """The cells matching every filter given; a filter that matches nothing is an error naming the choices."""
    filters = {"task": tasks, "method": methods, "size": sizes, "data_ratio": ratios, "seed": seeds, "draw": draws}

    def value(c: Cell, name: str):
        return draw_of(c) if name == "draw" else getattr(c.config, name)
    for name, allowed in filters.items():
        if allowed is None:
            continue
        present = sorted({value(c, name) for c in cells}, key=str)
        unknown = [v for v in allowed if v not in present]
        if unknown:
            raise ConfigError(f"no runs with {name} {', '.join(map(str, unknown))} in this grid; valid values: "
                              f"{', '.join(map(str, present))}")
    return [c for c in cells if all(allowed is None or value(c, name) in allowed for name, allowed in filters.items())]


def print_grid(cells: list[Cell]) -> None:
    import pandas as pd
    if not cells:
        print("0 runs")
        return
    df = pd.DataFrame([config_dict(c.config) | {"done": (c.out_dir / "metrics.json").exists()} for c in cells])
    df["variant"] = [variant(m, t) for m, t in zip(df.method, df.tune_classifier)]
    table = df.groupby(["task", "variant"]).agg(runs=("size", "size"), sizes=("size", lambda s: sorted(set(s))),
                                                ratios=("data_ratio", lambda s: sorted(set(s))),
                                                seeds=("seed", "nunique"), done=("done", "sum"))
    print(table.to_string())
    print(f"\n{len(df)} runs ({int(df.done.sum())} already complete)")
