"""Benchmark: wall time of the embedded pre-training on this machine.

    python benchmarks/pretrain_time.py [--steps N]

Writes a fresh world and pre-trains into a temporary directory (the cached checkpoint is not touched), then
prints steps/s, wall time, the zero-shot numbers and the loss of the prompt/prefix shift."""
import argparse
import json
import tempfile
import time
from pathlib import Path

from vlpeft.config import PretrainConfig
from vlpeft.worlds.pretrain import pretrain
from vlpeft.worlds.shapes import WorldConfig, ensure_world

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--steps", type=int, default=PretrainConfig.steps)
args = p.parse_args()
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.time()
    ensure_world(Path(tmp) / "world", WorldConfig(), progress=False)
    t_world = time.time() - t0
    out = pretrain(PretrainConfig(data_root=str(Path(tmp) / "world"), out=str(Path(tmp) / "model"),
                                  steps=args.steps), progress=False)
    card = json.loads((out / "card.json").read_text())
print(f"world: {t_world:.1f} s")
print(f"pre-training: {card['steps']} steps in {card['wall_s']:.1f} s = {card['steps'] / card['wall_s']:.2f} steps/s "
      f"({card['params']:,d} parameters, corpus {card['corpus_pairs']:,d} pairs + {card['text_sentences']:,d} "
      f"sentences)")
print(f"zero-shot: caption CIDEr {card['zero_shot']['cider']:.3f}, VQA accuracy {card['zero_shot']['vqa_acc']:.3f}")
print(f"captioning loss with the text shifted by p positions: {card['shift_loss']}")
