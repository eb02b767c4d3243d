"""What the tests share, in one module (test files import from here, never from each other or from conftest):

1. a tiny world and model, a seconds-long run config, and a file snapshot (most tests);
2. a perturbed random BLIP whose predictions depend on context (the decoding tests);
3. BLIP's original checkpoint layout written out by hand (the converter's and the fault tests);
4. synthetic studies whose answer is known (the claims, results, figures and report tests), and the committed
   one-draw studies as they were before the draws became the unit (real tables of an older design);
5. the (method, size) cases of the shared method checks, from the catalogue, and the worked example of
   docs/adding_a_method.md (IA³) registered as a method.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vlpeft.blip.models import random_blip
from vlpeft.catalog import METHODS, PAPER_METHODS, PAPER_PEFT, Method, family_of, variant
from vlpeft.config import TinySpec
from vlpeft.methods import MethodConfig, apply_method
from vlpeft.worlds import shapes as world
from vlpeft.worlds.assets import SMOKE_SPEC

# ---------------------------------------------------------------------------------------------------------
# 1. A tiny world and model, a seconds-long run, a snapshot of files
SPEC = SMOKE_SPEC  # the smoke world's tiny BLIP
TINY_WORLD = world.WorldConfig(seed=3, image_size=16, n_train=24, n_restval=4, n_val=8, n_test=8,
                               n_pretrain_extra=16, questions_per_image=3, n_text=64)


def smoke_config(models, world, out, **kw):
    """A seconds-long run on the tiny world."""
    from vlpeft.config import RunConfig
    base = dict(steps=4, warmup_steps=1, epochs=1, warmup_per_ratio=1, batch_size=8, eval_every=2, eval_size=6,
                compile="off",  # eager unless a test is about compiling
                test_size=6, checkpoint_every=2, lr=1e-3, model_path=str(models / "{task}"), data_root=str(world),
                out_dir=str(out), threads=1)
    return RunConfig(**(base | kw))


def snapshot(root) -> dict:
    """Every file under root with its bytes' hash: what "nothing changed on disk" compares."""
    import hashlib
    from pathlib import Path
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def write_real_layout(root, counts=None, questions_per_image=2, image_size=20):
    """A miniature of the real MSCOCO/VQAv2 layout written by hand (not by `vlpeft.worlds.shapes`): JPEG files named as
    COCO names them, a Karpathy `dataset_coco.json` (train images in train2014; restval, val and test images
    in val2014, as in COCO), and both VQAv2 question/annotation files with ten answers per question. Returns the
    counts it wrote, per Karpathy split."""
    import json
    from pathlib import Path

    from PIL import Image
    root = Path(root)
    counts = counts or {"train": 5, "restval": 2, "val": 2, "test": 3}
    (root / "annotations").mkdir(parents=True)
    images, questions, annotations = [], {"train2014": [], "val2014": []}, {"train2014": [], "val2014": []}
    image_id, qid = 1000, 5000
    for split, n in counts.items():
        folder = "train2014" if split == "train" else "val2014"
        for _ in range(n):
            image_id += 1
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (image_size + image_id % 7, image_size), (image_id % 255, 60, 90)).save(
                root / "images" / folder / name, quality=90)
            images.append({"filepath": folder, "filename": name, "cocoid": image_id, "imgid": len(images),
                           "split": split, "sentids": [], "sentences": [
                               {"raw": f"a photo number {k} of a red thing.", "tokens": [], "imgid": 0,
                                "sentid": image_id * 10 + k}
                               for k in range(5)]})
            for k in range(questions_per_image):
                qid += 1
                answer = ["red", "2", "yes"][k % 3]
                questions[folder].append({"image_id": image_id, "question": f"What is it {k}?", "question_id": qid})
                annotations[folder].append({"image_id": image_id, "question_id": qid, "question_type": "what",
                                            "answer_type": "other", "multiple_choice_answer": answer,
                                            "answers": [{"answer": answer, "answer_confidence": "yes",
                                                         "answer_id": i + 1}
                                                        for i in range(10)]})
    (root / "annotations" / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    for folder in ("train2014", "val2014"):
        (root / "annotations" / f"v2_OpenEnded_mscoco_{folder}_questions.json").write_text(json.dumps(
            {"info": {}, "license": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": folder,
             "questions": questions[folder]}))
        (root / "annotations" / f"v2_mscoco_{folder}_annotations.json").write_text(json.dumps(
            {"info": {}, "license": {}, "data_type": "mscoco", "data_subtype": folder,
             "annotations": annotations[folder]}))
    return counts


# ---------------------------------------------------------------------------------------------------------
# 2. A random BLIP whose predictions depend on context
CONTEXT_SPEC = TinySpec(image_size=16, patch_size=8, hidden=128, layers=3, heads=4, intermediate=256,
                        max_positions=160)  # the embedded width: the smoke width's random nets just repeat a token


def contextual_model(tokenizer, task, method, size, route="blip"):
    """A perturbed random BLIP with `method` moved off its init; VQA models answer on `route` (tasks.VQA_ROUTES)."""
    model = random_blip(task, tokenizer, CONTEXT_SPEC, seed=1)
    model.config.vqa_route = route
    g = torch.Generator().manual_seed(13)  # a draw whose models vary their tokens (the guard below checks it)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "word_embeddings" not in name:  # position rows apart and an LM head that is not
                big = "position_embeddings" in name or "transform.dense" in name   # the identity: no copying
                p.add_(torch.randn(p.shape, generator=g) * (0.5 if "position" in name else 1.0 if big else 0.05))
    apply_method(model, MethodConfig(method, size))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and method != "full":
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        model.text_decoder.cls.predictions.bias[tokenizer.sep_token_id] = -1e4
    return model.eval()


# ---------------------------------------------------------------------------------------------------------
# 3. BLIP's original checkpoint layout (models/vit.py, models/med.py, models/blip_pretrain.py of
#    github.com/salesforce/BLIP), written out by hand
D, LAYERS, HEADS, PATCH, IMAGE, INTER = 32, 2, 2, 8, 16, 64      # vision
H, TLAYERS, TINTER, MAXPOS, EMBED = 32, 2, 48, 40, 16            # text; ITC embedding width
HEAD_OPTS = dict(vision_heads=HEADS, text_heads=2)
WORDS = "a picture of question what color is the circle square red blue ? answer :".split()


def blip_layout(words, order=("[DEC]", "[ENC]")):
    from transformers import BertTokenizer
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])},
                        do_lower_case=True)
    for token in order:
        tok.add_special_tokens({"bos_token": token} if token == "[DEC]" else {"additional_special_tokens": [token]})
    return tok


def original_state_dict(vocab: int, image: int = IMAGE, seed: int = 0, momentum: bool = True) -> dict:
    """A BLIP_Pretrain-shaped state dict, written out by hand from BLIP's module definitions."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    def linear(sd, name, out_f, in_f):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = r(out_f, in_f), r(out_f, scale=0.1)

    def norm(sd, name, width):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + r(width, scale=0.1), r(width, scale=0.1)

    def vit(prefix):  # models/vit.py VisionTransformer
        sd = {f"{prefix}cls_token": r(1, 1, D), f"{prefix}pos_embed": r(1, (image // PATCH) ** 2 + 1, D),
              f"{prefix}patch_embed.proj.weight": r(D, 3, PATCH, PATCH, scale=0.1),
              f"{prefix}patch_embed.proj.bias": r(D, scale=0.1)}
        for i in range(LAYERS):
            b = f"{prefix}blocks.{i}."
            norm(sd, b + "norm1", D)
            linear(sd, b + "attn.qkv", 3 * D, D)
            linear(sd, b + "attn.proj", D, D)
            norm(sd, b + "norm2", D)
            linear(sd, b + "mlp.fc1", INTER, D)
            linear(sd, b + "mlp.fc2", D, INTER)
        norm(sd, prefix + "norm", D)
        return sd

    def bert(prefix):  # models/med.py BertModel(add_pooling_layer=False), add_cross_attention=True
        sd = {f"{prefix}embeddings.word_embeddings.weight": r(vocab, H),
              f"{prefix}embeddings.position_embeddings.weight": r(MAXPOS, H),
              f"{prefix}embeddings.position_ids": torch.arange(MAXPOS).expand(1, -1).clone()}
        norm(sd, prefix + "embeddings.LayerNorm", H)
        for i in range(TLAYERS):
            b = f"{prefix}encoder.layer.{i}."
            for att, kv_width in (("attention", H), ("crossattention", D)):
                linear(sd, f"{b}{att}.self.query", H, H)
                linear(sd, f"{b}{att}.self.key", H, kv_width)
                linear(sd, f"{b}{att}.self.value", H, kv_width)
                linear(sd, f"{b}{att}.output.dense", H, H)
                norm(sd, f"{b}{att}.output.LayerNorm", H)
            linear(sd, b + "intermediate.dense", TINTER, H)
            linear(sd, b + "output.dense", H, TINTER)
            norm(sd, b + "output.LayerNorm", H)
        return sd

    sd = {**vit("visual_encoder."), **bert("text_encoder."), **bert("text_decoder.bert.")}
    cls = "text_decoder.cls.predictions."
    linear(sd, cls + "transform.dense", H, H)
    norm(sd, cls + "transform.LayerNorm", H)
    sd[cls + "bias"] = r(vocab, scale=0.1)
    sd[cls + "decoder.weight"] = sd["text_decoder.bert.embeddings.word_embeddings.weight"].clone()  # tied
    sd[cls + "decoder.bias"] = sd[cls + "bias"].clone()                                              # tied
    if momentum:  # what only pre-training needs (blip_pretrain.py)
        sd |= {k.replace("visual_encoder.", "visual_encoder_m.", 1): v.clone()
               for k, v in sd.items() if k.startswith("visual_encoder.")}
        sd |= {k.replace("text_encoder.", "text_encoder_m.", 1): v.clone()
               for k, v in sd.items() if k.startswith("text_encoder.")}
        for name, width in (("vision_proj", D), ("text_proj", H), ("vision_proj_m", D), ("text_proj_m", H)):
            linear(sd, name, EMBED, width)
        linear(sd, "itm_head", 2, H)
        sd |= {"temp": torch.tensor(0.07), "image_queue": r(EMBED, 8), "text_queue": r(EMBED, 8),
               "queue_ptr": torch.zeros(1, dtype=torch.long)}
    return sd


def save_pth(path, sd):
    torch.save({"model": sd, "epoch": 19, "config": {"image_size": 224, "vit": "base"}}, path)
    return path


# ---------------------------------------------------------------------------------------------------------
# 4. Synthetic studies whose answer is known
#Synthetic studies whose answer is known, shared by the claims, results, figures and report tests.
#
# A scenario is a score function per task, `score(method, size_index, classifier, data_ratio)` (metric units:
# CIDEr ~1, accuracy ~0.5), laid out on the tiny preset's design (3 data ratios at the middle size with and without
# "+ classifier", 3 sizes at the full data, full fine-tuning at every ratio) over several seeds, with seed-level
# random effects (an offset per seed and one per (seed, data ratio), shared by every run of that seed / subset) and
# run noise. `paper_*` behave as the paper says, so every claim must come out supported.
FAMILY = {m: family_of(m) for m in PAPER_METHODS}                  # the paper's methods, by name (the claims' own)
SIZES = {m: list(METHODS[m].tiny_sizes) for m in PAPER_PEFT}        # the tiny grid's sizes, the middle one at index 1
PARAMS_PER_SIZE = {"prompt": 50, "prefix": 1000, "lora": 3000, "serial_adapter": 2000, "parallel_adapter": 2000}
CLS_PARAMS, FULL_PARAMS, ALL_PARAMS, N_FULL_DATA = 50_000, 2_000_000, 2_000_000, 1000
RATIOS, SEEDS = (0.1, 0.3, 1.0), (0, 1, 2, 3)
METRIC = {"caption": "cider", "vqa": "vqa_acc"}
SHAPE = [-0.1, 0.0, -0.1]  # caption: an interior optimum in size


# ---------------------------------------------------------------------------------------------------------
# Scenarios: score(method, i, cls, ratio), i = the size's index in the grid (full fine-tuning: i = 1)
def paper_caption(m, i, cls, r):
    """Flat in data, an interior optimum in size, + classifier helps prompt and hurts layer methods; layer
    slightly above embedding; prefix and layer at least as good as full, prompt (the exception) below it."""
    base = {"prompt": 0.975, "prefix": 1.015, "full": 1.0}.get(m, 1.01) + SHAPE[i]
    return base + (0.06 if m == "prompt" else -0.06 if FAMILY[m] == "layer" else 0.0) * cls


def paper_vqa(m, i, cls, r):
    """Rises with data and size, + classifier raises every method to full on average, layer ≈ full ≫ embedding."""
    base = {"embedding": 0.34, "layer": 0.50, "full": 0.50}[FAMILY[m]]
    return base + 0.04 * i + 0.06 * math.log10(r) + 0.08 * cls


def frame(caption=paper_caption, vqa=paper_vqa, ratios=RATIOS, seeds=SEEDS, noise=0.002, seed_sd=0.002,
          every_size=False, tasks=("caption", "vqa"), pretrain_seeds=None, rng=7, pct=True) -> pd.DataFrame:
    """The tidy table `load_runs` would give for a scenario (every run complete). `seed_sd`: sd of the per-seed
    offset and of the per-(seed, data ratio) offset; `pretrain_seeds`: adds a pretrain_seed column (units =
    pretrain seed × seed); `pct=False` leaves out trainable_pct and all_params."""
    rng = np.random.default_rng(rng)
    units = [(p, s) for p in (pretrain_seeds or (0,)) for s in seeds]
    offset = {u: rng.normal(0, seed_sd) for u in units}
    subset = {(u, r): rng.normal(0, seed_sd) for u in units for r in ratios}
    rows = []
    for task in tasks:
        score = {"caption": caption, "vqa": vqa}[task]
        cells = [("full", 0, 1, False, r) for r in ratios]
        for m, sizes in SIZES.items():
            grid = [(i, c, r) for i in range(3) for r in ratios for c in (False, True)] if every_size else (
                [(1, c, r) for r in ratios for c in (False, True)] + [(i, False, ratios[-1]) for i in (0, 2)])
            cells += [(m, sizes[i], i, c, r) for i, c, r in grid]
        for m, size, i, cls, r in cells:
            params = FULL_PARAMS if m == "full" else PARAMS_PER_SIZE[m] * size + CLS_PARAMS * cls
            for u in units:
                rows.append({"task": task, "method": m, "size": size, "tune_classifier": cls, "data_ratio": r,
                             "pretrain_seed": u[0], "seed": u[1], "metric": METRIC[task], "status": "complete",
                             "best_val": score(m, i, cls, r) + offset[u] + subset[u, r] + rng.normal(0, noise),
                             "trainable_params": params, "all_params": ALL_PARAMS,
                             "trainable_pct": 100 * params / ALL_PARAMS, "n_train": round(N_FULL_DATA * r)})
    df = pd.DataFrame(rows)
    if pretrain_seeds is None:
        df = df.drop(columns="pretrain_seed")
    if not pct:
        df = df.drop(columns=["trainable_pct", "all_params"])
    df["variant"] = [variant(m, c) for m, c in zip(df.method, df.tune_classifier)]
    df["family"] = df.method.map(FAMILY)
    df["cost"] = df.n_train * df.trainable_params
    return df


def dial_frame(levels=(0.0, 0.5, 1.0), rise=3.0, pretrain_seeds=(0, 1), seeds=(0, 1, 2), noise=0.3, rng=11):
    """Caption runs (points / 100) at each consistency level: the data-ratio slope is `rise` · (1 − level)
    points per doubling; the size effect is monotone at level 0 and has an interior optimum at level 1."""
    rng = np.random.default_rng(rng)
    rows = []
    for c in levels:
        for p in pretrain_seeds:
            for s in seeds:
                off = rng.normal(0, 2)
                for m in ("prompt", "lora", "serial_adapter"):
                    for i, size in enumerate(SIZES[m]):
                        for r in RATIOS:
                            shape = (1 - c) * 3 * i + c * [-5, 0, -5][i]
                            pts = 100 + rise * (1 - c) * math.log2(r) + shape + off + rng.normal(0, noise)
                            rows.append({"task": "caption", "method": m, "size": size, "tune_classifier": False,
                                         "data_ratio": r, "seed": s, "pretrain_seed": p, "consistency": c,
                                         "status": "complete", "best_val": pts / 100})
    return pd.DataFrame(rows)


# The embedded studies as committed before #39's re-run (reports/tiny and reports/tiny-blip at 79daf28): one 1000-step
# pre-training, three seeds on it, on the native path; tiny-blip's from before recipes, routes and today's run ids.
# Real tables of an older design, kept for the checks that read such tables (compare's premise, verify's refusals).
ONE_DRAW_STUDIES = Path(__file__).resolve().parent / "fixtures" / "one_draw"


# ---------------------------------------------------------------------------------------------------------
# 5. The shared method checks' cases, from the catalogue: a new entry is in every table without editing one
def method_cases(where=lambda entry: True, sizes: int = 1, paper: bool = False) -> list[tuple[str, int]]:
    """(method, size) cases of a shared check: every catalogue method `where(entry)` accepts, in catalogue order,
    at its `sizes` smallest sizes of the embedded grid (`paper`: the smallest and the largest of Table II, over
    both tasks; a method without Table II sizes: of its embedded grid); a method without a size once, at 0."""
    cases = []
    for m in METHODS.values():
        if not where(m):
            continue
        if not m.sized:
            cases.append((m.name, 0))
            continue
        grid = sorted({s for sizes_ in m.paper_sizes.values() for s in sizes_}) if paper else []
        grid = grid or sorted(m.tiny_sizes) or [m.default_size]
        cases += [(m.name, s) for s in ([grid[0], grid[-1]] if paper else grid[:sizes])]
    return cases


def peft(entry) -> bool:
    """A method that injects something (everything but full fine-tuning): it has weights of its own to check."""
    return entry.impl is not None


WORKED_EXAMPLE = "docs/adding_a_method.md"   # its first Python block is the method file, its second the entry


def worked_example(folder) -> Method:
    """docs/adding_a_method.md's method (IA³) as a test registers it: its file written to `folder` as `ia3.py`
    (put `folder` on sys.path), its catalogue entry read from the page, with the pointers aimed at that module and
    an existing notebook (`tools/make_notebooks.py` writes its own; a test writes nothing under notebooks/)."""
    import dataclasses
    import re
    import textwrap
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / WORKED_EXAMPLE).read_text()
    code, entry = re.findall(r"```python\n(.*?)```", page, re.S)[:2]
    (Path(folder) / "ia3.py").write_text(code)
    entry = textwrap.dedent("".join(line for line in entry.splitlines(True) if not line.startswith("#")))
    method = eval(entry.strip().rstrip(","), {"Method": Method})  # noqa: S307 - our own page
    return dataclasses.replace(method, impl=method.impl.replace("vlpeft.methods.ia3", "ia3"),
                               count=method.count.replace("vlpeft.methods.ia3", "ia3"), notebook="04_lora")


def cli_call(args, capture) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr). `capture`: pytest's capsys, or capfd to include what sweep
    workers print."""
    from vlpeft import cli
    capture.readouterr()
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capture.readouterr()
    return code, out, err
