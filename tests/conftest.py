"""Shared fixtures: a tiny random BLIP of the embedded shape (seconds to build) and a tiny shapes world."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tests run in parallel workers; one thread each avoids oversubscription

from vlpeft.worlds import shapes as world  # noqa: E402
from vlpeft.worlds.assets import SMOKE_SPEC  # noqa: E402
from vlpeft.blip.models import build_processor, build_tokenizer, random_blip  # noqa: E402

SPEC = SMOKE_SPEC  # the smoke world's tiny BLIP
TINY_WORLD = world.WorldConfig(seed=3, image_size=16, n_train=24, n_restval=4, n_val=8, n_test=8,
                               n_pretrain_extra=16, questions_per_image=3, n_text=64)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(world.vocabulary())


@pytest.fixture(scope="session")
def processor(tokenizer):
    return build_processor(tokenizer, SPEC.image_size)


@pytest.fixture
def make_model(tokenizer):
    def make(task: str, seed: int = 0):
        return random_blip(task, tokenizer, SPEC, seed)
    return make


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    return world.write_world(tmp_path_factory.mktemp("world"), TINY_WORLD, progress=False)


@pytest.fixture(scope="session")
def models(tmp_path_factory, tokenizer, processor):
    """A random tiny BLIP of each task saved in the real layout: `<root>/{task}`."""
    from vlpeft.blip.models import save_model
    root = tmp_path_factory.mktemp("models")
    for task in ("caption", "vqa"):
        save_model(random_blip(task, tokenizer, SPEC), processor, root / task)
    return root


def smoke_config(models, world, out, **kw):
    """A seconds-long run on the tiny world."""
    from vlpeft.config import RunConfig
    base = dict(steps=4, warmup_steps=1, epochs=1, warmup_per_ratio=1, batch_size=8, eval_every=2, eval_size=6,
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
                                            "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": i + 1}
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
