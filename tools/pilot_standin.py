"""The stand-in pilot (#21, reports/tiny/schedule.md): why LoRA on W_q/W_k cannot learn the embedded VQA, and
which change toward BLIP-base lets it. Pilot seed only (7); the study's seeds are 0, 1, 2.

    python tools/pilot_standin.py pretrain S1 --layers 6            # a stand-in variant → checkpoints/pilot/S1
    python tools/pilot_standin.py run S1 --method lora --size 8     # one VQA run at 100 % data → runs/pilot/S1/…

Each run prints its validation curve; `summary` prints every finished run as one table.
"""
import argparse
import dataclasses
import json
from pathlib import Path

from vlpeft.config import PretrainConfig, RunConfig, TinySpec

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("cmd", choices=["pretrain", "run", "summary"])
p.add_argument("name", nargs="?")
p.add_argument("--data-root", default="data/shapes")
p.add_argument("--layers", type=int, default=TinySpec.layers)
p.add_argument("--heads", type=int, default=TinySpec.heads)
p.add_argument("--hidden", type=int, default=TinySpec.hidden)
p.add_argument("--intermediate", type=int, default=TinySpec.intermediate)
p.add_argument("--steps", type=int, default=PretrainConfig.steps)
p.add_argument("--lm-prompt", default=PretrainConfig.lm_prompt)
p.add_argument("--share", action="store_true", help="share the text towers but self-attention, as BLIP_Pretrain")
p.add_argument("--task", default="vqa")
p.add_argument("--method", default="lora")
p.add_argument("--size", type=int, default=8)
p.add_argument("--cls", action="store_true")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--steps-caption", type=int, default=600)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--seed", type=int, default=7)
p.add_argument("--ratio", type=float, default=1.0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--eval-every", type=int, default=100)
p.add_argument("--tag", default="")
p.add_argument("--towers", default="", help="diagnostic: text_encoder or text_decoder only (default: both)")
p.add_argument("--lora-targets", default="query|key", help="diagnostic: e.g. query|key|value")
a = p.parse_args()

if a.cmd == "pretrain":
    import torch
    torch.set_num_threads(a.threads)
    from vlpeft.worlds.pretrain import pretrain
    from vlpeft.worlds.shapes import WorldConfig, ensure_world
    ensure_world(a.data_root, WorldConfig(), progress=False)
    spec = dataclasses.replace(TinySpec(), layers=a.layers, heads=a.heads, hidden=a.hidden,
                               intermediate=a.intermediate)
    out = pretrain(PretrainConfig(data_root=a.data_root, out=f"checkpoints/pilot/{a.name}", steps=a.steps,
                                  spec=spec, lm_prompt=a.lm_prompt, share_text_towers=a.share),
                   progress=False)
    card = json.loads((out / "card.json").read_text())
    print(json.dumps({k: card[k] for k in ("steps", "wall_s", "params", "final_losses", "zero_shot")}))
elif a.cmd == "run":
    from vlpeft import train
    from vlpeft.methods import MethodConfig, lora
    from vlpeft.train import run
    if a.towers:  # diagnostics only, never the study's method: the method in one tower
        train.MethodConfig = lambda *args, **kw: MethodConfig(*args, **kw, towers=(a.towers,))
    if a.lora_targets != "query|key":
        base_regex = lora.target_regex
        lora.target_regex = lambda paths: base_regex(paths).replace("(query|key)", f"({a.lora_targets})")
    cfg = RunConfig(task=a.task, method=a.method, size=0 if a.method == "full" else a.size, tune_classifier=a.cls,
                    data_ratio=a.ratio, seed=a.seed, lr=a.lr, batch_size=32, epochs=a.epochs,
                    warmup_per_ratio=round(0.1 * a.epochs * 275), steps=a.steps_caption,
                    warmup_steps=a.steps_caption // 10, eval_every=a.eval_every, eval_size=300, test_size=0,
                    model_path=f"checkpoints/pilot/{a.name}/{{task}}", data_root=a.data_root,
                    out_dir=f"runs/pilot/{a.name}/{a.task}/{a.method}{'+cls' if a.cls else ''}_s{a.size}_lr{a.lr:g}"
                            f"_e{a.epochs}_r{a.ratio:g}{a.tag}"
                            + (f"_{a.towers}" if a.towers else "")
                            + (f"_{a.lora_targets.replace('|', '')}" if a.lora_targets != "query|key" else ""),
                    threads=a.threads, checkpoint_every=0,
                    feature_cache="cache/features")
    m = run(cfg, progress=False)
    curve = json.loads((Path(cfg.out_dir) / "curve.json").read_text())
    print(a.name, cfg.out_dir, f"best {m['best_val']:.3f} test {m['test']:.3f} wall {m['wall_s']:.0f}s",
          "curve", " ".join(f"{c['val']:.2f}" for c in curve))
else:
    import pandas as pd
    rows = []
    for f in sorted(Path("runs/pilot").rglob("metrics.json")):
        m = json.loads(f.read_text())
        curve = json.loads((f.parent / "curve.json").read_text())
        rows.append({"run": str(f.parent.relative_to("runs/pilot")), "best": round(m["best_val"], 3),
                     "test": round(m["test"], 3), "steps": m["steps"], "wall_s": round(m["wall_s"]),
                     "curve": " ".join(f"{c['val']:.2f}" for c in curve)})
    pd.set_option("display.width", 250, "display.max_colwidth", 120)
    print(pd.DataFrame(rows).to_string(index=False))
