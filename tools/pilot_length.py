"""The pre-training length pilot of reports/tiny/schedule.md §7.1 (#39): pre-train the pilot draws at each candidate
length, read their cards, and apply the declared rule.

    python tools/pilot_length.py run                 # pre-train what is missing, two at a time (pinned path)
    python tools/pilot_length.py decide              # the table, and the rule's outcome once every card is there

Candidates L ∈ {1000, 3000, 6000} steps (warm-up L / 10, the cosine over L), pilot draws 7 and 8, both recipes; each
model in checkpoints/pilot-length/<recipe>-L<L>-p<seed>. Measured per card: zero-shot CIDEr on the 150 test images,
and the final training loss (the summed objectives, mean over the last 5 % of steps: the card's `loss_curve` holds
the mean per 1 %). The rule: L is the shortest candidate at which, for both recipes, (a) the two draws' zero-shot
CIDEr differ by at most 0.05, and (b) the next candidate's final loss (mean over the draws) is less than 5 % below
this one's (the last candidate: (a) alone); none: 6000, not converged by the rule.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = (1000, 3000, 6000)
DRAWS = (7, 8)
RECIPES = ("mplug", "blip")
AGREE = 0.05        # (a): zero-shot CIDEr, between the two draws
FLAT = 0.05         # (b): relative fall of the final loss at the next candidate
OUT = ROOT / "checkpoints" / "pilot-length"


def folder(recipe: str, length: int, draw: int) -> Path:
    return OUT / f"{recipe}-L{length}-p{draw}"


def command(recipe: str, length: int, draw: int) -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "vlpeft"), "pretrain", "--data-root", str(ROOT / "data" / "shapes"),
            "--out", str(folder(recipe, length, draw)), "--seed", str(draw), "--steps", str(length),
            "--warmup", str(length // 10), "--recipe", recipe]


def card(recipe: str, length: int, draw: int) -> dict | None:
    path = folder(recipe, length, draw) / "card.json"
    if not path.is_file():
        return None
    c = json.loads(path.read_text())
    curve = c["loss_curve"]
    last = curve[-max(1, len(curve) // 20):]           # the last 5 % of the steps
    return {"cider": c["zero_shot"]["cider"], "final_loss": sum(last) / len(last), "wall_s": c["wall_s"]}


def decide() -> None:
    cards = {(r, n, d): card(r, n, d) for r in RECIPES for n in LENGTHS for d in DRAWS}
    print("| recipe | L | draw 7: zero-shot CIDEr / final loss | draw 8 | |CIDEr 7 − 8| | wall (s) |")
    print("|---|---|---|---|---|---|")
    for r in RECIPES:
        for n in LENGTHS:
            a, b = cards[(r, n, 7)], cards[(r, n, 8)]
            cell = [f"{x['cider']:.4f} / {x['final_loss']:.4f}" if x else "—" for x in (a, b)]
            gap = f"{abs(a['cider'] - b['cider']):.4f}" if a and b else "—"
            wall = " / ".join(f"{x['wall_s']:.0f}" for x in (a, b) if x) or "—"
            print(f"| {r} | {n} | {cell[0]} | {cell[1]} | {gap} | {wall} |")
    missing = [k for k, v in cards.items() if v is None]
    if missing:
        print(f"\nnot decided: {len(missing)} of {len(cards)} pre-trainings missing "
              f"(`python tools/pilot_length.py run`)")
        return
    for i, n in enumerate(LENGTHS):
        ok = True
        for r in RECIPES:
            a, b = cards[(r, n, 7)], cards[(r, n, 8)]
            ok &= abs(a["cider"] - b["cider"]) <= AGREE                                   # (a)
            if i + 1 < len(LENGTHS):                                                       # (b)
                here = (a["final_loss"] + b["final_loss"]) / 2
                nxt = sum(cards[(r, LENGTHS[i + 1], d)]["final_loss"] for d in DRAWS) / 2
                ok &= (here - nxt) / here < FLAT
        if ok:
            print(f"\nthe rule: L = {n}")
            return
    print(f"\nthe rule: no candidate qualifies; L = {LENGTHS[-1]}, not converged by the rule")


def run(workers: int) -> None:
    todo = [(r, n, d) for n in LENGTHS for r in RECIPES for d in DRAWS if card(r, n, d) is None]
    print(f"{len(todo)} pre-trainings to run, {workers} at a time")

    def one(key):
        done = subprocess.run(command(*key), cwd=ROOT, capture_output=True, text=True)
        print(f"{key}: {'done' if done.returncode == 0 else 'FAILED ' + done.stderr[-500:]}", flush=True)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, todo))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["run", "decide"])
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    run(a.workers) if a.action == "run" else decide()


if __name__ == "__main__":
    sys.exit(main())
