"""The flat, typed configs of the project, in a module that imports nothing heavy (the CLI builds its flags
from them without loading torch). Each is saved next to what it produced: a run's config.json, a
pre-trained model's card.json, a world's world.json (`worlds.shapes.WorldConfig`, beside the world it describes)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunConfig:
    """One fine-tuning run (`vlpeft.train.run`); saved as its folder's config.json."""
    # what is trained
    task: str = "caption"                 # caption (consistent with pre-training) | vqa (inconsistent)
    method: str = "lora"                  # a catalogue method (vlpeft.catalog.METHODS): full | prompt | prefix | lora
                                          #   | serial_adapter | parallel_adapter
    size: int = 0                         # prompt/prefix length p, LoRA rank r, adapter hidden size h (0: the
                                          #   method's default; must stay 0 for a method without a size, like full)
    tune_classifier: bool = False         # "+ classifier": also fine-tune the decoder's LM head
    data_ratio: float = 1.0               # fraction of the training split (nested subsets, see data.py)
    seed: int = 0                         # data subset, data order and method initialisation
    label_smoothing: float = 0.0          # of the decoder's cross-entropy: 0.0 the paper's plain loss, 0.1 BLIP's
                                          #   own recipe (models/med.py of salesforce/BLIP)
    vqa_route: str = ""                   # vqa: what the answer decoder cross-attends to — mplug ([image; question],
                                          #   mPLUG's) | blip (the question states, BLIP's) | "" the checkpoint's own
                                          #   (its config.json's vqa_route; real BLIP checkpoints: blip)
    # optimisation (embedded-world defaults; the paper's Table II values are on each catalogue entry)
    lr: float = 1e-3                      # peak learning rate
    weight_decay: float = 0.05
    batch_size: int = 32                  # global batch (paper: 256 over 4 GPUs)
    steps: int = 300                      # caption: total iterations (paper: 4000)
    warmup_steps: int = 30                # caption: warm-up 0 → peak (paper: 400)
    epochs: int = 3                       # vqa: epochs (paper: 10)
    warmup_per_ratio: int = 60            # vqa: warm-up 1e-6 → peak over this × data_ratio steps (paper: 800)
    # evaluation
    eval_every: int = 50                  # steps between validation evaluations (0: only at the end)
    eval_size: int = 100                  # validation images / questions (0: the whole split)
    test_size: int = 0                    # test images / questions (0: the whole split)
    eval_batch_size: int = 64             # generation batch (does not change results)
    # decoding (evaluation's `generate`; tasks.Task.decoding): beams (1: greedy), at most / at least this many new
    #   tokens ([SEP] counts in the most). The defaults are the embedded studies'; `paper` decodes as the checkpoint
    #   family's released code (study.presets.PAPER_DECODING, cited there)
    caption_beams: int = 3                # caption
    caption_max_tokens: int = 30          # caption: after the prompt
    caption_min_tokens: int = 0
    vqa_beams: int = 1                    # vqa
    vqa_max_tokens: int = 6
    vqa_min_tokens: int = 0
    # where
    model_path: str = "checkpoints/embedded/{task}"  # a BLIP checkpoint dir or hub name; {task} is filled in
    data_root: str = "data/shapes"
    image_root: str = ""                  # where COCO's train2014/ and val2014/ are ("": <data_root>/images)
    out_dir: str = "runs/scratch"
    # how (none of these changes the numbers, except device and precision)
    device: str = "auto"                  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"               # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    image_size: int = 0                   # 0: the processor's own size (the world's 48 px; BLIP-base 384)
    threads: int = 0                      # torch CPU threads on the native path (0: leave as is; pinned: 1)
    numerics: str = "pinned"              # pinned (the same numbers on any x86-64 machine: vlpeft/numerics.py) |
                                          #   native (the machine's own kernels and --threads: faster, machine-
                                          #   dependent; enters the run id)
    num_workers: int = -1                 # DataLoader workers (-1: 0 on CPU, up to 8 on CUDA)
    checkpoint_every: int = 50            # steps between resumable checkpoints (0: never)
    cache_images: bool = True             # keep decoded images in memory (the small embedded world)
    feature_cache: str = ""               # a folder for the frozen vision tower's outputs ("": compute them)
    compile: str = "auto"                 # torch.compile the training step: auto (where a compiler works and the run
                                          #   is long enough to earn it back, compiling.COMPILE_MIN_STEPS) | on | off
    compile_cache: str = ""               # a folder for inductor's compiled kernels, shared by a study's runs ("":
                                          #   torch's default)
    allow_vqa_finetuned: bool = False     # start VQA from a checkpoint already fine-tuned on VQA (normally refused)
    fault: str = ""                       # tests: nan:K | crash:K | kill:K | interrupt:K (see faults.py)

    @property
    def checkpoint(self) -> str:
        """The task's checkpoint: `model_path` with {task} filled in."""
        return self.model_path.format(task=self.task)

    @property
    def model_root(self) -> str:
        """The folder of every task's checkpoint (where the embedded model's card.json lies beside them)."""
        return str(Path(self.model_path.format(task="caption")).parent)


@dataclass
class TinySpec:
    """Every size knob of the embedded tiny BLIP (`models.tiny_blip_config`)."""
    image_size: int = 48
    patch_size: int = 8
    hidden: int = 128          # vision and text share it: BLIP's VQA decoder cross-attends to text-encoder states
    layers: int = 3            # per tower (vision, text encoder, text decoder)
    heads: int = 4
    intermediate: int = 256
    max_positions: int = 256   # room for 128 prompt/prefix tokens + the text


@dataclass
class PretrainConfig:
    """The embedded BLIP's pre-training (`vlpeft.worlds.pretrain`); saved in its card.json."""
    data_root: str = "data/shapes"
    out: str = "checkpoints/embedded"
    seed: int = 0
    recipe: str = "mplug"           # mplug (the paper's model: PrefixLM, [image; question] VQA route) | blip (BLIP's:
                                    #   ELM after the prompt, question-only route); see worlds/pretrain.py
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    zero_shot_eval: int = 150       # test images / questions for the zero-shot numbers (0: skip)
    lm_prompt: str = "a picture of"  # the text before every pre-training caption ("": raw captions, as BLIP_Pretrain)
    share_text_towers: bool = False  # text encoder and decoder share all but self-attention (as BLIP_Pretrain)
    numerics: str = "pinned"        # pinned (1 thread, AVX2 caps: the same weights on any x86-64 machine) | native
    spec: TinySpec = dataclasses.field(default_factory=TinySpec)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def starting_checkpoint(path: str) -> dict:
    """Where the run started: the path, and for the project's own pre-trained models what their card says
    (pre-training seed, and the world's consistency level for the dial)."""
    info = {"path": path}
    card = Path(path).parent / "card.json"
    if card.is_file():
        c = json.loads(card.read_text())
        info["pretrain"] = {"seed": c["config"].get("seed"), "recipe": c["config"].get("recipe", "blip"),
                            "steps": c.get("steps"),
                            "consistency": (c.get("world") or {}).get("consistency"),
                            "weights": (c.get("weights_sha256") or {}).get(Path(path).name)}  # the stand-in's identity
    return info
