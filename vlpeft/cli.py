"""`vlpeft …` — the command line. Every sub-command is a thin call into the package.

    vlpeft world    --out data/shapes                    write the synthetic shapes world (real file formats)
    vlpeft pretrain --data-root data/shapes              pre-train the embedded tiny BLIP (cached)
    vlpeft train    --task vqa --method lora --size 8    one fine-tuning run
    vlpeft sweep    --preset tiny [--dry-run]            a grid of runs through the method notebooks
    vlpeft report   --study runs/tiny                    figures + claims table + index.html
    vlpeft study    --preset tiny                        all of the above, end to end (what `make study` runs)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from pathlib import Path


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One --flag per field of a flat config dataclass, with its default and the comment-free type."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = {int: int, float: float}.get(hints[f.name], str)
            parser.add_argument(flag, type=kind, default=default, help=f"(default: {default})")


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


def cmd_world(args):
    from .world import WorldConfig, ensure_world
    out = ensure_world(args.out, from_args(WorldConfig, args))
    print(f"shapes world ready in {out}")


def cmd_pretrain(args):
    from .pretrain import PretrainConfig, pretrain
    out = pretrain(from_args(PretrainConfig, args), force=args.force)
    card = json.loads((out / "card.json").read_text())
    print(json.dumps({k: card[k] for k in ("steps", "wall_s", "final_losses", "zero_shot")}, indent=2))


def cmd_train(args):
    import os
    from .train import RunConfig, run
    metrics = run(from_args(RunConfig, args))
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`, rank 0 speaks
        print(json.dumps(metrics, indent=2))


def cmd_sweep(args):
    from . import sweep
    cells = sweep.select(sweep.grid(args.preset, args.study or args.preset), tasks=args.tasks,
                         methods=args.methods, sizes=args.sizes, ratios=args.ratios, seeds=args.seeds)
    if args.dry_run:
        sweep.print_grid(cells)
        return
    failures = sweep.execute(cells, executor=args.executor, workers=args.workers, slurm=vars(args))
    sys.exit(1 if failures and args.strict else 0)


def cmd_report(args):
    from .figures import write_report
    out = write_report(args.study, args.out or f"reports/{Path(args.study).name}")
    print(f"report: {Path(out) / 'index.html'}")


def cmd_study(args):
    """world → pre-training → the preset's sweep → report, each stage cached or resumed."""
    from . import sweep
    from .pretrain import PretrainConfig, pretrain
    from .world import WorldConfig, ensure_world
    t0 = time.time()
    print("[1/4] shapes world", flush=True)
    ensure_world(args.data_root, WorldConfig())
    print("[2/4] pre-training the embedded BLIP (cached after the first time)", flush=True)
    pretrain(PretrainConfig(data_root=args.data_root, out=args.model_root))
    print(f"[3/4] sweep: preset {args.preset}", flush=True)
    cells = sweep.grid(args.preset, args.preset, data_root=args.data_root,
                       model_path=f"{args.model_root}/{{task}}")
    failures = sweep.execute(cells, executor="local", workers=args.workers)
    print("[4/4] analysis and report", flush=True)
    try:
        from .figures import write_report
    except ImportError:
        print(f"STOPPED after the sweep: the analysis stage (vlpeft.figures, issue 7) is not built yet. "
              f"The runs are in runs/{args.preset}/ ({len(failures)} failed).")
        sys.exit(2)
    out = write_report(f"runs/{args.preset}", f"reports/{args.preset}")
    print(f"done in {(time.time() - t0) / 60:.1f} min: {Path(out) / 'index.html'}"
          + (f" ({len(failures)} failed runs, listed in the report)" if failures else ""))


def main(argv: list[str] | None = None) -> None:
    from .pretrain import PretrainConfig
    from .train import RunConfig
    from .world import WorldConfig
    p = argparse.ArgumentParser(prog="vlpeft", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("world", help="write the synthetic shapes world in MSCOCO/VQAv2 formats")
    s.add_argument("--out", default="data/shapes")
    add_dataclass_args(s, WorldConfig)
    s.set_defaults(fn=cmd_world)

    s = sub.add_parser("pretrain", help="pre-train the embedded tiny BLIP (cached; --force to redo)")
    add_dataclass_args(s, PretrainConfig)
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_pretrain)

    s = sub.add_parser("train", help="one fine-tuning run (a complete run is not redone; a killed one resumes)")
    add_dataclass_args(s, RunConfig)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("sweep", help="run a preset grid through the method notebooks (papermill)")
    s.add_argument("--preset", choices=["smoke", "tiny", "paper"], default="smoke")
    s.add_argument("--study", help="runs/<study>/… (default: the preset's name)")
    for name, kind in (("tasks", str), ("methods", str), ("sizes", int), ("ratios", float), ("seeds", int)):
        s.add_argument(f"--{name}", type=kind, nargs="+", help=f"only these {name}")
    s.add_argument("--dry-run", action="store_true", help="print the grid and its size, run nothing")
    s.add_argument("--executor", choices=["local", "slurm"], default="local")
    s.add_argument("--workers", type=int, default=2, help="local: parallel runs (one GPU each when present)")
    s.add_argument("--partition", help="slurm partition")
    s.add_argument("--time", type=int, default=240, help="slurm: minutes per job")
    s.add_argument("--gpus", type=int, default=1, help="slurm: GPUs per job")
    s.add_argument("--slurm-dir", default="runs/slurm_logs")
    s.add_argument("--strict", action="store_true", help="exit 1 when any run failed")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("report", help="figures, claims table and index.html from a study's runs")
    s.add_argument("--study", default="runs/tiny")
    s.add_argument("--out", help="default: reports/<study name>")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("study", help="world → pre-train → sweep → report (what `make study` runs)")
    s.add_argument("--preset", choices=["smoke", "tiny", "paper"], default="tiny")
    s.add_argument("--data-root", default="data/shapes")
    s.add_argument("--model-root", default="checkpoints/embedded")
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(fn=cmd_study)

    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
