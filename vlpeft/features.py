"""The frozen-feature cache: the vision tower's output for each image, computed once and shared.

No PEFT method here touches the vision tower (with or without "+ classifier"), and there is no augmentation,
so its output for an image never changes across the steps, epochs and runs of a sweep; on the BLIP-base shape
it is most of a PEFT step. (VL-Adapter extracts frozen image features once for the same reason.) Full
fine-tuning trains the tower and never uses the cache.

    store = ensure_features(model, processor, image_paths, "cache/features")   # computed once, under a lock
    store(path)                                                                 # (1+N, d), memory-mapped

A cache folder is keyed by everything its numbers depend on: the vision weights (a hash of every tensor),
the image processor's settings (size, normalisation, resampling) and the dtype the tower runs in; a
different checkpoint, image size or precision gets its own folder, never a stale hit. Layout:

    <root>/<key>/features-*.bin  rows of (1+N)·d numbers, memory-mapped (float32; bfloat16 as raw 16 bits)
    <root>/<key>/index.json      image path → row, the .bin it indexes, shape, dtype, the key's ingredients,
                                 the file's size and a checksum per block of rows (written last, atomically;
                                 a wider set of images gets a new .bin, so a reader of the older index keeps
                                 reading the older file)
    <root>/<key>/verified.json   the .bin's size and mtime when its checksums last held

A cache is never read unchecked: when a run opens it, a .bin whose size or mtime differs from the last check
is verified block by block, and one that is short or does not match is recomputed (with a line saying so).

Disk: rows × (1+N) × d × bytes. MSCOCO-Karpathy at 256 px on BLIP-base (123,287 images, 257 × 768, bf16):
48.7 GB; fp32 twice that.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from . import numerics
from .blip.models import load_model, load_processor, vision_states
from .catalog import METHODS
from .data import Examples, Paths, Pixels, stack_images
from .devices import autocast_dtype, resolve_device
from .io import progress_bar, write_json
from .parallel import Ranks
from .tasks import TASKS

DTYPES = {"float32": (np.float32, torch.float32), "bfloat16": (np.uint16, torch.bfloat16),
          "float16": (np.float16, torch.float16)}
BLOCK_ROWS = 256   # images per checksum block


def row_size(shape, dtype: str) -> int:
    """Bytes of one image's states (1+N, d) in the cache's dtype."""
    return int(np.prod(shape)) * np.dtype(DTYPES[dtype][0]).itemsize


def block_checksums(file: Path, row_bytes: int, rows: int) -> list[str]:
    """A BLAKE2b checksum of every block of BLOCK_ROWS rows of a .bin (read in order, one block at a time)."""
    out = []
    with open(file, "rb") as f:
        for start in range(0, rows, BLOCK_ROWS):
            out.append(hashlib.blake2b(f.read(row_bytes * min(BLOCK_ROWS, rows - start)), digest_size=16).hexdigest())
    return out


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(model, processor, dtype: torch.dtype) -> tuple[str, dict]:
    ingredients = {"vision_weights": weights_hash(model.vision_model),
                   "image_processor": processor.image_processor.to_dict(), "dtype": str(dtype).split(".")[-1]}
    key = hashlib.sha256(json.dumps(ingredients, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return key, ingredients


class FeatureStore:
    """image path → the vision tower's cached states (1+N, d): a drop-in for `data.Pixels` in `Examples`."""
    key = "image_embeds"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text())
        self.rows, self.shape, self.dtype = self.index["rows"], tuple(self.index["shape"]), self.index["dtype"]
        self.file = self.folder / self.index["file"]
        self._data = None  # opened lazily: a DataLoader worker opens its own map

    @property
    def row_bytes(self) -> int:
        return row_size(self.shape, self.dtype)

    def problem(self) -> str | None:
        """Why the .bin cannot be read as this index says (None: it can). Cheap when the file is unchanged since
        its last verification; otherwise every block's checksum is recomputed."""
        if "blocks" not in self.index:
            return "written by an older vlpeft without checksums"
        if not self.file.is_file():
            return "its .bin is missing"
        stat, expected = self.file.stat(), self.index.get("bytes", len(self.rows) * self.row_bytes)
        if stat.st_size != expected:
            return f"{self.file.name} is {stat.st_size:,d} bytes, {expected:,d} expected (truncated or overwritten)"
        stamp = {"file": self.file.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        verified = self.folder / "verified.json"
        if verified.is_file() and json.loads(verified.read_text()) == stamp:
            return None
        bad = [i for i, (a, b) in enumerate(zip(block_checksums(self.file, self.row_bytes, len(self.rows)),
                                                self.index["blocks"])) if a != b]
        if bad:
            return (f"{self.file.name}: {len(bad)} of {len(self.index['blocks'])} blocks do not match their "
                    f"checksums (first: rows {bad[0] * BLOCK_ROWS}…)")
        write_json(verified, stamp)
        return None

    def __contains__(self, path) -> bool:
        return str(path) in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, path) -> torch.Tensor:
        if self._data is None:
            np_dtype = DTYPES[self.dtype][0]
            self._data = np.memmap(self.file, dtype=np_dtype, mode="r",
                                   shape=(len(self.rows), *self.shape))
        row = torch.from_numpy(np.array(self._data[self.rows[str(path)]]))
        return row.view(DTYPES[self.dtype][1])

    def __getstate__(self):  # picklable for DataLoader workers: the map is reopened there
        return self.__dict__ | {"_data": None}


@torch.no_grad()
def ensure_features(model, processor, image_paths, root: str | Path, dtype: torch.dtype = torch.float32,
                    device="cpu", batch_size: int = 64, num_workers: int = 0, progress: bool = True) -> FeatureStore:
    """The store holding every image of `image_paths`, computing it (once, under a lock) when needed."""
    key, ingredients = cache_key(model, processor, dtype)
    folder = Path(root) / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted({str(p) for p in image_paths})
    with FileLock(str(folder / "compute.lock")):  # the first process computes; the others wait, then read
        if (folder / "index.json").exists():
            store = FeatureStore(folder)
            problem = store.problem()
            if problem is None and all(p in store for p in paths):
                return store
            if problem is not None:
                print(f"vision feature cache {folder}: {problem}; recomputing it", file=sys.stderr, flush=True)
            paths = sorted(set(paths) | set(store.rows))  # a wider request: recompute the union
        loader = torch.utils.data.DataLoader(
            Examples([(Path(p), {"id": p}) for p in paths], Pixels(processor.image_processor, keep=False)),
            batch_size=batch_size, num_workers=num_workers, collate_fn=stack_images)
        was_training = model.vision_model.training
        model.vision_model.eval()
        name = str(dtype).split(".")[-1]
        np_dtype = DTYPES[name][0]
        data, shape = None, None
        file = f"features-{hashlib.sha256(chr(0).join(paths).encode()).hexdigest()[:12]}.bin"
        device = torch.device(device)
        amp = device.type != "cpu" and dtype != torch.float32
        start = 0
        for batch in progress_bar(iterable=loader, desc="vision features", disable=not progress, leave=False):
            px = batch["pixel_values"].to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                states = vision_states(model, px).to(dtype).cpu()                   # (b, 1+N, d)
            if data is None:
                shape = tuple(states.shape[1:])
                data = np.memmap(folder / f"{file}.tmp", dtype=np_dtype, mode="w+", shape=(len(paths), *shape))
            data[start:start + len(states)] = (states.view(torch.uint16) if name == "bfloat16" else states).numpy()
            start += len(states)
        data.flush()
        del data
        (folder / f"{file}.tmp").replace(folder / file)  # one .bin per image set: older readers keep theirs
        model.vision_model.train(was_training)
        row_bytes = row_size(shape, name)
        (folder / "verified.json").unlink(missing_ok=True)
        write_json(folder / "index.json", {"rows": {p: i for i, p in enumerate(paths)}, "shape": list(shape),
                                           "dtype": name, "file": file, "ingredients": ingredients,
                                           "bytes": row_bytes * len(paths),
                                           "blocks": block_checksums(folder / file, row_bytes, len(paths))},
                   indent=None)
        store = FeatureStore(folder)
        problem = store.problem()                        # verifies what was just written, and stamps verified.json
        if problem is not None:
            raise RuntimeError(f"{folder}: the feature cache just written does not verify: {problem}")
        return store


def prepare_features(configs, progress: bool = True) -> None:
    """Compute the frozen vision features of every (model, data, image size, cache) that PEFT runs of `configs`
    (RunConfigs) use, once, before the runs start (each run then only reads them). Full fine-tuning never uses
    the cache."""
    groups = {}
    for cfg in configs:
        if cfg.feature_cache and METHODS[cfg.method].family != "full":
            groups.setdefault((cfg.checkpoint, cfg.data_root, cfg.image_root, cfg.image_size, cfg.feature_cache,
                               cfg.task), cfg)
    for (path, _, _, image_size, cache, task), cfg in groups.items():
        device = resolve_device(cfg, Ranks())
        processor = load_processor(path)
        if image_size:
            processor.image_processor.size = {"height": image_size, "width": image_size}
        model = load_model(task, path)
        images = [p for split in TASKS[task].splits(Paths.of(cfg)) for p in TASKS[task].image_paths(split)]
        with numerics.computing(cfg.numerics, cfg.threads):   # as the run itself would compute them
            ensure_features(model.to(device), processor, images, cache,
                            dtype=autocast_dtype(cfg, device) or torch.float32, device=device, progress=progress)
