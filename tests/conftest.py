"""Shared fixtures: a tiny random BLIP of the embedded shape (seconds to build) and a tiny shapes world."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tests run in parallel workers; one thread each avoids oversubscription

from vlpeft import world  # noqa: E402
from vlpeft.assets import SMOKE_SPEC  # noqa: E402
from vlpeft.models import build_processor, build_tokenizer, random_blip  # noqa: E402

SPEC = SMOKE_SPEC  # the smoke world's tiny BLIP
TINY_WORLD = world.WorldConfig(seed=3, image_size=16, n_train=24, n_restval=4, n_val=8, n_test=8,
                               n_pretrain_extra=16, questions_per_image=3)


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
    from vlpeft.models import save_model
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
