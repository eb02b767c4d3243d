"""Benchmark: papermill's overhead per run — the same tiny-preset cell run through its notebook and by a direct
`vlpeft.train.run` call (aim: ≤ 10 % of a tiny run's time). Two baselines: `run` inside this already-warm
process (imports paid), and `vlpeft train` in a fresh process (what a sweep without notebooks would pay).

    python benchmarks/papermill_overhead.py [--task caption --method lora --ratio 0.3]

Needs the embedded world and model (`vlpeft world`, `vlpeft pretrain`, or `make study`)."""
import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlpeft import sweep
from vlpeft.cli import to_args
from vlpeft.train import run

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--task", default="caption")
p.add_argument("--method", default="lora")
p.add_argument("--ratio", type=float, default=0.3)
args = p.parse_args()
with tempfile.TemporaryDirectory() as tmp:
    cell = next(c for c in sweep.grid("tiny", "bench", runs_root=tmp) if c.task == args.task
                and c.method == args.method and c.data_ratio == args.ratio and c.seed == 0 and not c.tune_classifier)
    cell.overrides["threads"] = 2
    t0 = time.time()
    run(cell.config(), progress=False)
    direct = time.time() - t0
    fresh_cfg = dataclasses.replace(cell.config(), out_dir=str(Path(tmp) / "fresh"))
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "vlpeft.cli", "train", *to_args(fresh_cfg)], check=True, capture_output=True)
    fresh = time.time() - t0
    nb_cell = sweep.Cell(**{**vars(cell), "study": "bench-nb"})
    t0 = time.time()
    result = sweep.run_cell(nb_cell)
    through_nb = time.time() - t0
    assert result["status"] == "complete", result
print(f"{cell.run_id} ({args.task}): run() in a warm process {direct:.1f} s, `vlpeft train` in a fresh process "
      f"{fresh:.1f} s, through papermill {through_nb:.1f} s")
print(f"  papermill overhead vs warm run(): {through_nb - direct:.1f} s = {100 * (through_nb - direct) / direct:.0f} %;"
      f" vs a fresh process: {through_nb - fresh:.1f} s = {100 * (through_nb - fresh) / fresh:.0f} %")
