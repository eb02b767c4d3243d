"""Converting BLIP's original checkpoint layout: a tiny random state dict with the ORIGINAL names (models/vit.py,
models/med.py, models/blip_pretrain.py of github.com/salesforce/BLIP) goes through `convert_blip`; the tests
check that every tensor lands where it belongs and that the converted towers compute what the original ones
compute by hand."""
from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as conftest does: nothing downloads
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from helpers import (  # noqa: E402
    EMBED,
    HEAD_OPTS,
    HEADS,
    IMAGE,
    INTER,
    LAYERS,
    MAXPOS,
    PATCH,
    TINTER,
    TLAYERS,
    WORDS,
    D,
    H,
    blip_layout,
    original_state_dict,
    save_pth,
)
from vlpeft.blip import target  # noqa: E402
from vlpeft.blip.checkpoints import RECORD, looks_vqa_finetuned  # noqa: E402
from vlpeft.blip.convert import convert_blip  # noqa: E402
from vlpeft.blip.keymap import rename_key, source_key  # noqa: E402
from vlpeft.blip.models import build_processor, load_model, load_processor  # noqa: E402
from vlpeft.blip.original import ConvertError, interpolate_pos_embed  # noqa: E402
from vlpeft.io import MARKER, own  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer laid out as BLIP's `init_tokenizer` lays bert-base-uncased out: [PAD]=0 …, then [DEC]
    (bos) and [ENC] appended as the last two rows; its size is the checkpoint's vocabulary."""
    return blip_layout(WORDS)


@pytest.fixture(scope="module")
def proc_dir(tmp_path_factory, tokenizer):
    d = tmp_path_factory.mktemp("processor")
    build_processor(tokenizer, 48).save_pretrained(d)  # another image size on purpose: the converter sets it
    return d


@pytest.fixture(scope="module")
def source(tmp_path_factory, tokenizer):
    sd = original_state_dict(len(tokenizer))
    return save_pth(tmp_path_factory.mktemp("src") / "model_base.pth", sd), sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory, source, proc_dir):
    out = tmp_path_factory.mktemp("conv") / "blip"
    return convert_blip(source[0], out, processor=str(proc_dir), **HEAD_OPTS)


def expected(name: str, sd: dict, tied: dict) -> torch.Tensor:
    origin = source_key(tied.get(name, name))
    assert origin is not None and origin in sd, name
    return sd[origin]


# ---------------------------------------------------------------------------------------------------------
# Every tensor lands where it belongs
@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_every_tensor_is_its_source(converted, source, task):
    sd = source[1]
    rec = json.loads((converted / RECORD).read_text())
    tied = rec["outputs"][task]["filled_via_tying"]
    model = load_model(task, converted / task)
    state = model.state_dict()
    for name, value in state.items():
        assert torch.equal(value, expected(name, sd, tied)), name
    # and every source tensor of the towers this task takes has a place in the model
    prefixes = {"caption": ("visual_encoder.", "text_decoder."),
                "vqa": ("visual_encoder.", "text_encoder.", "text_decoder.")}[task]
    for key in sd:
        if key.startswith(prefixes) and not key.endswith("position_ids"):
            assert rename_key(key) in state, key
    assert rec["outputs"][task]["unfilled_target"] == []


def test_vqa_takes_encoder_and_pretrained_decoder(converted, source):
    sd = source[1]
    vqa = load_model("vqa", converted / "vqa")
    key = "encoder.layer.1.crossattention.self.key.weight"
    assert torch.equal(vqa.text_encoder.state_dict()[key], sd["text_encoder." + key])
    assert torch.equal(vqa.text_decoder.bert.state_dict()[key], sd["text_decoder.bert." + key])
    assert not torch.equal(sd["text_encoder." + key], sd["text_decoder.bert." + key])  # two different sources


def test_rename_rules_round_trip():
    cases = {
        "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
        "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
        "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual_encoder.blocks.11.attn.qkv.bias": "vision_model.encoder.layers.11.self_attn.qkv.bias",
        "visual_encoder.blocks.3.attn.proj.weight": "vision_model.encoder.layers.3.self_attn.projection.weight",
        "visual_encoder.blocks.0.norm1.weight": "vision_model.encoder.layers.0.layer_norm1.weight",
        "visual_encoder.blocks.0.mlp.fc2.bias": "vision_model.encoder.layers.0.mlp.fc2.bias",
        "visual_encoder.norm.bias": "vision_model.post_layernorm.bias",
        "text_encoder.encoder.layer.0.crossattention.self.key.weight":
            "text_encoder.encoder.layer.0.crossattention.self.key.weight",
        "text_decoder.cls.predictions.bias": "text_decoder.cls.predictions.bias",
    }
    for src, tgt in cases.items():
        assert rename_key(src) == tgt and source_key(tgt) == src
    for src in ("visual_encoder_m.pos_embed", "itm_head.weight", "temp", "image_queue",
                "text_encoder.embeddings.position_ids", "visual_encoder.head.weight"):
        assert rename_key(src) is None, src


# ---------------------------------------------------------------------------------------------------------
# The converted towers compute what the original ones compute (by hand, from the original-layout tensors)
def vit_by_hand(px, sd, heads=HEADS, pre="visual_encoder."):
    """models/vit.py VisionTransformer.forward: patch conv, cls, pos_embed, pre-LN blocks with fused qkv, norm."""
    x = F.conv2d(px, sd[pre + "patch_embed.proj.weight"], sd[pre + "patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[pre + "cls_token"].expand(px.shape[0], -1, -1), x], dim=1)
    x = x + sd[pre + "pos_embed"][:, :x.shape[1]]
    embeddings, outs = x, []
    for i in range(LAYERS):
        b = f"{pre}blocks.{i}."
        B, N, C = x.shape
        y = F.layer_norm(x, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(dim=-1)
        x = x + F.linear((att @ v).transpose(1, 2).reshape(B, N, C), sd[b + "attn.proj.weight"],
                         sd[b + "attn.proj.bias"])
        y = F.layer_norm(x, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
        x = x + F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                         sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        outs.append(x)
    final = F.layer_norm(x, (x.shape[-1],), sd[pre + "norm.weight"], sd[pre + "norm.bias"], eps=1e-6)
    return embeddings, outs, final


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_vision_tower_matches_hand_computation(converted, source, task):
    sd = source[1]
    model = load_model(task, converted / task)
    px = torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    embeddings, blocks, final = vit_by_hand(px, sd)
    vm = model.vision_model
    with torch.no_grad():
        got_embeddings = vm.embeddings(px)
        torch.testing.assert_close(got_embeddings, embeddings, rtol=0, atol=1e-6)
        x = got_embeddings
        for layer, want in zip(vm.encoder.layers, blocks):  # each block, fed the hand computation's input
            x = layer(x)
            x = x[0] if isinstance(x, tuple) else x
            torch.testing.assert_close(x, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(vm(pixel_values=px).last_hidden_state, final, rtol=1e-5, atol=1e-5)


def test_text_decoder_same_in_both_and_lm_head_by_hand(converted, source, tokenizer):
    sd = source[1]
    cap, vqa = load_model("caption", converted / "caption"), load_model("vqa", converted / "vqa")
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.convert_tokens_to_ids(["a", "picture", "of"])])
    states = torch.randn(1, 5, D, generator=torch.Generator().manual_seed(2))
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=states)
    with torch.no_grad():
        a, b = cap.text_decoder(**kw).logits, vqa.text_decoder(**kw).logits
        hidden = cap.text_decoder.bert(**kw, is_decoder=True).last_hidden_state  # causal, as the LM head runs it
    assert torch.equal(a, b)
    c = "text_decoder.cls.predictions."
    h = F.layer_norm(F.gelu(F.linear(hidden, sd[c + "transform.dense.weight"], sd[c + "transform.dense.bias"])),
                     (H,), sd[c + "transform.LayerNorm.weight"], sd[c + "transform.LayerNorm.bias"], eps=1e-12)
    by_hand = h @ sd["text_decoder.bert.embeddings.word_embeddings.weight"].T + sd[c + "bias"]
    torch.testing.assert_close(a, by_hand, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The outputs load through the project's one loading path and generate
def test_load_model_and_generate(converted, tokenizer):
    import numpy as np
    image = (np.random.default_rng(0).random((20, 20, 3)) * 255).astype("uint8")
    for task, text in (("caption", "a picture of"), ("vqa", "question: what color is the circle ? answer:")):
        proc, model = load_processor(converted / task), load_model(task, converted / task)
        assert proc.image_processor.size == {"height": IMAGE, "width": IMAGE}
        assert len(proc.tokenizer) == len(tokenizer)
        enc = proc(images=image, text=text, return_tensors="pt")
        assert enc.pixel_values.shape[-1] == IMAGE
        out = model.generate(pixel_values=enc.pixel_values, input_ids=enc.input_ids,
                             attention_mask=enc.attention_mask, max_new_tokens=3)
        assert out.shape[0] == 1 and out.shape[1] >= 2
        tc = model.config.text_config
        assert (tc.bos_token_id, tc.pad_token_id, tc.sep_token_id, tc.eos_token_id) == (
            tokenizer.convert_tokens_to_ids("[DEC]"), 0, tokenizer.sep_token_id, tokenizer.sep_token_id)


# ---------------------------------------------------------------------------------------------------------
# The record: config inferred, unmapped keys reported
def test_record(converted, source, tokenizer):
    sd = source[1]
    rec = json.loads((converted / RECORD).read_text())
    v, t = rec["config"]["vision"], rec["config"]["text"]
    assert (v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"], v["patch_size"],
            v["image_size"], v["intermediate_size"]) == (D, LAYERS, HEADS, PATCH, IMAGE, INTER)
    assert (t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"], t["max_position_embeddings"],
            t["vocab_size"]) == (H, TLAYERS, TINTER, MAXPOS, len(tokenizer))
    assert rec["config"]["image_text_hidden_size"] == EMBED
    assert rec["tokens"]["bos_token_id"] == "[DEC]" and rec["tokens"]["pad_token_id"] == "[PAD]"
    import hashlib
    assert rec["source"]["sha256"] == hashlib.sha256(source[0].read_bytes()).hexdigest()
    assert rec["source"]["published_at"].endswith("/BLIP/models/model_base.pth")
    assert rec["source_kind"] == "pre-training" and rec["finetuned_on_vqa"] is False
    un = rec["unmapped_source"]
    n_vis = sum(k.startswith("visual_encoder.") for k in sd)
    assert un["visual_encoder_m.*"] == n_vis
    assert un["text_encoder_m.*"] == sum(k.startswith("text_encoder_m.") for k in sd)
    for group in ("itm_head.*", "vision_proj.*", "text_proj_m.*", "temp", "image_queue", "text_queue", "queue_ptr",
                  "text_encoder.embeddings.position_ids", "text_decoder.bert.embeddings.position_ids"):
        assert group in un, group
    assert sum(un.values()) == sum(1 for k in sd if rename_key(k) is None or
                                   k.split(".")[0] not in ("visual_encoder", "text_encoder", "text_decoder"))
    assert (converted / MARKER).exists() and (converted / RECORD).exists()  # io.own's "ours, complete"


# ---------------------------------------------------------------------------------------------------------
# Refusals
@pytest.mark.parametrize("key", ["visual_encoder.blocks.1.attn.qkv.weight",
                                 "text_encoder.encoder.layer.0.crossattention.self.key.weight",
                                 "text_decoder.cls.predictions.bias"])
def test_missing_required_key_named(tmp_path, tokenizer, proc_dir, key):
    sd = original_state_dict(len(tokenizer))
    del sd[key]
    with pytest.raises(ConvertError, match=key.replace(".", r"\.")):
        convert_blip(save_pth(tmp_path / "m.pth", sd), tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    assert not (tmp_path / "out" / RECORD).exists()


def test_tied_lm_head_weight_may_be_absent(tmp_path, tokenizer, proc_dir):
    sd = original_state_dict(len(tokenizer), momentum=False)
    del sd["text_decoder.cls.predictions.decoder.weight"], sd["text_decoder.cls.predictions.decoder.bias"]
    out = convert_blip(save_pth(tmp_path / "m.pth", sd), tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    model = load_model("caption", out / "caption")
    assert torch.equal(model.text_decoder.cls.predictions.decoder.weight,
                       sd["text_decoder.bert.embeddings.word_embeddings.weight"])


def test_untied_lm_head_refused(tmp_path, tokenizer, proc_dir):
    sd = original_state_dict(len(tokenizer), momentum=False)
    sd["text_decoder.cls.predictions.decoder.weight"] += 1
    with pytest.raises(ConvertError, match="ties"):
        convert_blip(save_pth(tmp_path / "m.pth", sd), tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)


def test_vocab_mismatch_refused(tmp_path, tokenizer, proc_dir):
    sd = original_state_dict(len(tokenizer) + 1)
    with pytest.raises(ConvertError, match=rf"{len(tokenizer)} tokens .* {len(tokenizer) + 1} rows"):
        convert_blip(save_pth(tmp_path / "m.pth", sd), tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)


def test_processor_missing_refused(tmp_path, source):
    with pytest.raises(ConvertError, match="--processor"):
        convert_blip(source[0], tmp_path / "out", processor=str(tmp_path / "no-processor"), **HEAD_OPTS)
    with pytest.raises(ConvertError, match="--processor"):  # the default hub name: not in this machine's cache
        convert_blip(source[0], tmp_path / "out2", **HEAD_OPTS)


def test_heads_not_inferable_refused(tmp_path, source, proc_dir):
    with pytest.raises(ConvertError, match="--vision-heads"):
        convert_blip(source[0], tmp_path / "out", processor=str(proc_dir))


def test_unequal_widths_refused(tmp_path, tokenizer, proc_dir, monkeypatch):
    import helpers
    monkeypatch.setattr(helpers, "H", 48)  # a ViT-L-like mismatch: text 48 wide, vision 32 (helpers draws the dict)
    sd = original_state_dict(len(tokenizer), momentum=False)
    with pytest.raises(ConvertError, match="text width 48 differs from vision width 32"):
        convert_blip(save_pth(tmp_path / "m.pth", sd), tmp_path / "out", processor=str(proc_dir),
                     vision_heads=2, text_heads=2)


def test_not_a_blip_checkpoint(tmp_path, proc_dir):
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(ConvertError, match="visual_encoder.pos_embed"):
        convert_blip(tmp_path / "x.pth", tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    torch.save({"state": {"w": torch.zeros(2)}}, tmp_path / "y.pth")
    with pytest.raises(ConvertError, match="not an original BLIP checkpoint"):
        convert_blip(tmp_path / "y.pth", tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    with pytest.raises(ConvertError, match="does not exist"):
        convert_blip(tmp_path / "nope.pth", tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)


# ---------------------------------------------------------------------------------------------------------
# The output folder: never someone else's, cached for the same source
def test_refuses_foreign_folder(tmp_path, source, proc_dir):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(ConvertError, match=str(out)):
            convert_blip(source[0], out, processor=str(proc_dir), force=force, **HEAD_OPTS)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_cached_rerun_other_source_and_force(tmp_path, tokenizer, source, proc_dir):
    out = convert_blip(source[0], tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    stamp = (out / RECORD).stat().st_mtime_ns
    assert convert_blip(source[0], out, processor=str(proc_dir), **HEAD_OPTS) == out  # cached
    assert (out / RECORD).stat().st_mtime_ns == stamp

    other = save_pth(tmp_path / "model_base_capfilt_large.pth", original_state_dict(len(tokenizer), seed=5))
    with pytest.raises(ConvertError, match="another source"):
        convert_blip(other, out, processor=str(proc_dir), **HEAD_OPTS)
    with pytest.raises(ConvertError, match="other options"):
        convert_blip(source[0], out, processor=str(proc_dir), image_size=24, **HEAD_OPTS)
    convert_blip(other, out, processor=str(proc_dir), force=True, **HEAD_OPTS)
    rec = json.loads((out / RECORD).read_text())
    assert rec["source"]["name"] == "model_base_capfilt_large.pth"
    assert torch.equal(load_model("caption", out / "caption").vision_model.embeddings.class_embedding,
                       torch.load(other)["model"]["visual_encoder.cls_token"])


def test_a_conversion_from_before_the_marker_is_adopted(tmp_path, source, proc_dir):
    """A folder converted before the converter went through io.own (its record, no .vlpeft.json) is the same
    conversion again: cached, not refused."""
    out = convert_blip(source[0], tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    stamp = (out / RECORD).stat().st_mtime_ns
    (out / ".vlpeft.json").unlink()
    assert convert_blip(source[0], out, processor=str(proc_dir), **HEAD_OPTS) == out
    assert (out / RECORD).stat().st_mtime_ns == stamp and (out / ".vlpeft.json").is_file()


def test_failed_force_keeps_the_previous_conversion(tmp_path, source, proc_dir):
    out = convert_blip(source[0], tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    before = (out / RECORD).read_bytes()
    with pytest.raises(ConvertError, match="--processor"):  # checked before the folder is taken
        convert_blip(source[0], out, processor=str(tmp_path / "no-processor"), force=True, **HEAD_OPTS)
    assert (out / RECORD).read_bytes() == before and load_model("vqa", out / "vqa") is not None


def test_refuses_another_kind_of_vlpeft_folder(tmp_path, source, proc_dir):
    world = tmp_path / "world"
    own(world, "world", {"seed": 1}, "world.json")
    for force in (False, True):
        with pytest.raises(ConvertError, match="is not a conversion made by `vlpeft convert-blip` .it holds a world"):
            convert_blip(source[0], world, processor=str(proc_dir), force=force, **HEAD_OPTS)
    assert [p.name for p in world.iterdir()] == [MARKER]


def killed_while_writing_vqa(monkeypatch, *args, **kwargs):
    """A conversion killed after caption/ was written, before vqa/ and the record."""
    write_task = target.write_task

    def write_or_die(task, *a, **k):
        if task == "vqa":
            raise KeyboardInterrupt
        return write_task(task, *a, **k)
    with monkeypatch.context() as m:
        m.setattr(target, "write_task", write_or_die)
        with pytest.raises(KeyboardInterrupt):
            convert_blip(*args, **kwargs)


def test_partial_conversion_is_redone(tmp_path, source, proc_dir, monkeypatch):
    out = tmp_path / "out"
    killed_while_writing_vqa(monkeypatch, source[0], out, processor=str(proc_dir), **HEAD_OPTS)
    assert (out / "caption").is_dir() and not (out / RECORD).exists()
    (out / "caption" / "junk").write_text("half written")
    convert_blip(source[0], out, processor=str(proc_dir), **HEAD_OPTS)
    assert (out / RECORD).exists() and not (out / "caption" / "junk").exists()


def test_partial_conversion_of_other_options_is_redone_without_force(tmp_path, source, proc_dir, monkeypatch):
    out = tmp_path / "out"
    killed_while_writing_vqa(monkeypatch, source[0], out, processor=str(proc_dir), image_size=24, **HEAD_OPTS)
    convert_blip(source[0], out, processor=str(proc_dir), **HEAD_OPTS)  # nothing complete is lost: no --force
    assert json.loads((out / RECORD).read_text())["options"]["image_size"] is None


# ---------------------------------------------------------------------------------------------------------
# Image size: from pos_embed, or resized as BLIP does
def test_image_size_inferred_from_pos_embed(tmp_path, tokenizer, proc_dir):
    sd = original_state_dict(len(tokenizer), image=24, momentum=False)  # 3×3 patches → pos_embed (1, 10, 32)
    assert sd["visual_encoder.pos_embed"].shape == (1, 10, D)
    out = convert_blip(save_pth(tmp_path / "m.pth", sd), tmp_path / "out", processor=str(proc_dir), **HEAD_OPTS)
    assert load_model("caption", out / "caption").config.vision_config.image_size == 24
    assert load_processor(out / "vqa").image_processor.size == {"height": 24, "width": 24}


def test_image_size_option_interpolates_like_blip(tmp_path, source, proc_dir):
    out = convert_blip(source[0], tmp_path / "out", processor=str(proc_dir), image_size=32, **HEAD_OPTS)
    pos = source[1]["visual_encoder.pos_embed"]  # 2×2 grid → 4×4 grid
    grid = pos[:, 1:].reshape(1, 2, 2, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 16, D)
    want = torch.cat([pos[:, :1], grid], dim=1)
    torch.testing.assert_close(interpolate_pos_embed(pos, 4), want)
    model = load_model("vqa", out / "vqa")
    assert model.config.vision_config.image_size == 32
    torch.testing.assert_close(model.vision_model.embeddings.position_embedding.data, want)
    assert load_processor(out / "caption").image_processor.size == {"height": 32, "width": 32}
    with torch.no_grad():
        assert model.vision_model(pixel_values=torch.zeros(1, 3, 32, 32)).last_hidden_state.shape == (1, 17, D)
    with pytest.raises(ConvertError, match="multiple of the patch size"):
        convert_blip(source[0], tmp_path / "out2", processor=str(proc_dir), image_size=30, **HEAD_OPTS)


# ---------------------------------------------------------------------------------------------------------
# Fine-tuned-on-VQA detection
@pytest.mark.parametrize("path,flagged", [
    ("Salesforce/blip-vqa-base", True),
    ("Salesforce/blip-vqa-capfilt-large", True),
    ("/models/model_base_vqa_capfilt_large.pth", True),
    ("downloads/model_vqa.pth", True),
    ("ckpt/my-vqa-base", True),
    ("Salesforce/blip-image-captioning-base", False),
    ("checkpoints/blip-base-pretrained/vqa", False),
    ("checkpoints/embedded/vqa", False),
    ("runs/vqa-baseline/lora", False),
    ("model_base.pth", False),
])
def test_looks_vqa_finetuned_names(path, flagged):
    reason = looks_vqa_finetuned(path)
    assert (reason is not None) is flagged, reason
    if flagged:
        assert path in reason


def test_looks_vqa_finetuned_records(tmp_path, converted):
    assert looks_vqa_finetuned(str(converted / "vqa")) is None  # converted from model_base.pth
    conv = tmp_path / "conv" / "vqa"
    conv.mkdir(parents=True)
    (conv.parent / RECORD).write_text(json.dumps({"finetuned_on_vqa": True, "finetuned_reason": "keys are BLIP_VQA's"}))
    assert "BLIP_VQA" in looks_vqa_finetuned(str(conv))
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "config.json").write_text(json.dumps({"_name_or_path": "Salesforce/blip-vqa-base"}))
    assert "_name_or_path" in looks_vqa_finetuned(str(renamed))


def test_vqa_finetuned_source_recorded(tmp_path, tokenizer, proc_dir):
    sd = original_state_dict(len(tokenizer), momentum=False)  # exactly BLIP_VQA's three parts
    out = convert_blip(save_pth(tmp_path / "weights.pth", sd), tmp_path / "out", processor=str(proc_dir),
                       **HEAD_OPTS)
    rec = json.loads((out / RECORD).read_text())
    assert rec["source_kind"] == "vqa-finetuned" and rec["finetuned_on_vqa"]
    assert "BLIP_VQA" in looks_vqa_finetuned(str(out / "vqa"))


# ---------------------------------------------------------------------------------------------------------
# Command line
def test_cli_help_and_cached_run(tmp_path, converted, source, proc_dir, capsys):
    from vlpeft import cli
    with pytest.raises(SystemExit):
        cli.main(["convert-blip", "--help"])
    text = capsys.readouterr().out
    assert "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base.pth" in text
    assert "checkpoints/blip-base-pretrained/{task}" in text
    cli.main(["convert-blip", str(source[0]), "--out", str(converted), "--processor", str(proc_dir),
              "--vision-heads", "2", "--text-heads", "2"])
    assert "visual_encoder_m.*:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # a user error: one line on stderr, no traceback
        cli.main(["convert-blip", str(source[0]), "--out", str(tmp_path / "o"), "--processor", str(proc_dir)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "convert-blip: error:" in err and "--vision-heads" in err and "Traceback" not in err
