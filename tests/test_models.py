"""One loading path for both worlds: a tiny random BLIP saved in the real layout loads back with
from_pretrained and generates; the embedded pre-training goes through the same functions and is cached."""
from __future__ import annotations

import json
import time

import pytest
import torch

from helpers import SPEC
from vlpeft.blip.models import load_model, load_processor, random_blip, save_model
from vlpeft.config import PretrainConfig
from vlpeft.errors import ModelError
from vlpeft.worlds.pretrain import pretrain


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_real_path_round_trip(tmp_path, tokenizer, processor, task):
    model = random_blip(task, tokenizer, SPEC, seed=1)
    save_model(model, processor, tmp_path / task)
    assert (tmp_path / task / "config.json").exists() and (tmp_path / task / "model.safetensors").exists()
    loaded, proc = load_model(task, tmp_path / task), load_processor(tmp_path / task)
    assert type(loaded) is type(model)
    for (n, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), n
    text = "a picture of" if task == "caption" else "question: what color is the circle ? answer:"
    enc = proc(images=torch.zeros(3, 16, 16).numpy().transpose(1, 2, 0).astype("uint8"), text=text,
               return_tensors="pt")
    out = loaded.generate(pixel_values=enc.pixel_values, input_ids=enc.input_ids,
                          attention_mask=enc.attention_mask, max_new_tokens=3)
    assert out.shape[0] == 1 and out.shape[1] >= 2


@pytest.mark.parametrize("path,match", [
    ("/no/such/checkpoint", "does not exist"),
    ("./relative/missing", "does not exist"),
])
def test_missing_model_path(path, match):
    with pytest.raises(ModelError, match=match):
        load_model("caption", path)


def test_unknown_task(tmp_path):
    with pytest.raises(ModelError, match="unknown task 'retrieval'"):
        load_model("retrieval", tmp_path)


@pytest.mark.parametrize("recipe,third", [("mplug", "prefix_lm"), ("blip", "elm")])
def test_embedded_pretraining_loads_through_the_same_path_and_is_cached(tiny_world, tmp_path, recipe, third):
    cfg = PretrainConfig(data_root=str(tiny_world), out=str(tmp_path / "emb"), recipe=recipe, steps=3, batch_size=8,
                         zero_shot_eval=4, spec=SPEC)
    out = pretrain(cfg, progress=False)
    card = json.loads((out / "card.json").read_text())
    assert card["steps"] == 3 and set(card["final_losses"]) == {"lm", "itm", third, "tlm", "mlm"}
    assert card["config"]["recipe"] == recipe
    for task in ("caption", "vqa"):  # the route travels with both checkpoints
        assert json.loads((out / task / "config.json").read_text())["vqa_route"] == recipe
    assert set(card["shift_loss"]) == {"0", "8", "32", "128"} and card["world"]["consistency"] == 1.0
    assert {"cider", "vqa_acc"} <= set(card["zero_shot"])
    # the card's shift-0 loss is the saved caption model's own captioning loss on the first test captions
    # (recomputed here from the saved files), and the other shifts really move the text
    from vlpeft.data import Paths, Pixels
    from vlpeft.tasks import TASKS
    task, processor = TASKS["caption"], load_processor(out / "caption")
    saved = load_model("caption", out / "caption").eval()
    data = task.train_examples(task.splits(Paths(tiny_world))[2][:4], Pixels(processor.image_processor))
    batches = torch.utils.data.DataLoader(data, batch_size=32,
                                          collate_fn=lambda b: task.collate(processor.tokenizer, b))
    with torch.no_grad():
        plain = [task.loss(saved, b).item() for b in batches]
    assert card["shift_loss"]["0"] == round(sum(plain) / len(plain), 4)
    assert any(card["shift_loss"][p] != card["shift_loss"]["0"] for p in ("8", "32", "128"))
    for task in ("caption", "vqa"):
        load_model(task, out / task)
        load_processor(out / task)
    mtime = (out / "card.json").stat().st_mtime_ns
    t0 = time.time()
    assert pretrain(cfg, progress=False) == out
    assert time.time() - t0 < 1.0 and (out / "card.json").stat().st_mtime_ns == mtime  # cached, not redone


def test_the_blip_call_signatures_the_hooks_rely_on():
    """The tower hooks (methods/tower_hook.py), the cross-attention mask shim (models.honour_cross_attention_masks)
    and vision_states rely on these BLIP names in transformers (pinned in pyproject.toml); fail loudly if they move."""
    import inspect

    from transformers.models.blip import modeling_blip as mb
    from transformers.models.blip import modeling_blip_text as mt
    assert {"input_ids", "attention_mask", "position_ids", "inputs_embeds", "encoder_hidden_states",
            "encoder_attention_mask", "cache"} <= set(inspect.signature(mt.BlipTextModel.forward).parameters)
    assert {"attention_mask", "encoder_hidden_states", "encoder_attention_mask", "cache"} <= set(
        inspect.signature(mt.BlipTextSelfAttention.forward).parameters)
    assert "encoder_attention_mask" not in inspect.signature(mt.BlipTextAttention.forward).parameters, (
        "transformers now passes BLIP's cross-attention mask itself: honour_cross_attention_masks may go")
    assert "interpolate_pos_encoding" in inspect.signature(mb.BlipVisionModel.forward).parameters
    assert "cache_length" in inspect.signature(mt.BlipTextEmbeddings.forward).parameters


@pytest.mark.parametrize("caption", ["red circle here", "objects : red circle , blue square", "two shapes", "circle"])
def test_prefix_lm_cuts_a_caption_at_a_word_with_a_word_on_each_side(tokenizer, caption):
    from vlpeft.worlds.pretrain import prefix_lm_batch
    words, seen = caption.split(), set()

    def text(ids):
        return " ".join(t for t in tokenizer.convert_ids_to_tokens(ids) if t not in tokenizer.all_special_tokens)
    for seed in range(40):
        b = prefix_lm_batch(tokenizer, [caption], torch.Generator().manual_seed(seed))
        prefix, rest = text(b["input_ids"][0]), text(b["decoder_input_ids"][0])
        assert b["input_ids"][0, 0] == tokenizer.convert_tokens_to_ids("[ENC]")
        assert b["decoder_input_ids"][0, 0] == tokenizer.bos_token_id and b["labels"][0, -1] == tokenizer.sep_token_id
        assert f"{prefix} {rest}".split() == words if len(words) > 1 else (prefix, rest) == ("", caption)
        if len(words) > 1:
            assert prefix and rest
        seen.add(prefix)
    assert len(seen) == max(1, len(words) - 1)  # every boundary is drawn
