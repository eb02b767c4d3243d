"""Benchmark: training samples/s and peak memory of each method next to full fine-tuning.

    python benchmarks/throughput.py [--steps 5]

Two model shapes: the embedded tiny BLIP (batch 32, 48 px) and the BLIP-base shape (`BlipConfig()` defaults,
random weights; batch 2 at 224 px to fit a CPU). Each (shape, method) is measured in its own subprocess so
that its peak RSS (CPU) or peak CUDA memory is its own. Prints a table with ratios to full fine-tuning."""
import argparse
import json
import resource
import subprocess
import sys
import time

import torch

METHODS = [("full", 0), ("prompt", 8), ("prefix", 8), ("lora", 8), ("serial_adapter", 16), ("parallel_adapter", 16)]


def measure(shape: str, task: str, method: str, size: int, steps: int) -> dict:
    from transformers import BlipConfig, BlipForQuestionAnswering
    from vlpeft import world
    from vlpeft.methods import MethodConfig, apply_method, count_parameters
    from vlpeft.models import TinySpec, build_tokenizer, random_blip
    from vlpeft.train import task_loss
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if shape == "embedded":
        tok = build_tokenizer(world.vocabulary())
        model, B, px, vocab = random_blip(task, tok, TinySpec()), 32, 48, len(tok)
    else:
        cfg = BlipConfig(vision_config={"image_size": 224})
        model, B, px, vocab = BlipForQuestionAnswering(cfg), 2, 224, cfg.text_config.vocab_size
    apply_method(model, MethodConfig(method, size))
    model.to(device).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (B, 20), generator=g)
    batch = {"pixel_values": torch.randn(B, 3, px, px, generator=g), "input_ids": ids,
             "attention_mask": torch.ones_like(ids), "decoder_input_ids": ids[:, :6],
             "decoder_attention_mask": torch.ones_like(ids[:, :6]), "labels": ids[:, :6]}
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for i in range(steps + 1):  # the first step warms up (allocations, kernels)
        if i == 1:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
        opt.zero_grad()
        task_loss(model, "vqa", batch).backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.time() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"shape": shape, "method": method, "size": size, "trainable": count_parameters(model)[0],
            "samples_per_s": B * steps / dt, "peak_mb": peak, "device": device}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # shape method size: the child process
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], "vqa", args.one[1], int(args.one[2]), args.steps)))
        sys.exit()
    rows = []
    for shape in ("embedded", "blip-base"):
        for method, size in METHODS:
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", shape, method,
                                  str(size)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'shape':<10} {'method':<17} {'size':>4} {'trainable':>12} {'samples/s':>10} {'×full':>6} "
          f"{'peak MB':>9} {'×full':>6}  (VQA, {rows[0]['device']})")
    for r in rows:
        full = next(f for f in rows if f["shape"] == r["shape"] and f["method"] == "full")
        print(f"{r['shape']:<10} {r['method']:<17} {r['size']:>4} {r['trainable']:>12,d} {r['samples_per_s']:>10.1f} "
              f"{r['samples_per_s'] / full['samples_per_s']:>6.2f} {r['peak_mb']:>9.0f} "
              f"{r['peak_mb'] / full['peak_mb']:>6.2f}")
