"""Where a checkpoint is, checked before anything heavy is imported: a folder whose config.json parses and names
a BLIP model (model_type 'blip'), or a
hub name already in the local Hugging Face cache (nothing is downloaded, so a name that is not there fails at
once, in well under two seconds, with what to do instead)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import ModelError


def check_path(path: str | Path) -> tuple[str, dict]:
    """A checkpoint directory whose config is a whole BLIP config, or a hub name already in the local cache
    (nothing is downloaded): (the path to load, its config)."""
    local = Path(path).expanduser()
    if local.is_dir():
        config = local / "config.json"
        if not config.is_file():
            raise ModelError(f"{local}: no config.json — not a transformers checkpoint directory. Convert an "
                             f"original BLIP checkpoint with `vlpeft convert-blip`, or point at a save_pretrained "
                             f"directory.")
        where = str(local)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)) and not str(path).startswith("."):
        from huggingface_hub import constants, try_to_load_from_cache
        cached = try_to_load_from_cache(str(path), "config.json")
        if not isinstance(cached, str):
            raise ModelError(f"{path}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and vlpeft "
                             f"downloads nothing. Put the checkpoint on disk — `vlpeft convert-blip` (BLIP's "
                             f"pre-training checkpoint) or a save_pretrained folder — and pass its path.")
        config, where = Path(cached), str(path)
    else:
        raise ModelError(f"model path {str(path)!r} does not exist. For the embedded model run `vlpeft pretrain`; "
                         f"for real BLIP pass a checkpoint directory or a hub name already in the local HF cache.")
    try:
        cfg = json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{config}: not valid JSON ({e}); the checkpoint is corrupt — re-save or re-convert "
                         f"it") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "blip":
        found = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise ModelError(f"{config}: model_type {found!r}, not a BLIP checkpoint (model_type 'blip'); point at a "
                         f"BLIP caption or VQA folder")
    return where, cfg
