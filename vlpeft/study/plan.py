"""What a sweep or a study will make and about how long it will take, said before it starts (`--dry-run`, and a
study's first lines); and the stages it then goes through, numbered as they happen.

    plan = Plan.of(cells, workers=2)
    print(plan)          # the worlds to write, the pre-trainings to run, the runs complete / to run, the estimate

The estimate is a sum of times measured before, never a model of the machine, and it says which:
  runs          each run to do: its planned training steps (the task's own schedule on its share of the data)
                × the seconds per planned step of runs of the same task and method — this machine's finished
                runs from the same model on the same numeric path when there are some (`<runs-root>/**/
                metrics.json`: Σ wall_s / Σ steps, which holds the run's validation, test and start-up), else a
                reference measured on the 2-core CPU machine the committed studies ran on (the embedded model:
                `reports/tiny/runs.csv`'s 198 runs, each converted by `PINNED_COST` from the numeric path it ran
                on to the run's; the smoke model: `SMOKE_STEP_S`); only where neither has the method, the same
                two's mean over the task's methods. The runs share `workers` workers, longest first, so the
                sweep takes about Σ run times / workers, plus each worker's cold kernel and a little per run.
  assets        a world: its images × `WORLD_S_PER_IMAGE`; a pre-training: its steps × seconds per step of a
                model of the same size (a card.json this machine wrote, else `PRETRAIN_STEP_S`).
  the rest      the data check and the frozen features, and the report (`PREPARE_S`, `REPORT_S`).
A real BLIP (the `paper` preset) has no reference: its estimate comes from this machine's own finished runs, or
the plan says there is none. The step benchmark (benchmarks/step_time.py) times a training step alone; a run also
validates, tests and loads, which is why whole runs are the basis here.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PretrainConfig, TinySpec
from ..worlds.assets import SMOKE_SPEC, get_world
from .presets import Cell

REPO = Path(__file__).resolve().parents[2]
# The reference machine: 2 CPU cores, `make study` from a clean clone (README, "Time"; docs/timing.md)
REFERENCE_RUNS = REPO / "reports" / "tiny" / "runs.csv"   # the embedded model: 198 runs with wall_s and steps
SMOKE_STEP_S = {"caption": 0.41, "vqa": 0.04}     # the smoke model: s per planned step (its runs, eval included)
WORLD_S_PER_IMAGE = 0.0033                         # the shapes world: 6,500 images in 21 s
PRETRAIN_STEP_S = {"embedded": 0.87, "smoke": 0.25}  # s per pre-training step, one at a time, on the pinned numeric
                                                    #   path (benchmarks/numerics_cost.py; native on 2 threads: 0.25)
PRETRAIN_PAIR_STEP_S = 1.1                         # … two at a time: 6000-step stand-ins, 1.02–1.15 s a step, nothing
                                                    #   else running (#39; the 1000-step ones: 921 s and 863 s for 1000)
PINNED_COST = 1.74   # a run on the pinned path against the native one: a VQA LoRA r8 step 101.8 ms vs 58.6 ms on
                     #   one thread (benchmarks/numerics_cost.py); it converts a committed run's rate between them
PATH_COST = {"pinned": PINNED_COST, "native": 1.0}
PREPARE_S = {"embedded": 25.0, "smoke": 3.0}       # the data check and the frozen features
REPORT_S = {"embedded": 60.0, "smoke": 10.0}       # analysis, figures and the page
COLD_START_S = 25.0                                # a worker's first kernel: start, import torch and transformers
CELL_S = 0.8                                       # papermill and the warm kernel, per run (the tiny sweep)


def path_of(recorded: str | None) -> str:
    """A run's numeric path as recorded; a run from before the pinned path records none: native."""
    return recorded or "native"


def size_of(world: str) -> str | None:
    """The model size a world's reference figures are for: `smoke`, `embedded` (every other synthetic world), or
    None (real BLIP: no reference)."""
    w = get_world(world)
    return "smoke" if w.name == "smoke" else "embedded" if w.synthetic else None


def planned_steps(cell: Cell) -> int | None:
    """A run's planned training steps without reading its data: captioning's are its config's, VQA's follow from
    the synthetic world's question count (`tasks.VqaTask.plan_steps` on `data.nested_subset`'s share); None for
    VQA on real data (counted only once the files are read)."""
    c = cell.config
    if c.task == "caption":
        return c.steps
    world = getattr(get_world(cell.world), "world", None)
    if world is None:
        return None
    questions = (world.n_train + world.n_restval) * world.questions_per_image
    return c.epochs * math.ceil(math.ceil(c.data_ratio * questions) / c.batch_size)


def _rates(rows) -> dict[tuple, float]:
    """Seconds per planned step by (task, method) and by task alone, from runs' (task, method, steps, wall_s)."""
    sums = defaultdict(lambda: [0.0, 0])
    for task, method, steps, wall in rows:
        if steps and wall:
            for key in ((task, method), (task,)):
                sums[key][0] += wall
                sums[key][1] += steps
    return {k: wall / steps for k, (wall, steps) in sums.items()}


def reference_rates(numerics: str = "pinned") -> tuple[dict[tuple, float], bool]:
    """The committed runs' seconds per planned step on the `numerics` path, each run's converted by PINNED_COST from
    the path it ran on (a runs table from before the pinned path records none: native); and whether any was."""
    if not REFERENCE_RUNS.is_file():
        return {}, False
    with open(REFERENCE_RUNS) as f:
        runs = [r for r in csv.DictReader(f) if r["status"] == "complete"
                and path_of(r.get("numerics")) in PATH_COST]   # a path this checkout does not know: no basis
    factor = [PATH_COST[numerics] / PATH_COST[path_of(r.get("numerics"))] for r in runs]
    return (_rates([(r["task"], r["method"], float(r["steps"] or 0), float(r["wall_s"] or 0) * k)
                    for r, k in zip(runs, factor)]), any(k != 1.0 for k in factor))


def own_rates(runs_root: str | Path) -> dict[tuple[str, str], dict[tuple, float]]:
    """This machine's finished runs under `runs_root`, by the model they started from and the numeric path they ran
    on (a run from before the pinned path records none: native): {(model root, path): rates}."""
    rows = defaultdict(list)
    for path in Path(runs_root).rglob("metrics.json"):
        try:
            m = json.loads(path.read_text())
            if m.get("status") == "complete":
                key = (str(Path(m["start"]["path"]).parent),
                       path_of(((m.get("provenance") or {}).get("numerics") or {}).get("mode")))
                rows[key].append((m["task"], m["method"], m.get("planned_steps") or m["steps"], m["wall_s"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a run being written, or not a vlpeft run: no basis
    return {key: _rates(r) for key, r in rows.items()}


def _card_rate(model_root: str, spec: TinySpec) -> float | None:
    """Seconds per pre-training step of a card this machine wrote for a model of `spec`'s size, if any."""
    from ..worlds.assets import WORLDS
    for w in WORLDS.values():
        card = Path(w.model_root) / "card.json"
        try:
            c = json.loads(card.read_text())
        except (OSError, ValueError):
            continue
        if c.get("config", {}).get("spec") == vars(spec) and c.get("steps") and c.get("wall_s"):
            return c["wall_s"] / c["steps"]
    return None


def minutes(seconds: float) -> str:
    """42 s, 4.2 min, 2 h 15 min."""
    if seconds >= 3600:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h {rest} min"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


@dataclass
class Plan:
    cells: list[Cell]
    workers: int = 2
    runs_root: str = "runs"
    report: bool = False                   # a study: the report at the end
    worlds: list[tuple] = field(default_factory=list)      # (world, data_root, written, model_root, pre-trained)
    complete: int = 0
    failed_before: int = 0
    todo: list[Cell] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=dict)  # estimate by part, seconds
    basis: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)        # what the estimate leaves out
    worker_s: float = 0.0                                   # the runs' own time, summed over the workers

    @classmethod
    def of(cls, cells: list[Cell], workers: int = 2, runs_root: str = "runs", report: bool = False) -> "Plan":
        plan = cls(cells, workers, runs_root, report)
        plan.todo = [c for c in cells if not (c.out_dir / "metrics.json").exists()]
        plan.complete = len(cells) - len(plan.todo)
        plan.failed_before = sum((c.out_dir / "failed.json").exists() for c in plan.todo)
        for world, data_root, model_root in sorted({(c.world, c.config.data_root, c.config.model_root)
                                                    for c in plan.todo}):
            written = (Path(data_root) / "world.json").exists()
            plan.worlds.append((world, data_root, written, model_root, (Path(model_root) / "card.json").exists()))
        plan._estimate()
        return plan

    # -- the estimate -----------------------------------------------------------------------------------------
    def _estimate(self) -> None:
        synthetic = [(w, d, wr, m, pre) for w, d, wr, m, pre in self.worlds if get_world(w).synthetic]
        images = {d: get_world(w).world for w, d, wr, _, _ in synthetic if not wr}
        if images:
            self.parts["world"] = sum(WORLD_S_PER_IMAGE * (c.n_train + c.n_restval + c.n_val + c.n_test
                                                           + c.n_pretrain_extra) for c in images.values())
        models = {m: w for w, _, _, m, pre in synthetic if not pre}
        if models:
            # the assets stage pre-trains `workers` models at a time: a wave of several at the two-at-a-time rate,
            # a model alone at its one-at-a-time rate (this machine's card.json for a model of its size, if any)
            pre = {m: PretrainConfig(**get_world(w).pretrain) for m, w in models.items()}
            card = {m: _card_rate(m, cfg.spec) for m, cfg in pre.items()}
            alone = {m: card[m] or PRETRAIN_STEP_S["smoke" if cfg.spec == SMOKE_SPEC else "embedded"]
                     for m, cfg in pre.items()}
            order = sorted(models)
            waves = [order[i:i + self.workers] for i in range(0, len(order), self.workers)]
            self.parts["pre-training"] = sum(max(pre[m].steps * (alone[m] if len(wave) == 1 else PRETRAIN_PAIR_STEP_S)
                                                 for m in wave) for wave in waves)
            own = any(len(wave) == 1 and card[wave[0]] for wave in waves)
            self.basis.append("pre-training: its steps × the seconds per step of " + (
                "a model of its size this machine pre-trained (its card.json)" if own else
                "the reference machine (vlpeft/study/plan.py)"))
        sizes = {size_of(c.world) for c in self.todo} - {None}
        if self.todo:
            self.parts["data check and features"] = sum(PREPARE_S[s] for s in sizes)
        self._runs()
        if self.report:
            self.parts["report"] = max((REPORT_S[s] for s in {size_of(c.world) for c in self.cells} - {None}),
                                       default=REPORT_S["embedded"])

    def _runs(self) -> None:
        if not self.todo:
            return
        own = own_rates(self.runs_root)
        reference = {path: reference_rates(path) for path in {c.config.numerics for c in self.todo}}
        used, worker_s = set(), 0.0
        for c in self.todo:
            steps, size = planned_steps(c), size_of(c.world)
            mine = own.get((c.config.model_root, c.config.numerics), {})
            converted = size == "embedded" and reference[c.config.numerics][1]
            ref = (reference[c.config.numerics][0] if size == "embedded" else
                   {(t,): r for t, r in SMOKE_STEP_S.items()} if size else {})
            # the same task and method first, this machine's then the reference's: a task-wide rate is the mean of
            # whichever methods ran, and full fine-tuning's step costs three PEFT steps
            rate, source = next(((r[k], name) for k in ((c.config.task, c.config.method), (c.config.task,))
                                 for name, r in (("own", mine), ("reference", ref)) if k in r),
                                (None, None))
            if steps is None or rate is None:
                self.unknown.append(c.run_id)
                continue
            if source == "reference" and converted:
                source = f"reference, {c.config.numerics}"
            used.add((source, size))
            worker_s += steps * rate + CELL_S
        if worker_s:
            self.worker_s = worker_s
            self.parts["runs"] = worker_s / min(self.workers, len(self.todo)) + COLD_START_S
        words = {("own", s): f"this machine's finished runs from the same model (under {self.runs_root}/)"
                 for s in ("smoke", "embedded", None)}
        words[("reference", "embedded")] = ("reports/tiny/runs.csv, the committed study's runs on the reference "
                                            "machine (2 CPU cores, 2 workers)")
        words[("reference, pinned", "embedded")] = (words[("reference", "embedded")] + f", × {PINNED_COST} for the "
                                                    f"pinned numeric path they predate (benchmarks/numerics_cost.py)")
        words[("reference, native", "embedded")] = (words[("reference", "embedded")] + f", ÷ {PINNED_COST} for the "
                                                    f"native numeric path (benchmarks/numerics_cost.py)")
        words[("reference", "smoke")] = "the smoke runs of the reference machine (plan.SMOKE_STEP_S)"
        if used:
            self.basis.insert(0, "runs: planned steps × seconds per step of the same task and method in "
                              + " and ".join(sorted({words[u] for u in used})))
        self.basis.append(f"world, data check, a worker's cold start{', report' if self.report else ''}: the "
                          f"reference machine's figures (vlpeft/study/plan.py)")

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())

    # -- in words --------------------------------------------------------------------------------------------
    def lines(self) -> list[str]:
        out = []
        for world, data_root, written, model_root, pretrained in self.worlds:
            if not get_world(world).synthetic:
                out.append(f"  world {world}: data {data_root}, model {model_root} (yours: nothing is written there)")
                continue
            pre = PretrainConfig(**get_world(world).pretrain)
            out.append(f"  world {world}: data {data_root} — {'written' if written else 'to write'}; model "
                       f"{model_root} — {'pre-trained' if pretrained else f'to pre-train ({pre.steps} steps)'}")
        out.append(f"  runs: {len(self.cells)} in the grid — {self.complete} complete, {len(self.todo)} to run"
                   + (f" ({self.failed_before} of them failed before)" if self.failed_before else ""))
        if not self.todo:
            out.append("estimate: nothing to run" + (f"; the report about {minutes(self.parts['report'])}"
                                                     if "report" in self.parts else ""))
            return out
        if "runs" not in self.parts:
            out.append(f"estimate: none — no finished runs from this model under {self.runs_root}/ and no reference "
                       f"for it; the first runs give one")
            return out
        parts = ", ".join(f"{k} {minutes(v)}" for k, v in self.parts.items())
        out.append(f"estimate: about {minutes(self.seconds)} with {self.workers} worker"
                   f"{'s' if self.workers > 1 else ''} ({parts}; the runs {self.worker_s / 60:.1f} worker-min)")
        if self.unknown:
            out.append(f"  not counted: {len(self.unknown)} runs with no basis (VQA on real data before it is read)")
        out += [f"  basis — {b}" for b in self.basis]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


class Stages:
    """`[i/n] what` lines, numbered as the stages happen."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def next(self, what: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {what}", flush=True)
