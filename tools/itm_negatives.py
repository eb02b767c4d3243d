"""How often pre-training's ITM "negative" is not one (vlpeft/worlds/pretrain.py, `Objectives`: the negative of
pair i is the caption of pair i-1 in its batch, `torch.roll`). A pair batch is every caption of every corpus image,
shuffled, so two captions of one image can sit side by side: the rolled caption then describes the positive's own
image, and ITM is taught to call a match a mismatch.

    python tools/itm_negatives.py --data-root data/shapes          # the stand-in's pre-training (the defaults)

Nothing is trained or computed: the pre-training's own corpus (`Corpus`) and its objectives' random draws
(`Objectives.draw`, which never read the model) run step by step, so the batches are exactly the pre-training's; no
image is decoded (the order does not depend on the pixels). Prints, for `--steps` steps: rolled
negatives that share the positive's image, and those whose text is word for word one of that image's captions
although the image is another.
"""
import argparse
from pathlib import Path

import torch

from vlpeft.blip.models import build_processor, build_tokenizer
from vlpeft.config import PretrainConfig
from vlpeft.data import Paths
from vlpeft.worlds import shapes
from vlpeft.worlds.pretrain import Corpus, Objectives

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data-root", default="data/shapes")
p.add_argument("--steps", type=int, default=PretrainConfig.steps)
p.add_argument("--recipe", default=PretrainConfig.recipe)
p.add_argument("--seed", type=int, default=PretrainConfig.seed)
args = p.parse_args()
torch.set_num_threads(1)   # tiny matrices: one thread is fastest (and shares the machine)

cfg = PretrainConfig(data_root=args.data_root, steps=args.steps, recipe=args.recipe, seed=args.seed)
tokenizer = build_tokenizer(shapes.vocabulary())
corpus = Corpus(cfg, Paths(Path(cfg.data_root)), tokenizer, build_processor(tokenizer, cfg.spec.image_size))


class Blank:  # the pixels' stand-in: the batches' order and every draw are the same without them
    key = "pixel_values"

    def __call__(self, path):
        return torch.zeros(3, cfg.spec.image_size, cfg.spec.image_size)


corpus.pairs.dataset.images = Blank()
objectives = Objectives(None, None, tokenizer, cfg.spec.max_positions, corpus.g, cfg.recipe)  # draws only
captions = {it.image_id: set(it.captions) for it in corpus.items}
negatives = same_image = same_text = steps = 0
with torch.no_grad():
    for pairs, text in corpus.batches(cfg.steps):
        ids, texts = pairs["ids"], pairs["captions"]
        neg = torch.roll(torch.arange(len(ids)), 1).tolist()        # as Objectives draws them
        same_image += sum(ids[i] == ids[j] for i, j in enumerate(neg))
        same_text += sum(ids[i] != ids[j] and texts[j] in captions[ids[i]] for i, j in enumerate(neg))
        negatives += len(ids)
        steps += 1
        objectives.draw(pairs, text)                                # the generator's draws, as in pre-training
n_pairs, n_images = len(corpus.pairs.dataset), len(corpus.items)
print(f"{steps} steps, {negatives} rolled negatives ({n_pairs} pairs of {n_images} images, "
      f"{n_pairs / n_images:.1f} captions per image)")
print(f"sharing the positive's image: {same_image} ({100 * same_image / negatives:.3f} %; a uniform shuffle expects "
      f"{negatives * (n_pairs / n_images - 1) / (n_pairs - 1):.1f})")
print(f"another image, but word for word one of the positive image's captions: {same_text} "
      f"({100 * same_text / negatives:.2f} %)")
