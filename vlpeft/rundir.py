"""A run folder answers for exactly one configuration, and one process at a time owns it.

    runs/<study>/<task>/<method>/<run-id>/
        config.json       the RunConfig, written when the run starts
        provenance.json   vlpeft version and git commit, torch / transformers / peft versions, host — at the
                          start and at every resume
        curve.json        [{step, val, loss, lr}] — the validation curve
        train.log         one line per evaluation
        checkpoint/       resumable state every `checkpoint_every` steps; removed when the run completes
        best.safetensors  the trainable weights of the best validation step so far (until the run completes)
        method/           the method's weights only (safetensors), from the best validation step
        metrics.json      written last and atomically: a run is complete iff it exists
        run.lock          held by the training process (an OS lock: released on any exit, SIGKILL included)

A request whose config differs from the folder's in anything that changes results is refused with the
differing fields and the two ways out; it is never silently reused or resumed. Run ids of a sweep carry a
short hash of the results-relevant config, so two presets that differ only in, say, the LR never share a
folder.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from .catalog import METHODS, variant
from .config import RunConfig
from .errors import RunFolderError
from .io import Owner, config_hash, differing, provenance, read_json, said, write_json

# RunConfig fields that change how a run is carried out, not what it computes (a cached run equals an uncached
# one; any number of workers gives the same batches; evaluation does not depend on its batch size)
HOW_FIELDS = frozenset({"out_dir", "threads", "num_workers", "eval_batch_size", "checkpoint_every", "fault",
                        "cache_images", "feature_cache", "image_root",   # image_root: where the same images lie
                        "compile", "compile_cache"})  # compiled ≡ eager within float rounding (tests/test_train.py)
# RunConfig fields added after the committed studies ran (reports/): at their default, which is what those runs did,
# a field stays out of the results-relevant config, so those runs keep their ids and their folders accept them; at
# any other value it is in, as every field is
LATER_FIELDS = ("caption_beams", "caption_max_tokens", "caption_min_tokens", "vqa_beams", "vqa_max_tokens",
                "vqa_min_tokens",
                "numerics")  # "pinned" (vlpeft/numerics.py): a folder from before the path was pinned reads as pinned,
                             #   and its provenance, which has no numerics record, says it was not
LATER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.name in LATER_FIELDS}
PROJECT_FILES = ("config.json", "provenance.json", "curve.json", "train.log", "metrics.json", "best.safetensors",
                 "method", "checkpoint", "run.ipynb", "failed.json")
BESIDE_A_RUN = ("run.lock", "sweep.lock", "run.ipynb", "failed.json")  # a sweep's files, and the locks


def relevant(config: dict) -> dict:
    """The results-relevant part of a config dict."""
    return {k: v for k, v in config.items()
            if k not in HOW_FIELDS and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def run_hash(config: dict) -> str:
    return config_hash(relevant(config), n=6)


# Full fine-tuning's folders were named `full_s0_…` before methods without a size were first-class: the committed
# studies' run folders keep that name. Every other method without a size has no size in its run id.
SIZE_ZERO_IN_ID = frozenset({"full"})


def run_id(cfg) -> str:
    """A run's folder name: readable (variant, size — for a method with one —, data ratio, seed) and a hash of
    everything that changes its results, so two configurations never share a folder: `lora+cls_s8_r0.3_seed1-3fa9c2`,
    `ia3_r0.3_seed1-…`."""
    entry = METHODS.get(cfg.method)
    size = f"_s{cfg.size}" if entry is None or entry.sized or cfg.method in SIZE_ZERO_IN_ID else ""
    return (f"{variant(cfg.method, cfg.tune_classifier)}{size}_r{cfg.data_ratio:g}_seed{cfg.seed}"
            f"-{run_hash(config_dict(cfg))}")


def differences(old: dict, new: dict) -> dict[str, tuple]:
    return differing(relevant(old), relevant(new))


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.owner = Owner(self.path, "run.lock", RunFolderError, what="run folder")

    # -- files ------------------------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def best_path(self) -> Path:
        return self.path / "best.safetensors"

    def is_complete(self) -> bool:
        return self.metrics_path.exists()

    def metrics(self) -> dict:
        return read_json(self.metrics_path, RunFolderError, "metrics file")

    # -- ownership and identity ---------------------------------------------------------------------------------
    def claim(self, config: dict, overwrite: bool = False) -> "RunFolder":
        """Lock the folder for this process and make sure it belongs to `config` (see the module docstring);
        with `overwrite`, a folder of another config is cleared first."""
        self.owner.acquire()
        try:
            if self.check(config, overwrite, probe=False):
                self.clear()
        except BaseException:
            self.owner.release()
            raise
        return self

    def check(self, config: dict, overwrite: bool = False, probe: bool = True) -> bool:
        """Whether the folder must be cleared for `config` (only with `overwrite`); refuses otherwise.
        Also refuses when another process trains here right now. Reads only."""
        if not self.path.is_dir():
            return False
        if probe and self.owner.is_held_elsewhere():
            raise RunFolderError(f"{self.path}: this run folder is being trained by {self.owner.holder()}; wait "
                                 f"for it to finish or use another --out-dir")
        if not [p for p in self.path.iterdir() if not p.name.startswith(BESIDE_A_RUN)]:
            return False
        if (self.path / "config.json").exists():
            old = read_json(self.path / "config.json", RunFolderError, "run config")
            diff = differences(old, config)
            if not diff:
                return overwrite
            if not overwrite:
                raise RunFolderError(f"{self.path} holds a run of another configuration ({said(diff)}). Use another "
                                     f"--out-dir, or pass --overwrite to discard that run.")
        elif not overwrite:
            raise RunFolderError(f"{self.path} is not empty and holds no config.json: not a vlpeft run folder. "
                                 f"Use another --out-dir (or --overwrite to discard what is there).")
        return True

    def clear(self) -> None:
        """Remove what a run writes (only those files: anything else in the folder is left alone)."""
        for name in PROJECT_FILES:
            p = self.path / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def release(self) -> None:
        self.owner.release()

    def start(self, config: dict) -> None:
        """config.json (once) and a provenance entry (at the start and at every resume)."""
        write_json(self.path / "config.json", config)
        prov_path = self.path / "provenance.json"
        prov = read_json(prov_path, RunFolderError, "provenance file") if prov_path.exists() else {"runs": []}
        prov["runs"].append(provenance() | {"at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                            "resumed": self.checkpoint_dir.joinpath("state.json").exists()})
        write_json(prov_path, prov)

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def save_checkpoint(self, trainable: dict, optimizer, scheduler, state: dict) -> None:
        """Resumable state; state.json is written last, so a checkpoint is only used once it is whole."""
        ckpt = self.checkpoint_dir
        ckpt.mkdir(exist_ok=True)
        (ckpt / "state.json").unlink(missing_ok=True)
        import torch  # here, not at import: run ids and folders need no torch
        from safetensors.torch import save_file
        save_file(trainable, ckpt / "trainable.safetensors")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"opt": optimizer.state_dict(), "sched": scheduler.state_dict(), "rng": rng}, ckpt / "optim.pt")
        write_json(ckpt / "state.json", state)

    def load_checkpoint(self) -> tuple[dict, dict, dict] | None:
        """(state, trainable weights, optimiser/scheduler/RNG) of the last whole checkpoint, or None."""
        ckpt = self.checkpoint_dir
        if not (ckpt / "state.json").exists():
            return None
        state = read_json(ckpt / "state.json", RunFolderError, "checkpoint state",
                          hint=f"; remove {ckpt} to restart the run from step 0")
        import torch
        from safetensors.torch import load_file
        try:
            return state, load_file(ckpt / "trainable.safetensors"), torch.load(ckpt / "optim.pt", weights_only=False)
        except Exception as e:  # noqa: BLE001 - safetensors, pickle and OS errors of a damaged file all land here
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise RunFolderError(f"{ckpt}: the checkpoint is damaged ({type(e).__name__}: {first}); remove {ckpt} "
                                 f"to restart the run from step 0 (its config stays), or pass --overwrite to discard "
                                 f"the run") from None

    def finish(self, metrics: dict) -> dict:
        """metrics.json last, atomically; then the checkpoint and best-so-far weights go."""
        write_json(self.metrics_path, metrics)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        self.best_path.unlink(missing_ok=True)
        return metrics


def config_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
