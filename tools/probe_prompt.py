"""Probe (#29's fairness check): why a plain VQA prompt-tuning run stays under the question-type prior. It reads
finished run folders (their config.json and saved method weights); it trains nothing.

    python tools/probe_prompt.py runs/tiny/vqa/prompt/prompt_s2_r1_seed0-* runs/tiny/vqa/prompt/prompt_s32_r1_seed0-*

Run it from the folder the study ran in: a run's config.json names its checkpoint and data relative to it.

For each run, on the validation split and on as many training questions:
- accuracy (the official VQA accuracy) and, beside it, the question-type prior of that split (`data.question_prior`;
  a question's type is `records.question_type`);
- accuracy with the images shuffled within each batch: what the answers owe to the image (a run that answers from
  the question alone scores the same);
- per question type: the run's accuracy and the prior's, and how many distinct answers the run gives;
- the method's trainable numbers.
Underfitting (the training questions no better than validation) with answers that ignore the image says the method
has too little to move the frozen model with; a gap between the two says it over-fits.
"""
import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

from vlpeft.blip.models import load_processor
from vlpeft.config import RunConfig
from vlpeft.data import Paths, Pixels, load_vqa, question_prior
from vlpeft.methods import count_parameters
from vlpeft.metrics import vqa_accuracy_one
from vlpeft.records import question_type
from vlpeft.tasks import get_task, to_device
from vlpeft.train import trained_model


@torch.no_grad()
def answers(model, task, tokenizer, items, images, shuffle: bool) -> dict:
    loader = torch.utils.data.DataLoader(task.eval_examples(items, images), batch_size=64,
                                         collate_fn=lambda b: task.collate(tokenizer, b))
    out, g = {}, torch.Generator().manual_seed(0)
    for batch in loader:
        if shuffle:  # another question's image: what is left is what the question alone gives
            key = "image_embeds" if "image_embeds" in batch else "pixel_values"
            batch[key] = batch[key][torch.randperm(len(batch["ids"]), generator=g)]
        out.update(zip(batch["ids"], task.predict(model, to_device(batch, "cpu"), tokenizer)))
    return out


def probe(run_dir: Path) -> dict:
    cfg = RunConfig(**json.loads((run_dir / "config.json").read_text()))
    task = get_task(cfg.task)
    processor = load_processor(cfg.checkpoint)
    model = trained_model(cfg, run_dir)
    paths = Paths.of(cfg)
    train, val = load_vqa(paths, "train"), load_vqa(paths, "val")
    images = Pixels(processor.image_processor)
    report = {"run": run_dir.name, "method": cfg.method, "size": cfg.size,
              "trainable": count_parameters(model)[0]}
    for name, items in (("val", val), ("train", train[:len(val)])):
        got = answers(model, task, processor.tokenizer, items, images, shuffle=False)
        blind = answers(model, task, processor.tokenizer, items, images, shuffle=True)
        prior, per_type_prior = question_prior(train, items)
        acc = {it.question_id: vqa_accuracy_one(got[it.question_id], list(it.answers)) for it in items}
        report[name] = {"accuracy": sum(acc.values()) / len(items), "prior": prior,
                        "images_shuffled": sum(vqa_accuracy_one(blind[it.question_id], list(it.answers))
                                               for it in items) / len(items)}
        if name == "val":
            by_type = defaultdict(list)
            for it in items:
                by_type[question_type(it.question)].append(it)
            report["per_type"] = {
                t: {"n": len(its), "accuracy": round(sum(acc[i.question_id] for i in its) / len(its), 3),
                    "prior": round(per_type_prior[t], 3),
                    "distinct_answers": len(Counter(got[i.question_id] for i in its))}
                for t, its in sorted(by_type.items())}
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    torch.set_num_threads(1)
    for run in p.parse_args().runs:
        json.dump(probe(run), sys.stdout, indent=1)
        print(flush=True)
