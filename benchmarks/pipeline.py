"""Benchmark: where a run's time goes, side by side (issue: GPU-ready throughput).

    python benchmarks/pipeline.py [--quick]

1. Loader: images/s of the training DataLoader on COCO-sized JPEGs (640×480, written here) with BLIP's
   preprocessing at 256 px, for 0, 1 and 2 workers.
2. Step time, cached vs uncached vision features: a PEFT training step (LoRA r8, caption) on the BLIP-base shape
   (random init, 256 px, batch 2 on a CPU) and on the embedded tiny BLIP (48 px, batch 32).
3. Samples/s of full fine-tuning vs each PEFT on the embedded model (VQA, batch 32), uncached and cached.
4. Papermill overhead per sweep cell: the same smoke cell by `run()` in this warm process, through a fresh
   kernel per notebook (papermill's default), and through the sweep's warm kernel.
5. GPU (BLIP-base, batch 256, bf16: samples/s, utilisation, MFU, projected paper runs): measured only when CUDA
   is present; otherwise the table says so.
Nothing is asserted: the figures are for the issue's closing note and the README."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlpeft.blip.models import honour_cross_attention_masks, vision_states
from vlpeft.catalog import METHODS as CATALOGUE
from vlpeft.data import Examples, Pixels, stack_images
from vlpeft.methods import MethodConfig, apply_method
from vlpeft.tasks import TASKS

METHODS = [(m.name, m.default_size) for m in CATALOGUE.values()]   # every catalogue method at its default size


def timed(fn, repeats: int) -> float:
    fn()                                                   # warm-up: allocations, kernels, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def loader_rate(folder: Path, processor, workers: int, n: int) -> float:
    paths = sorted(folder.glob("*.jpg"))[:n]
    ds = Examples([(p, {"id": i}) for i, p in enumerate(paths)], Pixels(processor.image_processor, keep=False))
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=workers, collate_fn=stack_images,
                                         persistent_workers=workers > 0)
    for _ in loader:                                       # warm-up epoch: worker start-up
        pass
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return len(paths) / (time.perf_counter() - t0)


def blip_base(task: str):
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering
    cls = BlipForConditionalGeneration if task == "caption" else BlipForQuestionAnswering
    return honour_cross_attention_masks(cls(BlipConfig()))   # ViT-B/16 (384 px table) + BERT-base, random


def embedded(task: str):
    from vlpeft.blip.models import build_tokenizer, random_blip
    from vlpeft.config import TinySpec
    from vlpeft.worlds import shapes as world
    return random_blip(task, build_tokenizer(world.vocabulary()), TinySpec())


def batch_for(task: str, B: int, px: int, vocab: int, cached_from=None) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(7, vocab, (B, 20), generator=g)
    b = {"pixel_values": torch.randn(B, 3, px, px, generator=g), "input_ids": ids,
         "attention_mask": torch.ones_like(ids), "labels": ids, "decoder_input_ids": ids[:, :6],
         "decoder_attention_mask": torch.ones_like(ids[:, :6])}
    if task == "vqa":
        b["labels"] = ids[:, :6]
    if cached_from is not None:
        with torch.no_grad():
            b["image_embeds"] = vision_states(cached_from, b.pop("pixel_values"))
    return b


def step_time(model, task: str, B: int, px: int, cached: bool, repeats: int) -> float:
    vocab = model.config.text_config.vocab_size
    batch = batch_for(task, B, px, vocab, cached_from=model if cached else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step():
        opt.zero_grad()
        TASKS[task].loss(model, batch).backward()
        opt.step()
    model.train()
    return timed(step, repeats)


def papermill_overhead(tmp: Path) -> dict:
    """Seconds per smoke cell: run() here, a fresh kernel per notebook, the sweep's warm kernel."""
    import subprocess
    os.chdir(tmp)
    from vlpeft.study import engine, presets
    from vlpeft.train import run
    from vlpeft.worlds.assets import prepare
    prepare("smoke", progress=False)
    cells = presets.grid("smoke", "bench", runs_root="runs", feature_cache="")
    c = cells[0]
    t0 = time.perf_counter()
    run(presets.make_cell("bench-direct", c.world, "runs", **vars(c.config)).config, progress=False)
    direct = time.perf_counter() - t0
    fresh = []
    for i in range(3):   # papermill's default engine: a new kernel for each notebook
        cell = presets.make_cell(f"bench-fresh{i}", c.world, "runs", **vars(c.config))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "papermill", str(cell.notebook), str(tmp / f"fresh{i}.ipynb"),
                        "-y", f"{{config: {engine.notebook_parameters(cell)['config']!r}, world: smoke, show: false, "
                              f"progress: false}}".replace("'", '"').replace("True", "true").replace("False", "false"),
                        "--no-progress-bar"], check=True, capture_output=True)
        fresh.append(time.perf_counter() - t0)
    warm = []
    for i in range(4):   # the sweep's engine: one kernel, reused (the first call starts it)
        cell = presets.make_cell(f"bench-warm{i}", c.world, "runs", **vars(c.config))
        t0 = time.perf_counter()
        assert engine.run_cell(cell)["status"] == "complete"
        warm.append(time.perf_counter() - t0)
    engine.WarmKernel.shutdown()
    return {"direct": direct, "fresh": statistics.median(fresh), "warm_first": warm[0],
            "warm": statistics.median(warm[1:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and images")
    args = p.parse_args()
    repeats, n_images = (2, 32) if args.quick else (5, 96)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. loader
        from types import SimpleNamespace

        from transformers import BlipImageProcessorPil
        folder = tmp / "jpeg"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=90)
        processor = SimpleNamespace(image_processor=BlipImageProcessorPil(size={"height": 256, "width": 256}))
        print("1. loader (640×480 JPEG → 256 px BLIP preprocessing)")
        for w in (0, 1, 2):
            print(f"   {w} workers: {loader_rate(folder, processor, w, n_images):7.1f} images/s")

        # 2. cached vs uncached step
        print("\n2. one training step, LoRA r8 captioning: vision tower run vs its cached states")
        for name, make, B, px in (("BLIP-base, 256 px, batch 2", blip_base, 2, 256),
                                  ("embedded, 48 px, batch 32", embedded, 32, 48)):
            model = apply_method(make("caption"), MethodConfig("lora", 8)).to(device)
            un = step_time(model, "caption", B, px, False, repeats)
            ca = step_time(model, "caption", B, px, True, repeats)
            print(f"   {name:<28} uncached {un:6.3f} s  cached {ca:6.3f} s  ×{un / ca:.1f}")

        # 3. samples/s per method
        print("\n3. samples/s on the embedded model (VQA, batch 32): uncached / cached (full FT never caches)")
        for method, size in METHODS:
            model = apply_method(embedded("vqa"), MethodConfig(method, size)).to(device)
            un = 32 / step_time(model, "vqa", 32, 48, False, repeats)
            cached = CATALOGUE[method].family != "full"   # full fine-tuning trains the vision tower: no cache
            ca = 32 / step_time(model, "vqa", 32, 48, True, repeats) if cached else float("nan")
            print(f"   {method:<17} {size:>3}  {un:8.1f} / {ca:8.1f}")

        # 4. papermill
        print("\n4. papermill overhead per sweep cell (smoke cell)")
        pm = papermill_overhead(tmp)
        print(f"   run() in a warm process {pm['direct']:.1f} s; a fresh kernel per notebook {pm['fresh']:.1f} s "
              f"(+{pm['fresh'] - pm['direct']:.1f} s); the sweep's warm kernel {pm['warm']:.1f} s "
              f"(+{pm['warm'] - pm['direct']:.1f} s; its first cell {pm['warm_first']:.1f} s)")

    # 5. GPU
    print("\n5. GPU, BLIP-base at batch 256, 256 px, bf16 autocast")
    if device != "cuda":
        print("   not measured — no CUDA device on this machine")
        return
    for method, cached in (("lora", False), ("lora", True), ("full", False)):
        model = apply_method(blip_base("caption"), MethodConfig(method, 8 if method == "lora" else 0)).cuda()
        batch = {k: v.cuda() for k, v in batch_for("caption", 256, 256, model.config.text_config.vocab_size,
                                                    ).items()}
        if cached:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                batch["image_embeds"] = vision_states(model, batch.pop("pixel_values"))
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)

        def step():
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = TASKS["caption"].loss(model, batch)
            loss.backward()
            opt.step()
        model.train()
        dt = timed(step, repeats)
        n_params = sum(q.numel() for q in model.parameters())
        tokens = 256 * (20 + 257)                                  # text + image tokens per step
        flops = 6 * n_params * tokens if method == "full" else 2 * n_params * tokens * (1 if cached else 2)
        peak = {"H100": 989e12, "H200": 989e12}.get(torch.cuda.get_device_name().split()[1], float("nan"))
        util = torch.cuda.utilization() if hasattr(torch.cuda, "utilization") else float("nan")
        print(f"   {method:<5} {'cached' if cached else 'uncached':<8} {256 / dt:8.0f} samples/s, GPU util {util}%, "
              f"MFU ≈ {flops / dt / peak:.1%}; 4000 caption steps ≈ {4000 * dt / 60:.0f} min")


if __name__ == "__main__":
    main()
