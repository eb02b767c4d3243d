"""The Task objects: what is trained is what is decoded and scored. A VQA answer does not depend on its
batch-mates and its training log-probability is the one decoding computes; images of any size go through an
interpolated position table; the splits are Table I's."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import contextual_model, method_cases, write_real_layout
from vlpeft.blip.models import build_processor, random_blip, tiny_blip_config, vision_states
from vlpeft.config import TinySpec
from vlpeft.data import Paths, Pixels, load_vqa, split_sizes
from vlpeft.features import ensure_features
from vlpeft.methods import MethodConfig, apply_method
from vlpeft.tasks import TASKS, VQA_ROUTES, evaluate

QUESTIONS = ["what color is the circle ?", "how many ?", "is there a big red square left of the blue circle ?",
             "where is the cross ?", "what shape is the small green object on the left ?"]


def vqa_batch(tokenizer, questions, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(len(questions), 3, 16, 16, generator=g)
    task = TASKS["vqa"]
    return task.collate(tokenizer, [{"pixel_values": p, "question": q, "id": i}
                                    for i, (p, q) in enumerate(zip(px, questions))])


@pytest.mark.parametrize("route", VQA_ROUTES)
@pytest.mark.parametrize("method,size", method_cases())
def test_a_vqa_answer_does_not_depend_on_its_batch_mates(tokenizer, method, size, route):
    model = contextual_model(tokenizer, "vqa", method, size, route)
    task = TASKS["vqa"]
    together = vqa_batch(tokenizer, QUESTIONS)
    assert (together["attention_mask"] == 0).any()  # padded: the questions differ in length
    alone = [task.predict(model, vqa_batch(tokenizer, [q], seed=0)                   # each at its own length
                          | {"pixel_values": together["pixel_values"][i:i + 1]}, tokenizer)[0]
             for i, q in enumerate(QUESTIONS)]
    assert task.predict(model, together, tokenizer) == alone
    for order in ([4, 0, 3, 1, 2], [2, 3]):  # other batch-mates, another order
        sub = {k: v[order] if torch.is_tensor(v) else [v[i] for i in order] for k, v in together.items()}
        sub["input_ids"], sub["attention_mask"] = (x[:, :int(sub["attention_mask"].sum(1).max())]
                                                   for x in (sub["input_ids"], sub["attention_mask"]))
        assert task.predict(model, sub, tokenizer) == [alone[i] for i in order]
    assert len(set(alone)) > 1, "degenerate test: every question gets the same answer"


def test_the_vqa_score_does_not_depend_on_the_eval_batch_size(tokenizer, tiny_world):
    model = contextual_model(tokenizer, "vqa", "lora", 4)
    processor = build_processor(tokenizer, 16)
    task = TASKS["vqa"]
    items = task.splits(Paths(tiny_world))[2][:12]
    results = []
    for batch_size in (1, 5, 12):
        loader = torch.utils.data.DataLoader(task.eval_examples(items, Pixels(processor.image_processor)),
                                             batch_size=batch_size, collate_fn=lambda b: task.collate(tokenizer, b))
        results.append(evaluate(model, task, tokenizer, loader, items))
    assert results[0] == results[1] == results[2]


def test_cross_attention_ignores_masked_states(tokenizer):
    """transformers 5.x drops BLIP's encoder_attention_mask; models.honour_cross_attention_masks puts it back."""
    model = contextual_model(tokenizer, "vqa", "full", 0)
    q = torch.randn(1, 7, model.config.text_config.hidden_size)
    bos = torch.full((1, 1), tokenizer.bos_token_id)
    with torch.no_grad():
        short = model.text_decoder(input_ids=bos, encoder_hidden_states=q[:, :4]).logits
        masked = model.text_decoder(input_ids=bos, encoder_hidden_states=q,
                                    encoder_attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0, 0]])).logits
        unmasked = model.text_decoder(input_ids=bos, encoder_hidden_states=q).logits
    assert torch.allclose(short, masked, atol=1e-5) and not torch.allclose(short, unmasked, atol=1e-3)


@pytest.mark.parametrize("route", VQA_ROUTES)
def test_training_and_decoding_give_an_answer_the_same_log_probability(tokenizer, route):
    model = contextual_model(tokenizer, "vqa", "prefix", 4, route)
    task = TASKS["vqa"]
    batch = vqa_batch(tokenizer, QUESTIONS)
    out = task.generate(model, batch, tokenizer, max_new_tokens=4, output_logits=True, return_dict_in_generate=True)
    answers = out.sequences                                                          # [DEC] a1 a2 a3 a4
    decoded = torch.stack([torch.log_softmax(step.float(), -1).gather(-1, answers[:, t + 1:t + 2]).squeeze(-1)
                           for t, step in enumerate(out.logits)], -1).sum(-1)        # Σ log p in decoding
    labels = answers.clone()
    labels[:, 0] = -100
    trained = task.target_logprobs(model, batch | {"decoder_input_ids": answers, "labels": labels,
                                                   "decoder_attention_mask": torch.ones_like(answers)})
    assert torch.allclose(trained, decoded, atol=1e-4)
    assert torch.allclose(-task.loss(model, batch | {"decoder_input_ids": answers, "labels": labels,
                                                     "decoder_attention_mask": torch.ones_like(answers)}),
                          trained.sum() / (labels != -100).sum(), atol=1e-5)  # the loss is their mean per token


def test_caption_prompt_and_mask_are_the_training_texts_first_tokens(tokenizer):
    task = TASKS["caption"]
    train = task.collate(tokenizer, [{"pixel_values": torch.zeros(3, 16, 16), "target": "a red circle", "id": 0}])
    ids, mask = task.prompt_ids(tokenizer, 1, "cpu")
    n = ids.shape[1]
    assert torch.equal(train["input_ids"][:, :n], ids) and torch.equal(train["attention_mask"][:, :n], mask)
    assert (train["labels"][:, :n] == -100).all() and (train["labels"][:, n:] != -100).all()


# ---------------------------------------------------------------------------------------------------------
# Images at another size than the checkpoint's: the position table is interpolated, never sliced
def interpolated_twin(model, size: int):
    """The same model with its vision config at `size` and its position table resized by hand (bicubic)."""
    cfg = copy.deepcopy(model.config)
    cfg.vision_config.image_size = size
    twin = type(model)(cfg).eval()
    state = model.state_dict()
    table = state["vision_model.embeddings.position_embedding"]                       # (1, 1 + g², d)
    g, d = int((table.shape[1] - 1) ** 0.5), table.shape[-1]
    new = size // model.config.vision_config.patch_size
    grid = table[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    state["vision_model.embeddings.position_embedding"] = torch.cat([table[:, :1], grid.reshape(1, -1, d)], 1)
    twin.load_state_dict(state)
    return twin


def test_half_size_images_use_the_interpolated_position_table(tokenizer, processor, tmp_path):
    torch.manual_seed(0)
    spec = TinySpec(image_size=32, patch_size=8, hidden=32, layers=2, heads=2, intermediate=64, max_positions=160)
    model = type(random_blip("caption", tokenizer, spec))(tiny_blip_config(tokenizer, spec)).eval()
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.normal_()                   # rows that differ
    twin = interpolated_twin(model, 16)
    px = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ours = vision_states(model, px)
        explicit = twin.vision_model(pixel_values=px).last_hidden_state
        sliced = model.vision_model(pixel_values=px).last_hidden_state               # transformers' default
    assert torch.allclose(ours, explicit, atol=1e-5) and not torch.allclose(ours, sliced, atol=1e-2)
    # training goes through it: the loss on half-size pixels equals the loss on the explicit states
    task = TASKS["caption"]
    batch = task.collate(tokenizer, [{"pixel_values": p, "target": "a red circle", "id": i} for i, p in enumerate(px)])
    apply_method(model, MethodConfig("lora", 2))
    with torch.no_grad():
        assert torch.allclose(task.loss(model, batch),
                              task.loss(model, {k: v for k, v in batch.items() if k != "pixel_values"}
                                        | {"image_embeds": explicit}), atol=1e-5)


def test_the_feature_cache_holds_interpolated_states(tokenizer, tiny_world, tmp_path):
    spec = TinySpec(image_size=32, patch_size=8, hidden=32, layers=2, heads=2, intermediate=64, max_positions=160)
    model = random_blip("caption", tokenizer, spec)
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.normal_()
    processor = build_processor(tokenizer, 16)                                         # the world's 16 px
    items = TASKS["caption"].splits(Paths(tiny_world))[2][:3]
    store = ensure_features(model, processor, [it.image for it in items], tmp_path / "cache", progress=False)
    px = torch.stack([Pixels(processor.image_processor)(it.image) for it in items])
    with torch.no_grad():
        explicit = interpolated_twin(model, 16).vision_model(pixel_values=px).last_hidden_state
    assert torch.allclose(torch.stack([store(it.image) for it in items]), explicit, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
def test_table_i_splits_on_a_miniature_of_the_real_layout(tmp_path):
    counts = write_real_layout(tmp_path / "coco", {"train": 5, "restval": 2, "val": 2, "test": 3},
                               questions_per_image=2)
    sizes = split_sizes(Paths(tmp_path / "coco"))
    assert sizes == {
        # train + restval images (restval files live in val2014, with val2014 questions)
        "train": {"caption_images": 7, "caption_pairs": 35, "vqa_images": 7, "vqa_questions": 14},
        "val": {"caption_images": 2, "caption_pairs": 10, "vqa_images": 2, "vqa_questions": 4},
        "test": {"caption_images": 3, "caption_pairs": 15, "vqa_images": 3, "vqa_questions": 6},
    }
    train = load_vqa(Paths(tmp_path / "coco"), "train")
    assert sum(it.image.parent.name == "val2014" for it in train) == 2 * counts["restval"]  # both files used


# ---------------------------------------------------------------------------------------------------------
# The VQA route: mPLUG's answer decoder reads [image; question], BLIP's the question alone
def test_the_mplug_route_reads_the_image_beside_the_question_and_the_blip_route_the_question_only(tokenizer):
    model = contextual_model(tokenizer, "vqa", "full", 0, "mplug")
    b = vqa_batch(tokenizer, QUESTIONS)
    with torch.no_grad():
        image = vision_states(model, b["pixel_values"])                                      # (B, 1+N, d)
        memory, mask = TASKS["vqa"].answer_memory(model, b)
        model.config.vqa_route = "blip"
        question, question_mask = TASKS["vqa"].answer_memory(model, b)
    n = image.shape[1]
    assert memory.shape[1] == n + b["input_ids"].shape[1]
    assert torch.equal(memory[:, :n], image) and torch.equal(memory[:, n:], question)
    assert torch.equal(mask, torch.cat([torch.ones(len(QUESTIONS), n, dtype=mask.dtype), b["attention_mask"]], 1))
    assert torch.equal(question_mask, b["attention_mask"])


ROUTE_CASES = [  # (task, asked, the checkpoint's config.json, resolved route or the error's words)
    ("vqa", "", {}, "blip"),                                                     # real BLIP: no route → blip
    ("vqa", "", {"vqa_route": "mplug"}, "mplug"),                                # the checkpoint's own
    ("vqa", "blip", {"vqa_route": "mplug"}, "blip"),                             # the run overrides it
    ("vqa", "mplug", {"vision_config": {"hidden_size": 768}, "text_config": {"hidden_size": 768}}, "mplug"),
    ("vqa", "mplug", {"vision_config": {"hidden_size": 1024}, "text_config": {"hidden_size": 768}},
     "image states are 1024 wide"),                                               # BLIP-large: refused, not reshaped
    ("vqa", "both", {}, r"unknown VQA route 'both' \(--vqa-route\)"),
    ("vqa", "", {"vqa_route": "mplug2"}, r"unknown VQA route 'mplug2' \(the checkpoint's config.json vqa_route\)"),
    ("caption", "", {"vqa_route": "mplug"}, ""),                                 # captioning has no route
    ("caption", "mplug", {}, "applies to VQA runs only"),
]


@pytest.mark.parametrize("task,asked,checkpoint,expected", ROUTE_CASES)
def test_the_route_is_the_checkpoints_unless_the_run_asks(task, asked, checkpoint, expected):
    from vlpeft.errors import ConfigError
    if expected in ("", *VQA_ROUTES):
        assert TASKS[task].resolve_route(asked, checkpoint) == expected
    else:
        with pytest.raises(ConfigError, match=expected):
            TASKS[task].resolve_route(asked, checkpoint)
