"""The embedded world's footing and its consistency dial: pre-training never shows a question–answer pair yet
produces every word a caption or answer uses; the dial changes the pre-training corpus and nothing else."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers import TINY_WORLD
from vlpeft.data import Paths, load_karpathy, load_vqa
from vlpeft.worlds import shapes as world
from vlpeft.worlds.pretrain import offset_positions


@pytest.fixture(scope="module")
def dial(tmp_path_factory):
    """The tiny world at three consistency levels."""
    root = tmp_path_factory.mktemp("dial")
    return {c: world.write_world(root / f"c{c}", dataclasses.replace(TINY_WORLD, consistency=c), progress=False)
            for c in (1.0, 0.5, 0.0)}


def pretraining_texts(root) -> list[str]:
    paths = Paths(root)
    captions = [c for it in load_karpathy(paths.pretrain, paths.images, "all") for c in it.captions]
    return captions + json.loads((root / "annotations" / "pretrain_text.json").read_text())["sentences"]


def words(tokenizer, text: str) -> set[str]:
    return set(tokenizer.tokenize(text))


@pytest.mark.parametrize("level", [1.0, 0.5, 0.0])
def test_pretraining_never_shows_a_question_answer_pair(dial, tokenizer, level):
    root = dial[level]
    questions = {q.question.rstrip(" ?") for split in ("train", "val", "test") for q in load_vqa(Paths(root), split)}
    for text in pretraining_texts(root):
        assert not words(tokenizer, text) & world.NEVER_IN_PRETRAINING, text   # no "?", "question", "answer"
        assert not any(q in text for q in questions), text                      # no VQA question inside


@pytest.mark.parametrize("level", [1.0, 0.5, 0.0])
def test_pretraining_produces_every_caption_and_answer_word(dial, tokenizer, level):
    root = dial[level]
    seen = set().union(*(words(tokenizer, t) for t in pretraining_texts(root)))
    paths = Paths(root)
    needed = set()
    for split in ("train", "val", "test"):
        needed |= set().union(*(words(tokenizer, c) for it in load_karpathy(paths.karpathy, paths.images, split)
                                for c in it.captions))
        needed |= set().union(*(words(tokenizer, a) for q in load_vqa(paths, split) for a in q.answers))
    assert {"0", "1", "2", "3", "yes", "no"} <= needed      # the answers the old corpus never produced
    assert needed <= seen, sorted(needed - seen)
    assert "[UNK]" not in seen


def test_the_dial_changes_the_pretraining_corpus_and_nothing_else(dial):
    files = ["dataset_coco.json", "v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_val2014_annotations.json",
             "pretrain_text.json"]
    for f in files:
        assert len({(dial[c] / "annotations" / f).read_text() for c in dial}) == 1, f
    downstream = {it.image_id for it in load_karpathy(Paths(dial[1.0]).karpathy, Paths(dial[1.0]).images, "train")}
    styles = {c: [it for it in load_karpathy(Paths(dial[c]).pretrain, Paths(dial[c]).images, "all")] for c in dial}
    n_downstream = {c: sum(it.image_id in downstream for it in items) for c, items in styles.items()}
    assert n_downstream[1.0] == len(downstream) > n_downstream[0.5] > n_downstream[0.0] == 0
    synonyms = {"disc", "ring", "box", "rhombus", "plus", "little", "tiny", "big", "huge", "background", "there"}
    at_zero = {w for it in styles[0.0] for c in it.captions for w in c.replace(",", " ").split()}
    assert not at_zero & synonyms                          # no downstream template or paraphrase at level 0
    at_one = {w for it in styles[1.0] for c in it.captions for w in c.replace(",", " ").split()}
    assert {"item", "items", "shown"}.isdisjoint(at_one)   # and no pre-training style at level 1


def test_position_offsets_train_every_row():
    mask = torch.ones(4000, 20, dtype=torch.long)
    pos = offset_positions(mask, 256, torch.Generator().manual_seed(0))
    assert (pos[:, 0] == 0).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert pos.max().item() == 255 and set(pos.flatten().tolist()) == set(range(256))


def test_the_vqa_is_not_answerable_from_the_question_alone(tmp_path):
    """The study's world (downstream part: the pre-training-only images do not touch VQA): the most frequent
    training answer of each question type scores at most 0.33 on the test split (VQAv2: about 0.31), and within
    every type no answer holds more than its fair share by much."""
    from collections import Counter

    from vlpeft.data import question_prior
    root = world.write_world(tmp_path, dataclasses.replace(world.WorldConfig(), n_pretrain_extra=0), progress=False)
    train, test = load_vqa(Paths(root), "train"), load_vqa(Paths(root), "test")
    prior, per_type = question_prior(train, test)
    assert prior <= 0.33, per_type
    for t in world.TYPE_SHARES:
        answers = Counter(q.answer for q in train if world.question_type(q.question) == t)
        assert max(answers.values()) / sum(answers.values()) < 1.3 / len(answers), (t, answers)
    assert world.TYPE_SHARES.keys() == {world.question_type(q.question) for q in train}


@pytest.mark.parametrize("steps, window", [(7, 1), (251, 2)])
def test_the_cards_loss_curve_is_the_mean_summed_loss_per_hundredth_of_the_steps(tiny_world, tmp_path, monkeypatch,
                                                                                 steps, window):
    """The card's `loss_curve` (what schedule.md §7.1's "final loss" reads): the sum of the five objectives, averaged
    over each window of max(1, steps // 100) steps, the last window whatever is left — recomputed here from every
    step's own losses as the objectives returned them."""
    from helpers import SPEC
    from vlpeft.config import PretrainConfig
    from vlpeft.worlds import pretrain as pt
    seen, real = [], pt.Objectives.__call__

    def record(self, *a):
        losses = real(self, *a)
        seen.append(sum(losses.values()).item())
        return losses
    monkeypatch.setattr(pt.Objectives, "__call__", record)
    out = pt.pretrain(PretrainConfig(data_root=str(tiny_world), out=str(tmp_path / "m"), steps=steps, batch_size=2,
                                     warmup=1, zero_shot_eval=0, spec=SPEC), progress=False)
    curve = json.loads((out / "card.json").read_text())["loss_curve"]
    windows = [seen[i:i + window] for i in range(0, steps, window)]
    assert len(seen) == steps and curve == [round(sum(w) / len(w), 4) for w in windows]
