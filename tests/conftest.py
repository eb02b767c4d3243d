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
