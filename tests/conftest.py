"""Shared fixtures: a tiny random BLIP of the embedded shape (seconds to build) and a tiny shapes world (what they
are built from, and every other shared helper, is in helpers.py)."""
from __future__ import annotations

import os

import pytest
import torch

import vlpeft  # noqa: F401, E402 - the pinned numeric path's caps, set before torch computes (vlpeft/numerics.py)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tests run in parallel workers; one thread each avoids oversubscription

from helpers import SPEC, TINY_WORLD  # noqa: E402
from vlpeft.blip.models import build_processor, build_tokenizer, random_blip  # noqa: E402
from vlpeft.worlds import shapes as world  # noqa: E402


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
