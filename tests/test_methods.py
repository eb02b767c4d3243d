"""Every method × several sizes × both tasks, fed to shared checks on a tiny random BLIP (peft's table style):
identity at init, only method parameters move, trainable count = closed form, save/load round trip, LoRA
merge, decoding that equals the model's own predictions, apply/remove, and clear errors on bad input. Every table
of methods is the catalogue's (`helpers.method_cases`): a new entry is in each without editing one."""
from __future__ import annotations

import copy
import re

import pytest
import torch
from transformers import BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering

from helpers import contextual_model, method_cases, peft
from vlpeft.catalog import METHODS
from vlpeft.config import RunConfig
from vlpeft.methods import (
    MethodConfig,
    MethodError,
    apply_method,
    closed_form_count,
    count_parameters,
    load_method,
    lora,
    remove_method,
    save_method,
    trainable_summary,
)
from vlpeft.tasks import CAPTION_PROMPT, TASKS, VQA_TEMPLATE, token_logprobs

CASES = method_cases(sizes=2)                   # every method at its two smallest sizes (one without a size: at 0)
PEFT_CASES = method_cases(peft)                 # every method with weights of its own, at its smallest size
IDENTITY_CASES = method_cases(lambda m: peft(m) and bool(m.identity_at_init), sizes=2)
TASK_NAMES = ["caption", "vqa"]


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
    """The decoder's logits for a batch (VQA: through question encoder → answer decoder): the task's forward."""
    with torch.no_grad():
        return TASKS[task].forward(model, b, labels=False).logits


def loss(model, task, b):
    return TASKS[task].loss(model, b)


def generate(model, task, b, tokenizer):
    return TASKS[task].generate(model, b, tokenizer, num_beams=2 if task == "caption" else 1, max_new_tokens=4)


# ---------------------------------------------------------------------------------------------------------
def expected_trainable(method, size, cfg, towers, tune_classifier=False):
    """The closed-form count of each method's parameters (per tower, then summed)."""
    return closed_form_count(method, size, cfg.text_config, len(towers), tune_classifier)[0]


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("method,size", CASES)
def test_trainable_count_matches_formula(make_model, task, method, size):
    model = make_model(task)
    towers = ["text_decoder"] if task == "caption" else ["text_encoder", "text_decoder"]
    apply_method(model, MethodConfig(method, size))
    trainable, total = count_parameters(model)
    if METHODS[method].count is None:            # full fine-tuning: every parameter
        assert trainable == total
    else:
        assert trainable == expected_trainable(method, size, model.config, towers)
    assert "trainable params" in trainable_summary(model) and "trainable%" in trainable_summary(model)


@pytest.mark.parametrize("method,size", PEFT_CASES)
def test_classifier_adds_lm_head(make_model, method, size):
    model = make_model("caption")
    apply_method(model, MethodConfig(method, size, tune_classifier=True))
    assert count_parameters(model)[0] == expected_trainable(method, size, model.config, ["text_decoder"], True)


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("method,size", IDENTITY_CASES)
def test_identity_at_init(make_model, tokenizer, task, method, size):
    base = make_model(task)
    b = batch(task, tokenizer)
    ref = logits(base, task, b)
    peft_model = apply_method(copy.deepcopy(base), MethodConfig(method, size))
    assert torch.allclose(logits(peft_model, task, b), ref, atol=1e-6)


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("tune_classifier", [False, True])
@pytest.mark.parametrize("method,size", PEFT_CASES)
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


@pytest.mark.parametrize("task", TASK_NAMES)
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
    if peft(METHODS[method]):
        base_bytes = sum(p.numel() for p in make_model(task).parameters()) * 4
        assert (tmp_path / "method.safetensors").stat().st_size < base_bytes / 2  # method weights only
    fresh = load_method(make_model(task), tmp_path)
    assert torch.allclose(logits(fresh, task, b), ref, atol=1e-5)
    out = generate(fresh, task, b, tokenizer)
    assert out.ndim == 2 and out.shape[0] == 2


@pytest.mark.parametrize("task", TASK_NAMES)
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


def bad_configs():
    """Per method: a wrong size (one without a size given one; one with a size given 0 or a negative one) and a
    tower its model lacks; per embedding method, a length that leaves no room for text; and an unknown method."""
    rows = [(MethodConfig("bitfit", 4), "caption", "unknown method 'bitfit'; choose one of full, prompt")]
    for i, m in enumerate(METHODS.values()):
        if not m.sized:
            rows.append((MethodConfig(m.name, 8), "caption", f"{re.escape(m.title)} has no size"))
        else:
            rows.append((MethodConfig(m.name, (0, -3)[i % 2]), ("caption", "vqa")[i % 2], f"positive {m.knob}"))
        if peft(m):
            size = m.default_size
            rows.append((MethodConfig(m.name, size, towers=("text_encoder",)), "caption", "valid towers: text_decoder"))
            rows.append((MethodConfig(m.name, size, towers=("vision_model",)), "vqa",
                         "valid towers: text_encoder, text_decoder"))
        if m.family == "embedding":
            rows.append((MethodConfig(m.name, 400), "caption", "max_position_embeddings"))
    return [pytest.param(*row, id=f"{row[0].method}-{row[2][:24]}") for row in rows]


@pytest.mark.parametrize("cfg,task,match", bad_configs())
def test_bad_method_config_is_refused(make_model, cfg, task, match):
    with pytest.raises(MethodError, match=match):
        apply_method(make_model(task), cfg)


# ---------------------------------------------------------------------------------------------------------
# The BLIP-base shape (BlipConfig() defaults) on the meta device: counts without allocating 250M weights, at the
# smallest and the largest size of Table II
@pytest.mark.parametrize("task,cls", [("caption", BlipForConditionalGeneration), ("vqa", BlipForQuestionAnswering)])
@pytest.mark.parametrize("method,size", method_cases(peft, paper=True))
def test_blip_base_shape_counts(task, cls, method, size):
    with torch.device("meta"):
        model = cls(BlipConfig())
    towers = ["text_decoder"] if task == "caption" else ["text_encoder", "text_decoder"]
    apply_method(model, MethodConfig(method, size))
    assert count_parameters(model)[0] == expected_trainable(method, size, model.config, towers)


# ---------------------------------------------------------------------------------------------------------
# Decoding means what the model predicts: greedy generation equals the teacher-forced argmax token for token,
# and beam search's best score equals the model's own (length-normalised) log-probability of that sequence.
# The base weights are perturbed so that predictions depend on context, every method weight is moved off its
# init, and [SEP] is made unreachable so that every sequence runs its full length.
N_NEW = 6


def teacher_forced(model, task, b, seqs, tokenizer):
    """Logits and labels of the training forward on the generated sequences (generated positions only)."""
    mask = torch.ones_like(seqs)
    if task == "caption":
        n_prompt = TASKS["caption"].prompt_ids(tokenizer, 1, "cpu")[0].shape[1]
        batch = b | {"input_ids": seqs, "attention_mask": mask}
    else:
        n_prompt = 1
        batch = b | {"decoder_input_ids": seqs, "decoder_attention_mask": mask}
    labels = seqs.clone()
    labels[:, :n_prompt] = -100
    with torch.no_grad():
        return TASKS[task].forward(model, batch, labels=False).logits, labels, n_prompt


@pytest.mark.parametrize("task,route", [("caption", "blip"), ("vqa", "blip"), ("vqa", "mplug")])
@pytest.mark.parametrize("method,size", method_cases())
def test_greedy_generation_equals_teacher_forced_argmax(tokenizer, task, route, method, size):
    model = contextual_model(tokenizer, task, method, size, route)
    b = batch(task, tokenizer, seed=3)
    seqs = TASKS[task].generate(model, b, tokenizer, num_beams=1, max_new_tokens=N_NEW)
    logits_, labels, n_prompt = teacher_forced(model, task, b, seqs, tokenizer)
    assert seqs.shape[1] == n_prompt + N_NEW
    generated = seqs[:, n_prompt:]
    changes = (generated[:, 1:] != generated[:, :-1]).sum().item()
    assert changes >= 3, "degenerate test: the model repeats one token, so its context would not matter"
    assert torch.equal(logits_.argmax(-1)[:, n_prompt - 1:-1], generated)


@pytest.mark.parametrize("task,route", [("caption", "blip"), ("vqa", "blip"), ("vqa", "mplug")])
@pytest.mark.parametrize("method,size", method_cases())
def test_beam_score_equals_the_models_log_probability(tokenizer, task, route, method, size):
    """The beams a run declares (`Task.decoding` of its config; VQA answers read [image; question] on mplug, the
    question on blip) score each sequence by the training forward's own log-probability."""
    model = contextual_model(tokenizer, task, method, size, route)
    b = batch(task, tokenizer, seed=4)
    decoding = TASKS[task].decoding(RunConfig(**{f"{task}_beams": 3, f"{task}_max_tokens": N_NEW,
                                                 f"{task}_min_tokens": 1}))
    out = TASKS[task].generate(model, b, tokenizer, **decoding, output_scores=True, return_dict_in_generate=True)
    logits_, labels, n_prompt = teacher_forced(model, task, b, out.sequences, tokenizer)
    assert out.sequences.shape[1] == n_prompt + N_NEW and decoding["num_beams"] == 3
    mean_logprob = token_logprobs(logits_, labels) / (labels != -100).sum(-1)   # length penalty 1: Σ log p / n
    assert torch.allclose(out.sequences_scores, mean_logprob, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Apply / remove, like peft's inject and unload
@pytest.mark.parametrize("method,size", PEFT_CASES)
def test_a_second_apply_is_refused_and_remove_restores_the_base_model(make_model, tokenizer, method, size):
    base = make_model("vqa")
    b = batch("vqa", tokenizer)
    ref = logits(base, "vqa", b)
    model = apply_method(copy.deepcopy(base), MethodConfig(method, size))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    assert not torch.allclose(logits(model, "vqa", b), ref)
    with pytest.raises(MethodError, match="already has .* applied; call remove_method"):
        apply_method(model, MethodConfig(method, size))
    remove_method(model)
    assert torch.equal(logits(model, "vqa", b), ref)
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in base.named_parameters()}


@pytest.mark.parametrize("method,size", PEFT_CASES)
def test_method_weights_are_seeded_by_the_run_seed(make_model, method, size):
    def weights(seed):
        model = apply_method(make_model("caption"), MethodConfig(method, size), seed=seed)
        return [p.detach().flatten() for p in model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(weights(0), weights(0), strict=True))
    drawn = [w for w in weights(0) if w.unique().numel() > 1]   # an initialisation that draws (IA³'s ones do not)
    if drawn:
        assert not torch.equal(torch.cat(weights(0)), torch.cat(weights(1)))
    model = make_model("caption")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    apply_method(model, MethodConfig(method, size), seed=0)
    assert torch.equal(torch.rand(1), before)  # the global RNG is untouched
