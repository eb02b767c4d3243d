"""Every method × several sizes × both tasks, fed to shared checks on a tiny random BLIP (peft's table style):
identity at init, only method parameters move, trainable count = closed form, save/load round trip, LoRA
merge, generation, and clear errors on bad input."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering

from vlpeft.data import CAPTION_PROMPT, VQA_TEMPLATE
from vlpeft.train import task_loss
from vlpeft.methods import (MethodConfig, MethodError, apply_method, count_parameters, load_method, lora,
                            save_method, trainable_summary)

CASES = [(m, s) for m, sizes in {"prompt": [2, 8], "prefix": [2, 8], "lora": [2, 4], "serial_adapter": [4, 16],
                                 "parallel_adapter": [4, 16]}.items() for s in sizes] + [("full", 0)]
TASKS = ["caption", "vqa"]
IDENTITY_AT_INIT = {"lora", "serial_adapter", "parallel_adapter"}


def batch(task, tokenizer, B=2, image_size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(B, 3, image_size, image_size, generator=g)
    if task == "caption":
        enc = tokenizer([f"{CAPTION_PROMPT} a red circle", f"{CAPTION_PROMPT} two shapes"], return_tensors="pt",
                        padding=True)
        ids = enc.input_ids.clone()
        ids[:, 0] = tokenizer.bos_token_id
        return dict(pixel_values=px, input_ids=ids, attention_mask=enc.attention_mask,
                    labels=ids.masked_fill(enc.attention_mask == 0, -100))
    q = tokenizer([VQA_TEMPLATE.format(question=x) for x in ["what color is the circle ?", "how many ?"]],
                  return_tensors="pt", padding=True)
    a = tokenizer(["red", "2"], return_tensors="pt", padding=True)
    ids = a.input_ids.clone()
    ids[:, 0] = tokenizer.bos_token_id
    return dict(pixel_values=px, input_ids=q.input_ids, attention_mask=q.attention_mask, decoder_input_ids=ids,
                decoder_attention_mask=a.attention_mask, labels=ids.masked_fill(a.attention_mask == 0, -100))


def logits(model, task, b):
    """The decoder's logits for a batch (VQA: through question encoder → answer decoder)."""
    with torch.no_grad():
        if task == "caption":
            return model(pixel_values=b["pixel_values"], input_ids=b["input_ids"],
                         attention_mask=b["attention_mask"]).logits
        image = model.vision_model(pixel_values=b["pixel_values"]).last_hidden_state
        q = model.text_encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               encoder_hidden_states=image).last_hidden_state
        return model.text_decoder(input_ids=b["decoder_input_ids"], attention_mask=b["decoder_attention_mask"],
                                  encoder_hidden_states=q, encoder_attention_mask=b["attention_mask"]).logits


def loss(model, task, b):
    return task_loss(model, task, b)


def generate(model, task, b):
    kw = dict(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    return model.generate(**kw, num_beams=2 if task == "caption" else 1, max_new_tokens=4)


# ---------------------------------------------------------------------------------------------------------
def expected_trainable(method, size, cfg, towers, tune_classifier=False):
    """The closed-form count of each method's parameters (per tower, then summed)."""
    t = cfg.text_config
    d, L, V, enc_d = t.hidden_size, t.num_hidden_layers, t.vocab_size, t.encoder_hidden_size
    n_attn = 2  # every BLIP text block has self- and cross-attention (is_decoder=True in both towers)
    per_tower = {
        "prompt": size * d,
        "prefix": size * d + (d * d + d) + (d * 2 * L * d + 2 * L * d),     # P' + MLP d→d→2Ld
        "lora": L * size * ((d + d) + (d + d) + (d + d) + (enc_d + d)),     # q,k of self; q,k of cross
        "serial_adapter": L * (n_attn + 1) * (2 * d * size + size + d),
        "parallel_adapter": L * (n_attn + 1) * (2 * d * size + size + d),
    }
    n = per_tower[method] * len(towers)
    if tune_classifier:
        n += d * d + d + 2 * d + V * d + V                                  # transform, LayerNorm, tied W, bias
    return n


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method,size", CASES)
def test_trainable_count_matches_formula(make_model, task, method, size):
    model = make_model(task)
    towers = ["text_decoder"] if task == "caption" else ["text_encoder", "text_decoder"]
    apply_method(model, MethodConfig(method, size))
    trainable, total = count_parameters(model)
    if method == "full":
        assert trainable == total
    else:
        assert trainable == expected_trainable(method, size, model.config, towers)
    assert "trainable params" in trainable_summary(model) and "trainable%" in trainable_summary(model)


@pytest.mark.parametrize("method,size", [(m, s) for m, s in CASES if m != "full"])
def test_classifier_adds_lm_head(make_model, method, size):
    model = make_model("caption")
    apply_method(model, MethodConfig(method, size, tune_classifier=True))
    assert count_parameters(model)[0] == expected_trainable(method, size, model.config, ["text_decoder"], True)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method,size", [(m, s) for m, s in CASES if m in IDENTITY_AT_INIT])
def test_identity_at_init(make_model, tokenizer, task, method, size):
    base = make_model(task)
    b = batch(task, tokenizer)
    ref = logits(base, task, b)
    peft_model = apply_method(copy.deepcopy(base), MethodConfig(method, size))
    assert torch.allclose(logits(peft_model, task, b), ref, atol=1e-6)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("tune_classifier", [False, True])
@pytest.mark.parametrize("method,size", [(m, s) for m, s in CASES if m != "full"][::2])
def test_only_method_parameters_change(make_model, tokenizer, task, method, size, tune_classifier):
    model = apply_method(make_model(task), MethodConfig(method, size, tune_classifier=tune_classifier))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable_ids = {id(p) for p in model.parameters() if p.requires_grad}
    names = {k for k, p in model.named_parameters(remove_duplicate=False) if id(p) in trainable_ids}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):  # two steps: LoRA's B and adapters' W_up start at zero, so their partners move on step 2
        opt.zero_grad()
        loss(model, task, batch(task, tokenizer)).backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing was trained"
    assert changed <= names, f"base weights changed: {sorted(changed - names)[:5]}"
    if tune_classifier:
        assert any("cls.predictions" in k for k in changed)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method,size", CASES)
def test_save_load_round_trip_and_generation(make_model, tokenizer, tmp_path, task, method, size):
    model = apply_method(make_model(task), MethodConfig(method, size, tune_classifier=method == "prompt"))
    with torch.no_grad():  # move every method weight off its init so the round trip is not trivially equal
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    b = batch(task, tokenizer)
    ref = logits(model, task, b)
    save_method(model, tmp_path)
    saved = {f.name for f in tmp_path.iterdir()}
    assert saved == {"method.safetensors", "method.json"}
    if method != "full":
        base_bytes = sum(p.numel() for p in make_model(task).parameters()) * 4
        assert (tmp_path / "method.safetensors").stat().st_size < base_bytes / 2  # method weights only
    fresh = load_method(make_model(task), tmp_path)
    assert torch.allclose(logits(fresh, task, b), ref, atol=1e-5)
    out = generate(fresh, task, b)
    assert out.ndim == 2 and out.shape[0] == 2


@pytest.mark.parametrize("task", TASKS)
def test_lora_merge_reproduces_outputs(make_model, tokenizer, task):
    model = apply_method(make_model(task), MethodConfig("lora", 4))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    b = batch(task, tokenizer)
    ref = logits(model, task, b)
    lora.merge(model)
    assert torch.allclose(logits(model, task, b), ref, atol=1e-5)


@pytest.mark.parametrize("cfg,task,match", [
    (MethodConfig("bitfit", 4), "caption", "unknown method 'bitfit'; choose one of full, prompt"),
    (MethodConfig("lora", 0), "caption", "positive rank"),
    (MethodConfig("prompt", -3), "vqa", "positive prompt length"),
    (MethodConfig("serial_adapter", 8, towers=("text_encoder",)), "caption", "valid towers: text_decoder"),
    (MethodConfig("prefix", 8, towers=("vision_model",)), "vqa", "valid towers: text_encoder, text_decoder"),
    (MethodConfig("prompt", 400), "caption", "max_position_embeddings"),
])
def test_bad_method_config_is_refused(make_model, cfg, task, match):
    with pytest.raises(MethodError, match=match):
        apply_method(make_model(task), cfg)


# ---------------------------------------------------------------------------------------------------------
# The BLIP-base shape (BlipConfig() defaults) on the meta device: counts without allocating 250M weights
PAPER_SIZES = {"prompt": [2, 128], "prefix": [2, 128], "lora": [2, 32], "serial_adapter": [16, 512],
               "parallel_adapter": [16, 512]}


@pytest.mark.parametrize("task,cls", [("caption", BlipForConditionalGeneration), ("vqa", BlipForQuestionAnswering)])
@pytest.mark.parametrize("method,size", [(m, s) for m, ss in PAPER_SIZES.items() for s in ss])
def test_blip_base_shape_counts(task, cls, method, size):
    with torch.device("meta"):
        model = cls(BlipConfig())
    towers = ["text_decoder"] if task == "caption" else ["text_encoder", "text_decoder"]
    apply_method(model, MethodConfig(method, size))
    assert count_parameters(model)[0] == expected_trainable(method, size, model.config, towers)
