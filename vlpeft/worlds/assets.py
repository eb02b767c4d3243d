"""The one route that prepares a world's assets, and the rule that it never touches a user's files.

A preset names its world; the study, the sweep and the notebooks resolve it here, the same way:

    smoke     a seconds-long shapes world and a 20-step tiny BLIP (tests, a first look; numbers mean nothing)
    embedded  the study's shapes world and its tiny BLIP pre-trained 1000 steps with mPLUG's recipe, the paper's
              model (minutes, cached): the one-draw studies' stand-in, and the dial's level 1
    embedded-blip  the same world, the tiny BLIP pre-trained with BLIP's recipe (the second family)
    embedded-L6000-p0, -p1, -p2, embedded-blip-L6000-p0, …  the studies' stand-ins since #39 (`DESIGN`): each
              recipe pre-trained 6000 steps from each draw (hours each, cached, resumable)
    dial-c*-p*  the consistency dial's worlds (one per level) and pre-trained models (one per level and seed)
    real      real BLIP on real MSCOCO/VQAv2 files: nothing is generated, trained or written

    assets = prepare("embedded")                 # writes data/shapes and checkpoints/embedded unless there
    assets.data_root, assets.model_path          # "data/shapes", "checkpoints/embedded/{task}"

Never writing into a folder the project did not create (`io.own`, used by `shapes.ensure_world` and
`pretrain.pretrain`): before a world is generated or a model pre-trained, the target folder must be empty, or
hold this project's marker (`.vlpeft.json`) for the *same* config, in which case the work is cached (complete)
or redone in place (a run that was killed). A folder with other files, or with the marker of another config,
is refused with a message naming it — so stale files from one world are never mixed into another, and a real
data root or checkpoint directory is never overwritten. The `real` world is never prepared at all.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PretrainConfig, TinySpec
from ..errors import AssetError
from .shapes import WorldConfig, ensure_world

SMOKE_SPEC = TinySpec(image_size=16, patch_size=8, hidden=32, layers=2, heads=2, intermediate=64, max_positions=160)
SMOKE_WORLD = WorldConfig(seed=3, image_size=16, n_train=40, n_restval=4, n_val=10, n_test=10, n_pretrain_extra=20,
                          questions_per_image=3, n_text=64)


@dataclass(frozen=True)
class World:
    name: str
    world: WorldConfig | None              # None: the real world (nothing to generate)
    pretrain: dict = field(default_factory=dict)  # PretrainConfig fields
    data_root: str = "data/shapes"
    model_root: str = "checkpoints/embedded"

    @property
    def synthetic(self) -> bool:
        return self.world is not None

    @property
    def model_path(self) -> str:
        return f"{self.model_root}/{{task}}"

    @property
    def vqa_route(self) -> str:
        """The VQA route its checkpoints carry: the recipe's for a pre-trained world, "" (the checkpoint's own)
        for the real one."""
        if not self.synthetic:
            return ""
        return self.pretrain.get("recipe", PretrainConfig.recipe)


@dataclass(frozen=True)
class Design:
    """The embedded studies' stand-ins (#39, reports/tiny/schedule.md §7): each recipe pre-trained `steps` steps
    (warm-up a tenth) from every pre-training draw of `seeds`, which maps a draw to the fine-tuning seeds run on it."""
    steps: int
    seeds: dict[int, tuple[int, ...]]

    @property
    def draws(self) -> tuple[int, ...]:
        return tuple(self.seeds)


ONE_DRAW = Design(1000, {0: (0, 1, 2)})   # the studies committed before #39: one 1000-step draw, three seeds on it
# The studies `tiny` and `tiny-blip` since #39 (presets.grid; reports/tiny/schedule.md §7): three 6000-step draws
# (the pilot's rule, §7.2), one fine-tuning seed each, the draw's own number (§7.3; D = 3 by §7.1's budget rule).
DESIGN = Design(6000, {0: (0,), 1: (1,), 2: (2,)})
RECIPE_WORLD = {"mplug": "embedded", "blip": "embedded-blip"}   # a recipe's draw 0, by name


def standin(recipe: str, draw: int, design: Design | None = None) -> World:
    """A recipe's stand-in of one pre-training draw, named by what it is: `embedded-L<steps>-p<draw>` (mPLUG's
    recipe) or `embedded-blip-L<steps>-p<draw>`, in checkpoints/<recipe>-L<steps>-p<draw>. The studies before #39
    had one, a 1000-step draw 0: `embedded` and `embedded-blip`, in checkpoints/embedded[-blip]."""
    base, design = RECIPE_WORLD[recipe], design or DESIGN
    other_length = design.steps != PretrainConfig.steps
    pretrain = (({"recipe": recipe} if recipe != "mplug" else {}) | ({"seed": draw} if draw else {})
                | ({"steps": design.steps, "warmup": design.steps // 10} if other_length else {}))
    if not other_length and draw == 0:
        return World(base, WorldConfig(), pretrain, "data/shapes", f"checkpoints/{base}")
    return World(f"{base}-L{design.steps}-p{draw}", WorldConfig(), pretrain, "data/shapes",
                 f"checkpoints/{recipe}-L{design.steps}-p{draw}")


STANDIN_NAME = re.compile(r"(embedded(?:-blip)?)-L(\d+)-p(\d+)")   # standin()'s names, read back


# The consistency dial (beyond the paper): one world per level, one pre-trained model per level and seed. Level 1
# with pre-training seed 0 is the 1000-step embedded world and model of the studies before #39 (the same configs, so
# the same folders).
DIAL_LEVELS = (1.0, 0.5, 0.0)
DIAL_PRETRAIN_SEEDS = (0, 1)


def dial_world(level: float, seed: int) -> World:
    embedded = level == 1.0
    return World(f"dial-c{level:g}-p{seed}", WorldConfig(consistency=level), {"seed": seed},
                 "data/shapes" if embedded else f"data/dial/c{level:g}",
                 "checkpoints/embedded" if embedded and seed == 0 else f"checkpoints/dial/c{level:g}-p{seed}")


WORLDS: dict[str, World] = {w.name: w for w in [
    World("smoke", SMOKE_WORLD, dict(steps=20, batch_size=16, zero_shot_eval=0, spec=SMOKE_SPEC),
          "data/smoke", "checkpoints/smoke"),
    *(standin(recipe, 0, ONE_DRAW) for recipe in RECIPE_WORLD),   # embedded, embedded-blip: whatever the design
    *(standin(recipe, draw) for recipe in RECIPE_WORLD for draw in DESIGN.draws),
    World("real", None, {}, "data/coco", "checkpoints/blip-base-pretrained"),
    *(dial_world(level, seed) for level in DIAL_LEVELS for seed in DIAL_PRETRAIN_SEEDS),
]}


WIRING_CHECKS = frozenset({"smoke"})  # worlds whose runs check the wiring only: their numbers mean nothing


def get_world(name: str) -> World:
    """A world by name: one of WORLDS, or any stand-in by its name (`standin`: recipe, length and draw)."""
    if name in WORLDS:
        return WORLDS[name]
    if match := STANDIN_NAME.fullmatch(name):
        recipe = {world: r for r, world in RECIPE_WORLD.items()}[match[1]]
        return standin(recipe, int(match[3]), Design(int(match[2]), {}))
    raise AssetError(f"unknown world {name!r}; choose one of {', '.join(WORLDS)} (or a stand-in: "
                     f"embedded[-blip]-L<steps>-p<draw>)")


@dataclass(frozen=True)
class Assets:
    world: str
    data_root: str
    model_path: str  # with {task}

    def describe(self) -> str:
        return f"world {self.world}: data {self.data_root}, model {self.model_path}"


# The stand-ins' identity: each embedded world's pre-trained weights (sha256 of caption/ and vqa/ model.safetensors)
# as made on the pinned numeric path (vlpeft/numerics.py) from its committed config. A machine that re-makes them
# fine-tunes the same model as every other; `make study` says which after pre-training. (The committed reports were
# made before the path was pinned, on other stand-ins: the README's "Reproduce".)
STANDINS = Path(__file__).with_name("standins.json")


def identity(world: str | World, model_root: str | None = None) -> str | None:
    """One line: whether this machine's pre-trained model of `world` is the committed stand-in (None: nothing to
    say — the real world, or no model there yet)."""
    w = get_world(world) if isinstance(world, str) else world
    card_path = Path(model_root or w.model_root) / "card.json"
    if not w.synthetic or not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    made, committed = card.get("weights_sha256") or {}, json.loads(STANDINS.read_text()).get(w.name)
    path = (card.get("provenance") or {}).get("numerics") or {}   # what it was made on (numerics.record)
    mode = path.get("mode", "native (made before the numeric path was pinned)")
    short = ", ".join(f"{task} {h[:12]}" for task, h in sorted(made.items())) or "no weight hashes in its card"
    if committed is None:
        return f"stand-in {w.name}: {short} — no committed hash to compare with (vlpeft/worlds/standins.json)"
    if made == committed["weights_sha256"]:
        return (f"stand-in {w.name}: this machine re-made the committed weights ({short}): runs on it give the "
                f"numbers any machine gives on the pinned path")
    why = ("it was pre-trained on the native numeric path" if mode != "pinned" else
           f"this CPU ({path.get('cpu', '?')}, "
           f"{path.get('cpu_capability', '?')} kernels) or its libraries compute otherwise "
           f"than the committed one's ({committed.get('cpu', '?')}; compare the versions in the card's provenance)")
    return (f"stand-in {w.name}: NOT the committed weights ({short}; committed "
            f"{', '.join(f'{t} {h[:12]}' for t, h in sorted(committed['weights_sha256'].items()))}): {why}, so runs "
            f"on it will give other numbers than runs on the committed stand-in")


def prepare(world: str | World, data_root: str | None = None, model_root: str | None = None,
            progress: bool = True) -> Assets:
    """Make the world's data and pre-trained model exist (cached); for `real`, only say where they are."""
    w = get_world(world) if isinstance(world, str) else world
    data_root, model_root = data_root or w.data_root, model_root or w.model_root
    if w.synthetic:
        from filelock import FileLock

        from .pretrain import pretrain  # torch and transformers: only when a model is pre-trained (start-up speed)
        Path(model_root).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{str(Path(model_root)).rstrip('/')}.lock"):  # concurrent notebooks wait for each other
            ensure_world(data_root, w.world, progress)
            pretrain(PretrainConfig(data_root=str(data_root), out=str(model_root), **w.pretrain), progress)
    return Assets(w.name, str(data_root), f"{model_root}/{{task}}")
