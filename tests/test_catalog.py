"""The catalogue is the one list of methods: every layer reads it, and a new method is one entry plus one file."""
from __future__ import annotations

import importlib
import json
import textwrap

import pytest

from helpers import smoke_config
from vlpeft import catalog
from vlpeft.catalog import METHODS, Method
from vlpeft.methods import MethodConfig, apply_method, count_parameters, remove_method
from vlpeft.study import claims, presets, results
from vlpeft.train import run

TOY = '''
"""A toy method (not the paper's): one learned vector added to every text tower's output."""
import torch
from torch import nn


class ToyShift(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.toy_shift = nn.Parameter(torch.zeros(d))

    def hook(self, tower, args, kwargs, output):
        output.last_hidden_state = output.last_hidden_state + self.toy_shift          # h + b
        return output


def apply(model, towers, cfg):
    undo = []
    for tower in towers.values():
        tower.toy = ToyShift(tower.config.hidden_size)
        undo += [tower.register_forward_hook(tower.toy.hook, with_kwargs=True), lambda t=tower: delattr(t, "toy")]
    return undo
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_shift.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(METHODS, "toy", Method("toy", "layer", "toy shift", "unused", 1, "04_lora", "#999999",
                                               "toy_shift:apply"))
    return "toy"


def test_a_toy_method_runs_end_to_end_from_one_entry_and_one_file(toy, models, tiny_world, tmp_path):
    m = run(smoke_config(models, tiny_world, tmp_path / "run", task="vqa", method="toy", size=1), progress=False)
    d = 32  # the smoke BLIP's width: one vector per text tower (question encoder and answer decoder)
    assert m["status"] == "complete" and m["family"] == "layer" and m["trainable_params"] == 2 * d
    table = results.load_runs(tmp_path)
    assert table.loc[0, "family"] == "layer" and table.loc[0, "variant"] == "toy"


def test_the_toy_method_applies_and_removes_like_the_others(toy, make_model):
    model = make_model("caption")
    before = count_parameters(model)[1]
    apply_method(model, MethodConfig("toy", 1))
    assert count_parameters(model) == (32, before + 32)
    remove_method(model)
    assert count_parameters(model) == (before, before)


def test_every_layer_reads_the_catalogue():
    for m in METHODS.values():
        assert (presets.NOTEBOOK_DIR / f"{m.notebook}.ipynb").exists()
        if m.impl:
            module, _, fn = m.impl.partition(":")
            assert callable(getattr(importlib.import_module(module), fn))
    assert claims.PEFT == catalog.peft_methods() == presets.PEFT
    assert set(claims.EMBEDDING) | set(claims.LAYER) == set(catalog.peft_methods())
    cells = presets.grid("tiny")
    assert {c.config.method for c in cells} == set(METHODS)
    nb = json.loads((presets.NOTEBOOK_DIR / "04_lora.ipynb").read_text())
    assert "config" in "".join(nb["cells"][1]["source"])  # the notebook takes the whole RunConfig
