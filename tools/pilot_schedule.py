"""The schedule pilot (#21; declared in reports/tiny/schedule.md before it ran): the tiny VQA epochs are the
smallest of {3, 5, 10} at which every method's validation curve, at its reference size and 100 % data, gains
under 1 point over its last fifth. Pilot seed 7 only (the study's seeds are 0, 1, 2). `--world` picks the stand-in:
`embedded` (mPLUG's recipe, the study's since #29; schedule.md section 6) or `embedded-blip` (BLIP's, section 5).

    python tools/pilot_schedule.py run vqa --epochs 3 [--methods lora prompt]   # → runs/pilot_schedule/vqa/e3/…
    python tools/pilot_schedule.py run caption                                  # the rule's caption steps
    python tools/pilot_schedule.py decide                                       # the rule on what ran, as a table
    python tools/pilot_schedule.py figure                                       # reports/tiny/schedule_curves.png
    python tools/pilot_schedule.py --world embedded --root runs/pilot_schedule_mplug \
        --figure reports/tiny/schedule_curves_mplug run vqa --epochs 3           # section 6's pilot
    python tools/pilot_schedule.py --world embedded --model-root checkpoints/pilot-length/mplug-L3000-p7 \
        --root runs/pilot_schedule_L3000 run vqa --epochs 3                      # section 7's: a pilot draw's model
"""
import argparse
import json
from pathlib import Path

from vlpeft.catalog import METHODS
from vlpeft.config import RunConfig
from vlpeft.study.presets import checkpoint_route, tiny_base
from vlpeft.worlds.assets import get_world, prepare
from vlpeft.worlds.shapes import ensure_world

PILOT_SEED = 7
EPOCH_CHOICES = (3, 5, 10)
GAIN_POINTS = 1.0          # "flattened": the last fifth gains under 1 point
PILOT_EVALUATIONS = 10     # validation points per pilot run (the whole validation split each time)
ROOT = Path("runs/pilot_schedule")
WORLD = "embedded-blip"    # the stand-in the pilot runs on (section 5 ran on BLIP's recipe, then named `embedded`)
MODEL_ROOT = ""            # another model of the world's data (section 7: a pilot draw, tools/pilot_length.py)


def reference_size(method: str) -> int:
    return METHODS[method].default_size   # the middle of the tiny grid (0 without a size)


def config(task: str, method: str, epochs: int) -> RunConfig:
    world = get_world(WORLD)
    model_path = f"{MODEL_ROOT}/{{task}}" if MODEL_ROOT else world.model_path
    base = tiny_base(world.world, epochs)[task]
    questions = (world.world.n_train + world.world.n_restval) * world.world.questions_per_image
    total = base["steps"] if task == "caption" else epochs * -(-questions // base["batch_size"])
    out = ROOT / task / (f"e{epochs}" if task == "vqa" else f"s{base['steps']}") / method
    return RunConfig(**(base | dict(task=task, method=method, size=reference_size(method), data_ratio=1.0,
                                    seed=PILOT_SEED, lr=METHODS[method].embedded_lr[task], eval_size=0,
                                    eval_every=-(-total // PILOT_EVALUATIONS), data_root=world.data_root,
                                    model_path=model_path,
                                    out_dir=str(out), threads=1, checkpoint_every=0,
                                    feature_cache="cache/features")
                                 | ({"vqa_route": checkpoint_route(model_path, world.vqa_route)}   # the model's own
                                    if task == "vqa" else {})))


def last_fifth_gain(curve: list[dict], total: int) -> float:
    """Score points the curve gains over its last fifth: mean of its evaluations in (80 %, 100 %] minus the mean of
    those in (60 %, 80 %] (two each with 10 evaluations), so that one noisy point does not decide."""
    late = [c["val"] for c in curve if c["step"] > 0.8 * total]
    before = [c["val"] for c in curve if 0.6 * total < c["step"] <= 0.8 * total]
    return 100 * (sum(late) / len(late) - sum(before) / len(before))


def table():
    import pandas as pd

    from vlpeft.data import Paths, load_vqa, question_prior
    rows = []
    for metrics in sorted(ROOT.rglob("metrics.json")):
        m = json.loads(metrics.read_text())
        curve = json.loads((metrics.parent / "curve.json").read_text())
        rows.append({"task": m["task"], "schedule": metrics.parent.parent.name, "method": m["method"],
                     "size": m["size"],
                     "steps": m["steps"], "best_val": m["best_val"], "final_val": m["final_val"],
                     "last_fifth_gain_pts": last_fifth_gain(curve, m["steps"]),   # judged unrounded
                     "curve": " ".join(f"{c['val']:.2f}" for c in curve), "wall_s": round(m["wall_s"]),
                     "train_s": round(m["train_s"]), "eval_s": round(m.get("eval_s", 0))})
    df = pd.DataFrame(rows)
    paths = Paths(Path(get_world(WORLD).data_root))
    prior = question_prior(load_vqa(paths, "train"), load_vqa(paths, "val"))[0]
    return df, prior


def decide():
    df, prior = table()
    vqa = df[df.task == "vqa"]
    chosen = None
    for e in EPOCH_CHOICES:
        runs = vqa[vqa.schedule == f"e{e}"]
        if len(runs) == len(METHODS) and (runs.last_fifth_gain_pts < GAIN_POINTS).all():
            chosen = e
            break
    at = vqa[vqa.schedule == f"e{chosen or max(EPOCH_CHOICES)}"]
    fair = {m: bool(v > prior) for m, v in zip(at.method, at.best_val) if m != "full"}
    return df, prior, chosen, fair


def figure(out: str):
    import altair as alt
    import pandas as pd

    from vlpeft.study.figures import save
    rows = []
    for metrics in sorted(ROOT.rglob("metrics.json")):
        m = json.loads(metrics.read_text())
        for c in json.loads((metrics.parent / "curve.json").read_text()):
            rows.append({"task": m["task"], "schedule": metrics.parent.parent.name, "method": m["method"],
                         "progress": c["step"] / m["steps"], "val": c["val"]})
    d = pd.DataFrame(rows)
    chart = alt.Chart(d).mark_line(point=True).encode(
        x=alt.X("progress:Q", title="fraction of the run", axis=alt.Axis(format="%")),
        y=alt.Y("val:Q", title="validation score (CIDEr / VQA accuracy)", scale=alt.Scale(zero=False)),
        color=alt.Color("method:N", sort=list(METHODS), scale=alt.Scale(domain=list(METHODS), range=[m.colour for m in
                                                                                            METHODS.values()])),
    ).properties(width=300, height=200).facet(row="task:N", column=alt.Column("schedule:N", sort=["e3", "e5", "e10"])
                                              ).resolve_scale(y="independent")
    return save(chart, Path(out).parent, Path(out).name)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["run", "decide", "figure"])
    p.add_argument("task", nargs="?", choices=["caption", "vqa"])
    p.add_argument("--epochs", type=int, default=3, choices=EPOCH_CHOICES)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--world", default=WORLD, choices=["embedded", "embedded-blip"])
    p.add_argument("--root", default=str(ROOT), help="where the pilot's runs go")
    p.add_argument("--model-root", default="", help="fine-tune this pre-trained model (its caption/ and vqa/) instead "
                                                    "of the world's own: a pilot draw of section 7")
    p.add_argument("--figure", default="reports/tiny/schedule_curves", help="the curves' figure (no extension)")
    a = p.parse_args()
    WORLD, ROOT, MODEL_ROOT = a.world, Path(a.root), a.model_root
    if a.cmd == "run":
        from vlpeft.train import run
        if MODEL_ROOT:   # a pilot draw's model, pre-trained already: only its world's data is made here
            ensure_world(get_world(WORLD).data_root, get_world(WORLD).world, progress=False)
        else:
            prepare(WORLD)
        for m in a.methods:
            cfg = config(a.task, m, a.epochs)
            r = run(cfg, progress=False)
            print(f"{a.task} {m}: best {r['best_val']:.3f} steps {r['steps']} wall {r['wall_s']:.0f}s", flush=True)
    elif a.cmd == "decide":
        import pandas as pd
        df, prior, chosen, fair = decide()
        pd.set_option("display.width", 250, "display.max_colwidth", 90, "display.precision", 3)
        print(df.to_string(index=False))
        print(f"\nquestion-type prior on the validation split: {prior:.3f}")
        print(f"VQA epochs by the rule: {chosen}  (None: no candidate flattened; the paper's 10 then)")
        print(f"fairness check (beats the prior): {fair}")
    else:
        print(figure(a.figure))
