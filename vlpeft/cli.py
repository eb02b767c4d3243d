"""`vlpeft …` — the command line. Every sub-command is a thin call into the package; heavy imports happen
inside the commands, so `--help` answers at once.

    vlpeft world        --out data/shapes                 write the synthetic shapes world (real file formats)
    vlpeft pretrain     --data-root data/shapes           pre-train the embedded tiny BLIP (cached)
    vlpeft convert-blip model_base.pth --out DIR          BLIP's pre-training checkpoint → transformers folders
    vlpeft train        --task vqa --method lora          one fine-tuning run
    vlpeft sweep        --preset tiny [--dry-run]         a grid of runs through the method notebooks
    vlpeft data check   --data-root data/coco             a data root's layout, Table I and missing images
    vlpeft report       --study runs/tiny                 figures + claims table + index.html
    vlpeft compare      reports/tiny reports/tiny-blip    the two pre-training recipes side by side
    vlpeft study        --preset tiny [--dry-run]         world → pre-training → sweep → report (`make study`)
    vlpeft verify       reports/tiny                      re-make 3 committed cells; exit 0 only if the numbers hold

Presets (`--preset` of sweep and study; `--dry-run` says what exists, what will be made and about how long):
    smoke      a wiring check: 3 runs on a 16-px world and a 20-step model, under a minute from nothing (`make smoke`);
               its numbers mean nothing
    tiny       the embedded study: 198 runs on three draws of the tiny BLIP pre-trained 6000 steps with mPLUG's
               recipe (one seed each; `--draws N` one draw alone, reported in reports/tiny-draws-N); about 7 h 50 min
               on 2 CPU cores on the pinned numeric path (measured, `make study`; `--dry-run` estimates it)
    tiny-blip  the same grid from BLIP's pre-training recipe (the second family); about as long
    dial       the consistency dial (beyond the paper): 234 caption runs over 3 consistency levels × 2
               pre-trainings; 2 h 12 min on 2 CPU cores after the one-draw `make study` before the path was pinned
               (`make dial`)
    paper      Table II on BLIP-base and MSCOCO/VQAv2: 810 runs, for GPU nodes (Slurm)

A user's mistake (a bad config, bad data, a bad model folder, a busy run folder) prints one or two lines
naming the file or field and what to do, and exits non-zero (2 for usage errors); `--debug` or
VLPEFT_DEBUG=1 shows the traceback as well.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

from . import numerics
from .blip.checkpoints import check_path, looks_vqa_finetuned
from .blip.convert import add_arguments, main_cmd
from .catalog import METHODS, TASK_INFO, extras, size_problem
from .config import PretrainConfig, RunConfig
from .errors import REPORT_A_BUG, ConfigError, Interrupted, user_error
from .study.plan import Plan, Stages
from .study.presets import PRESET_WORLD, grid, print_grid, select
from .worlds.shapes import WorldConfig, ensure_world

# torch, transformers, pandas and altair load inside the commands that need them (the data, training, sweep, report
# and pre-training modules), for start-up speed: `vlpeft --help` and `sweep --dry-run` answer in well under a second
# (tests/test_runfolders.py: test_help_is_fast_and_explains_sizes).


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (),
                       helps: dict | None = None, choices: dict | None = None) -> None:
    """One --flag per field of a flat config dataclass, with its default and type (and, for the fields in
    `choices`, its valid values: a typo is refused by argparse, before any import)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = (helps or {}).get(f.name, "") + f" (default: {default!r})"
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            kind = {int: int, float: float}.get(hints[f.name], str)
            parser.add_argument(flag, type=kind, default=default, help=text, choices=(choices or {}).get(f.name))


def to_args(cfg) -> list[str]:
    """The flags that `add_dataclass_args` parses back into `cfg` (for launching a run in another process)."""
    flags = []
    for f in dataclasses.fields(cfg):
        value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif not dataclasses.is_dataclass(value):
            flags.append(f"{flag}={value}")
    return flags


def from_args(cls, args: argparse.Namespace, **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names}, **extra)


SIZES = "; ".join(f"{m.name}: {m.knob} (default {m.default_size})" for m in METHODS.values() if m.knob)
TRAIN_HELP = {
    "task": f"one of {', '.join(TASK_INFO)}: captioning is consistent with pre-training, VQA is not",
    "method": f"one of {', '.join(METHODS)}",
    "size": f"what Table II varies, per method — {SIZES}; 0 takes the default, and "
            f"{', '.join(m.title for m in METHODS.values() if not m.sized)} has none",
    "tune_classifier": "\"+ classifier\": also fine-tune the decoder's LM head",
    "data_ratio": "fraction of the training split, in (0, 1]",
    "model_path": "a BLIP checkpoint folder or a hub name in the local cache; {task} is replaced by the task",
    "data_root": "a folder with annotations/ (the shapes world, or MSCOCO/VQAv2 in Karpathy's or BLIP's layout)",
    "image_root": "where COCO's train2014/ and val2014/ are ('': <data-root>/images)",
    "label_smoothing": "of the decoder's cross-entropy: 0.0 the paper's, 0.1 BLIP's own",
    "feature_cache": "a folder to share the frozen vision tower's outputs in (PEFT runs); '' computes them",
    "fault": "testing only: nan:K, crash:K, kill:K or interrupt:K",
    "vqa_route": "vqa: mplug (the answer decoder reads [image; question], the paper's model) or blip (the question "
                 "only, BLIP's); '' takes the checkpoint's own",
}


# ---------------------------------------------------------------------------------------------------------
def cmd_world(args):
    from .data import Paths, load_vqa, question_prior
    out = ensure_world(args.out, from_args(WorldConfig, args))
    prior, _ = question_prior(load_vqa(Paths(out), "train"), load_vqa(Paths(out), "test"))
    print(f"shapes world ready in {out}; VQA question-type prior on the test split: {prior:.3f} (VQAv2: about 0.31)")


def cmd_pretrain(args):
    from .worlds.pretrain import pretrain
    out = pretrain(from_args(PretrainConfig, args), force=args.force)
    card = json.loads((out / "card.json").read_text())
    print(json.dumps({k: card[k] for k in ("steps", "wall_s", "final_losses", "zero_shot")}, indent=2))


def cmd_convert(args):
    main_cmd(args)


def cmd_train(args):
    cfg = from_args(RunConfig, args)
    size = cfg.size or (METHODS[cfg.method].default_size if cfg.method in METHODS and METHODS[cfg.method].sized else 0)
    if cfg.method in METHODS and (problem := size_problem(cfg.method, size)):  # a flag's mistake before any path's
        raise ConfigError(problem)                                         # (0: the method's default size)
    path = cfg.model_path.format(task=cfg.task)
    if not (cfg.task == "vqa" and looks_vqa_finetuned(path)):  # that refusal (in train.validate) says more
        check_path(path)                                       # before torch is imported: a wrong path fails at once
    from .train import run
    metrics = run(cfg, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`, rank 0 speaks
        print(json.dumps(metrics, indent=2))


def folder_arg(path: str | None, flag: str) -> None:
    """Refuse a folder argument that names a file (before any work)."""
    if path and Path(path).exists() and not Path(path).is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; choose a folder (new or vlpeft's own)")


def _cells(args, preset: str):
    folder_arg(args.runs_root, "--runs-root")
    folder_arg(args.feature_cache, "--feature-cache")
    if args.data_root and not Path(args.data_root).is_dir() and not args.dry_run:  # a typo must not become a world
        raise ConfigError(f"--data-root {args.data_root} does not exist; leave it out for the preset's own world, or "
                          f"write one there first (`vlpeft world --out {args.data_root}`)")
    overrides = ({"vqa_route": args.vqa_route} if args.vqa_route else {}) | (
        {"compile": args.compile} if args.compile != "auto" else {}) | (
        {"numerics": args.numerics} if args.numerics != "pinned" else {})
    cells = grid(preset, args.study or preset, runs_root=args.runs_root, data_root=args.data_root,
                 model_path=args.model_path, feature_cache=args.feature_cache, image_root=args.image_root,
                 extra_methods=extras(args.methods or []), **overrides)   # methods beyond the paper's: when named
    return select(cells, tasks=args.tasks, methods=args.methods, sizes=args.sizes, ratios=args.ratios,
                  seeds=args.seeds, draws=args.draws)


def cmd_sweep(args):
    cells = _cells(args, args.preset)
    plan = Plan.of(cells, args.workers, args.runs_root)
    if args.dry_run:
        print_grid(cells)
        print(plan)
        return
    print(plan, flush=True)
    from .study.executors import execute  # torch and the engine only for a real sweep
    failures = execute(cells, executor=args.executor, workers=args.workers, slurm=vars(args))
    sys.exit(1 if failures and args.strict else 0)


def cmd_report(args):
    from .study.report import Study, write_report
    folder_arg(args.out, "--out")
    study = Study.load(args.study)
    out = write_report(study, args.out or f"reports/{study.name}")
    print(f"report: {Path(out) / 'index.html'} ({len(study.runs)} runs from {study.source})")


def cmd_compare(args):
    """`vlpeft compare`: two studies of one grid that differ in one factor (by default the pre-training recipe) side
    by side → reports/families; refused, with nothing written, when they are not (`families.check_premise`)."""
    from .study.report import Study, label_of, write_families
    from .study.report.families import check_premise, get_factor
    folder_arg(args.out, "--out")
    factor = get_factor(args.factor)
    if args.labels and len(set(args.labels)) < 2:
        raise ConfigError(f"the two studies need two names, got {args.labels[0]!r} twice; pass --labels A B")
    studies = [Study.load(s) for s in args.studies]
    check_premise(studies, factor.name)
    labels = args.labels or [label_of(s, factor.name) for s in studies]
    if len(set(labels)) < 2:
        labels = [s.name for s in studies]
    if len(set(labels)) < 2:
        raise ConfigError(f"the two studies are both called {labels[0]!r}; pass --labels A B")
    out = write_families(dict(zip(labels, studies)), args.out, factor=factor.name)
    print(f"two {factor.plural} side by side: {Path(out) / 'index.html'} ({' vs '.join(labels)})")


def cmd_data(args):
    """`vlpeft data check`: Table I as the root gives it, and every problem; exit 0 only when a study can start."""
    from .datacheck import check
    found = check(args.data_root, args.image_root, decode=args.decode)
    print(found)
    if not found.ok:
        sys.exit(1)


def cmd_study(args):
    """Assets (cached; never generated for `real`) → the preset's sweep → report."""
    t0 = time.time()
    cells = _cells(args, args.preset)  # every argument checked before the heavy imports below
    study = args.study or args.preset
    print(f"study {study}: preset {args.preset}, runs under {args.runs_root}/{study}", flush=True)
    if args.dry_run:
        print_grid(cells)
    print(Plan.of(cells, args.workers, args.runs_root, report=True), flush=True)
    if args.dry_run:
        return
    from .study.executors import execute
    from .study.report import Study, write_report
    stages = Stages(4)
    failures = execute(cells, executor="local", workers=args.workers, stages=stages)
    stages.next("analysis and report")
    part = part_name(args, cells)
    out = write_report(Study.load(f"{args.runs_root}/{study}", run_ids={c.out_dir.name for c in cells},
                                  name=f"{study}-{part}") if part else f"{args.runs_root}/{study}",
                       args.out or f"reports/{study}" + (f"-{part}" if part else ""))
    print(f"done in {(time.time() - t0) / 60:.1f} min: {Path(out) / 'index.html'}"
          + (f" ({len(failures)} failed or diverged runs, listed in the report)" if failures else ""))


# The flags that narrow a preset's grid to a part of it (`presets.select`), with each one's type
NARROWING = {"tasks": str, "methods": str, "sizes": int, "ratios": float, "seeds": int, "draws": int}


def part_name(args, cells) -> str:
    """A part of a grid by its narrowing flags, e.g. `draws-1`; "" when the flags leave the preset's whole grid
    (`--draws 0 1 2` of a three-draw preset). A study run on a part reports the part's runs only, into
    reports/<study>-<part>: `--draws 1` must not write one draw over the committed three-draw report (its run
    folders share runs/<study> with the rest of the grid, which is what resumes them)."""
    whole = _cells(argparse.Namespace(**(vars(args) | dict.fromkeys(NARROWING))), args.preset)
    if {c.out_dir for c in cells} == {c.out_dir for c in whole}:
        return ""
    return "-".join(f"{flag}-{'-'.join(map(str, values))}" for flag in NARROWING
                    if (values := getattr(args, flag, None)))


def cmd_verify(args):
    """`vlpeft verify`: re-make a sample of a report's cells in a scratch folder; exit 0 only within --tolerance."""
    from .study.verify import verify
    folder_arg(args.runs_root, "--runs-root")
    folder_arg(args.feature_cache, "--feature-cache")
    ok = verify(args.report, sample_size=args.sample, cells=args.cells, seed=args.seed, runs_root=args.runs_root,
                tolerance=args.tolerance, workers=args.workers, keep=args.keep, preset=args.preset,
                feature_cache=args.feature_cache, data_root=args.data_root, model_path=args.model_path,
                image_root=args.image_root, vqa_route=args.vqa_route)
    sys.exit(0 if ok else 1)


def non_negative(text: str) -> float:
    """An argparse type: a number ≥ 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive(text: str) -> int:
    """An argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_grid_args(s: argparse.ArgumentParser, default_preset: str) -> None:
    s.add_argument("--preset", choices=["smoke", "tiny", "tiny-blip", "dial", "paper"], default=default_preset,
                   help="smoke: a wiring check; tiny: the embedded study (mPLUG's pre-training recipe, the paper's "
                        "model); tiny-blip: the same from BLIP's recipe; dial: the consistency dial (beyond the "
                        "paper); paper: Table II on BLIP-base and COCO")
    s.add_argument("--study", help="runs go to <runs-root>/<study>/… (default: the preset's name)")
    s.add_argument("--runs-root", default="runs")
    s.add_argument("--data-root", help="default: the preset's world (data/shapes, data/smoke, data/coco)")
    s.add_argument("--image-root", help="where COCO's train2014/ and val2014/ are, if not <data-root>/images")
    s.add_argument("--model-path", help="a checkpoint folder with {task}; default: the preset's model")
    s.add_argument("--feature-cache", default="cache/features",
                   help="where PEFT runs share the frozen vision features; '' to compute them in every step")
    s.add_argument("--vqa-route", choices=["mplug", "blip"],
                   help="VQA cells' answer-decoder route (default: the preset's recipe; for real BLIP, blip)")
    s.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="compile each run's training step: auto where it pays (vlpeft/compiling.py), on, or off; "
                        "it does not change a run's id (compiled ≡ eager within float rounding)")
    s.add_argument("--numerics", choices=["pinned", "native"], default="pinned",
                   help="pinned: every run on the same numeric path on any x86-64 machine (1 thread a run, AVX2 "
                        "kernels; vlpeft/numerics.py); native: the machine's own kernels and a share of its threads "
                        "(faster, machine-dependent; enters the run ids)")
    s.add_argument("--workers", type=positive, default=2, help="local: parallel runs (one GPU each when present)")
    for name, kind in NARROWING.items():
        s.add_argument(f"--{name}", type=kind, nargs="+", help=f"only these {name}" + (
            "; a catalogue method beyond the paper's is laid out by the preset's rule and run beside them"
            if name == "methods" else " (pre-training draws: each its own stand-in, `vlpeft.worlds.assets.DESIGN`; "
            "the quickest way to re-make one draw of a study)" if name == "draws" else ""))


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line that points at --help (not the whole usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="vlpeft", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors too")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("world", help="write the synthetic shapes world in MSCOCO/VQAv2 formats")
    s.add_argument("--out", default="data/shapes", help="an empty or new folder, or an earlier world of this config")
    add_dataclass_args(s, WorldConfig)
    s.set_defaults(fn=cmd_world)

    s = sub.add_parser("pretrain", help="pre-train the embedded tiny BLIP (cached; a stopped one resumes; --force to "
                                        "redo)",
                       description="Pre-train the embedded tiny BLIP into --out: a complete model of the same config "
                                   "is not redone; a stopped one (Ctrl-C, a signal, a killed process) resumes from "
                                   "its last resume point (every 100 steps) to the same weights bit for bit.")
    add_dataclass_args(s, PretrainConfig)
    s.add_argument("--force", action="store_true", help="redo it from step 0, whatever the folder holds")
    s.set_defaults(fn=cmd_pretrain)

    s = sub.add_parser("convert-blip", help="BLIP's original pre-training checkpoint → transformers folders")
    add_arguments(s)
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("train", help="one fine-tuning run (a complete run is not redone; a killed one resumes)",
                       description="One fine-tuning run. Methods and what --size means: " + SIZES + ".")
    add_dataclass_args(s, RunConfig, helps=TRAIN_HELP, choices={"task": list(TASK_INFO), "method": list(METHODS)})
    s.add_argument("--overwrite", action="store_true",
                   help="discard a run of another configuration in --out-dir instead of refusing")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("sweep", help="run a preset grid through the method notebooks (papermill)")
    add_grid_args(s, "smoke")
    s.add_argument("--dry-run", action="store_true", help="print the grid, what exists and what will be made, and "
                   "an estimate of the time; run nothing")
    s.add_argument("--executor", choices=["local", "slurm"], default="local")
    s.add_argument("--partition", help="slurm partition")
    s.add_argument("--time", type=int, default=240, help="slurm: minutes per job")
    s.add_argument("--gpus", type=int, default=1, help="slurm: GPUs per job")
    s.add_argument("--slurm-dir", default="runs/slurm_logs")
    s.add_argument("--strict", action="store_true", help="exit 1 when any run failed or diverged")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("report", help="figures, claims table and index.html from a study's runs")
    s.add_argument("--study", default="runs/tiny", help="runs/<study> (its run folders), a report folder (its "
                   "runs.csv), or a study name")
    s.add_argument("--out", help="default: reports/<study name>")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("compare", help="one study from two pre-training recipes, side by side (beyond the paper)",
                       description="The eleven verdicts and each method's scores of two studies of the same grid — "
                                   "the tiny BLIP pre-trained with mPLUG's recipe and with BLIP's — side by side, "
                                   "with what the recipe changes. Two studies that are not one grid (the same cells "
                                   "and seeds) in two values of the factor are refused, with nothing written.")
    s.add_argument("studies", nargs=2, metavar="STUDY", help="run folders (runs/tiny) or report folders "
                   "(reports/tiny-blip), or study names")
    s.add_argument("--labels", nargs=2, help="what to call them (default: the factor's value their runs record)")
    s.add_argument("--factor", default="recipe",
                   help="what the two studies differ in: recipe (the default; with the VQA route and checkpoint that "
                        "follow from it), route (two VQA routes on one recipe), pretrain-seed (two pre-training "
                        "draws) or world (two worlds; the runs do not record which: name them with --labels)")
    s.add_argument("--out", default="reports/families", help="the page's folder (default: reports/families)")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("data", help="check a data root: its layout, Table I as it gives it, missing images",
                       description="Read the annotation files (Karpathy's dataset_coco.json with the VQAv2 files, or "
                                   "BLIP's/LAVIS's coco_karpathy_*.json and vqa_*.json), apply Table I's splits, look "
                                   "for every image and decode a sample; exit 0 only when a study can start.")
    s.add_argument("action", choices=["check"])
    s.add_argument("--data-root", default="data/coco", help="the folder holding annotations/ (default: data/coco)")
    s.add_argument("--image-root", help="where COCO's train2014/ and val2014/ are (default: <data-root>/images)")
    s.add_argument("--decode", type=int, default=32, help="images to open and decode, a seeded sample (default: 32)")
    s.set_defaults(fn=cmd_data)

    s = sub.add_parser("study", help="assets → sweep → report, end to end (what `make study` runs)")
    add_grid_args(s, "tiny")
    s.add_argument("--dry-run", action="store_true", help="print the grid, what exists and what will be made, and "
                   "an estimate of the time; run nothing")
    s.add_argument("--out", help="the report folder (default: reports/<study>; on a part of the grid, its runs "
                   "only, into reports/<study>-<part>, e.g. reports/tiny-draws-1)")
    s.set_defaults(fn=cmd_study)

    s = sub.add_parser("verify", help="re-make a few cells of a committed report; exit 0 only if the numbers hold",
                       description="Re-run K cells of a report (a folder holding runs.csv, e.g. reports/tiny) from "
                                   "their committed configs, in a scratch runs folder, through the sweep's own path; "
                                   "print each cell's committed and re-made best validation, test and final "
                                   "validation score with their difference, and a last line: `3/3 identical`, or the "
                                   "largest difference beside the report's run-to-run spread. A run id names one "
                                   "config (a hash of every field that changes results), so a cell's config is the "
                                   "cell of that id in its preset's grid. Verify uses the study's own world and "
                                   "pre-trained model and never makes them.",
                       epilog="exit status: 0 when every cell re-ran and every score is within --tolerance; 1 when "
                              "one differs by more or did not complete; 2 for a usage error. Example: "
                              " vlpeft verify reports/tiny --sample 3   (from under a minute to about 20 min a "
                              "cell on a 2-core CPU, once the study's stand-ins exist)")
    s.add_argument("report", help="a report folder holding runs.csv (or the runs.csv itself)")
    s.add_argument("--sample", type=positive, default=3, metavar="K",
                   help="how many complete cells to re-make: a seeded draw, spread over tasks and methods (default 3)")
    s.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    s.add_argument("--cells", nargs="+", metavar="RUN_ID",
                   help="re-make these cells instead of a sample: run ids (the last part of runs.csv's run_dir), "
                        "or task/method/run-id")
    s.add_argument("--tolerance", type=non_negative, default=0.0,
                   help="the largest absolute difference accepted in any score (default 0: the numbers exactly as "
                        "runs.csv writes them, bit for bit)")
    s.add_argument("--runs-root", help="the scratch folder the cells are re-made in (default: a new temporary "
                   "folder, removed afterwards); never the study's own runs folder")
    s.add_argument("--keep", action="store_true", help="keep the temporary scratch folder (its path is printed)")
    s.add_argument("--workers", type=positive, default=2, help="cells re-made at once (default 2, as `make study`)")
    s.add_argument("--feature-cache", help="share this frozen-feature cache (default: a fresh one in the scratch "
                   "folder, so nothing computed before is reused)")
    s.add_argument("--preset", choices=list(PRESET_WORLD),
                   help="the preset whose grid holds the study's configs (default: the study's name, else whichever "
                        "preset's grid holds the run ids)")
    s.add_argument("--data-root", help="as the study was made with (default: the preset's)")
    s.add_argument("--model-path", help="as the study was made with (default: the preset's)")
    s.add_argument("--image-root", help="as the study was made with (default: the preset's)")
    s.add_argument("--vqa-route", choices=["mplug", "blip"], help="as the study was made with (default: the preset's)")
    s.set_defaults(fn=cmd_verify)
    return p


def main(argv: list[str] | None = None) -> None:
    """Run a command; a user's mistake or the machine's refusal is one or two lines and an exit code (2 for usage),
    a bug keeps its traceback with a line saying so. `--debug` shows every traceback."""
    import traceback

    args = parser().parse_args(argv)
    debug = args.debug or os.environ.get("VLPEFT_DEBUG") == "1"
    try:
        if (problem := numerics.env_problem()) is not None:
            raise ConfigError(problem)
        numerics.pin_environment(getattr(args, "numerics", None))  # before any command loads torch
        args.fn(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nvlpeft {args.cmd}: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the boundary: every error is either the user's or a bug
        error = user_error(e)
        if debug or error is None:
            if error is None and not debug:
                traceback.print_exc()
                print(f"vlpeft {args.cmd}: internal error: {REPORT_A_BUG} (`--debug` shows every traceback)",
                      file=sys.stderr)
                sys.exit(1)
            raise
        message = str(error)
        if "Original Traceback" in message:  # raised in a DataLoader worker: torch prepends the worker's traceback
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        lead = "\n" if isinstance(error, Interrupted) else ""  # the progress bar's line is left as it is
        print(f"{lead}vlpeft {args.cmd}: error: {message}", file=sys.stderr)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
