"""Convert BLIP's ORIGINAL pre-training checkpoint into the two transformers checkpoints the study fine-tunes, and
the `vlpeft convert-blip` command.

    OUT/caption          BlipForConditionalGeneration  } each filled from the source (`target`), saved and
    OUT/vqa              BlipForQuestionAnswering      } read back tensor by tensor
    OUT/conversion.json  written last: source, sha256, inferred config, unmapped source keys, whether the source
                         looks fine-tuned on VQA (what `checkpoints.looks_vqa_finetuned` reads back)

The phases, in `convert_blip`'s order: the output folder (taken as every writer of the project takes one,
`vlpeft.io.own`: a "BLIP conversion" of the source's sha256 and the options, complete once conversion.json is
there); what to convert, all checked before the folder is touched (`original`: the source file and the sizes its
weights say; `target`: the processor and the BlipConfig); the two task folders; the record.

A complete conversion of the same source and options is returned at once; an unfinished one (a killed run) is
redone whatever it was of; one of another source or options is replaced only with `force`; a folder that is not
a conversion is never touched.

torch and transformers are imported only once there is work to do: the CLI builds this command's parser (and
its --help) on every call.
"""
from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

from ..io import MARKER, FolderRefused, file_sha256, own, write_json
from .checkpoints import RECORD, json_object, source_verdict
from .keymap import OUTPUTS
from .original import CHECKPOINT_URLS, DEFAULT_PROCESSOR, README_URL, ConvertError, load_original_state_dict

DEFAULT_OUT = "checkpoints/blip-base-pretrained"
WHAT = "BLIP conversion"  # the kind of folder, in its .vlpeft.json
FORMAT = 1


def convert_blip(src: str | Path, out: str | Path, processor: str = DEFAULT_PROCESSOR, image_size: int | None = None,
                 force: bool = False, vision_heads: int | None = None, text_heads: int | None = None,
                 allow_pickle: bool = False) -> Path:
    """Convert an original BLIP pre-training checkpoint into `out/caption`, `out/vqa` and `out/conversion.json`.

    `processor`: a saved BlipProcessor (directory, or a hub name in the local HF cache) that gives the tokenizer
    and image processor; its vocabulary must match the checkpoint's. `image_size`: default the checkpoint's own
    (from pos_embed: 224 for model_base.pth); another size resizes the position embeddings as BLIP does when it
    fine-tunes at 384/480. A folder that is not a previous conversion is never touched; a complete conversion
    of the same source with the same options is returned at once; `force` redoes one of ours."""
    src, out = Path(src).expanduser().resolve(), Path(out).expanduser()
    if not src.is_file():
        raise ConvertError(f"source checkpoint {src} does not exist; download it from "
                           f"{CHECKPOINT_URLS['model_base.pth']} (BLIP's README: {README_URL})")
    local_processor = Path(processor).expanduser()
    options = {"processor": str(local_processor.resolve()) if local_processor.is_dir() else str(processor),
               "image_size": image_size, "vision_heads": vision_heads, "text_heads": text_heads}
    key = {"format": FORMAT, "source_sha256": file_sha256(src), "options": options}
    # 1. the output folder: this conversion already (returned at once), ours to write, or refused
    if _take(out, key, force, dry_run=True):
        return out
    # 2. what to convert, all checked before the folder is touched (a --force that fails keeps what was there)
    from . import target  # here, not at the top, for start-up speed: it imports torch and transformers
    proc = target.load_blip_processor(processor)
    sd, top = load_original_state_dict(src, allow_pickle)
    config, shapes, pos_embed, notes = target.target_config(sd, proc, image_size, vision_heads, text_heads)
    # 3. the folder taken (unfinished from here on), a previous conversion cleared, both task folders written
    _take(out, key, force)
    _clear(out)
    outputs, used = {}, set()
    for task in OUTPUTS:
        outputs[task], task_used = target.write_task(task, config, sd, pos_embed, proc, out)
        used |= task_used
    # 4. the record, written last: the folder holds a complete conversion from here on
    kind, reason = source_verdict(src.name, sd)
    tok, text = proc.tokenizer, shapes["text"]
    record = {
        "format": FORMAT, "tool": "vlpeft.blip.convert",
        "source": {**_source_info(src, key["source_sha256"]), "checkpoint_keys": top, "tensors": len(sd)},
        "source_kind": kind, "finetuned_on_vqa": reason is not None, "finetuned_reason": reason,
        "options": options, "config": shapes,
        "tokens": {k: tok.convert_ids_to_tokens(text[k]) for k in ("pad_token_id", "bos_token_id", "sep_token_id",
                                                                    "eos_token_id")},
        "outputs": outputs,
        "unmapped_source": _unmapped([k for k in sd if k not in used]),
        "notes": notes,
    }
    write_json(out / RECORD, record, indent=2)  # atomically: a record that exists is whole
    return out


# ---------------------------------------------------------------------------------------------------------
# The output folder
def _take(out: Path, key: dict, force: bool, dry_run: bool = False) -> bool:
    """`own` the output folder for the conversion `key`: True when it already holds it, complete (a dry run:
    decide, write nothing). Refusals in the converter's words (what the folder holds, and --force or --out)."""
    _adopt(out)
    try:
        return own(out, WHAT, key, RECORD, force=force, redo_unfinished=True, dry_run=dry_run)
    except FolderRefused as e:
        raise ConvertError(_refusal(out, e.there, key)) from None


def _adopt(out: Path) -> None:
    """A conversion made before the converter went through `io.own` has its record but no marker: write the marker
    its record implies, so that it is what it is (the same conversion: cached; another: --force replaces it)."""
    record = json_object(out / RECORD)
    if (out / MARKER).exists() or not record or record.get("tool") != "vlpeft.blip.convert":
        return
    key = {"format": record.get("format"), "source_sha256": (record.get("source") or {}).get("sha256"),
           "options": record.get("options")}
    write_json(out / MARKER, {"what": WHAT, "config": key})


def _refusal(out: Path, there: dict | None, key: dict) -> str:
    if not there or there.get("what") != WHAT:
        holds = f"it holds a {there.get('what', '?')}" if there else f"no {MARKER} saying so"
        return (f"output folder {out} exists and is not a conversion made by `vlpeft convert-blip` ({holds}); "
                f"refusing to write into it. Choose a new or empty folder, or remove it.")
    old = there.get("config") or {}
    if old.get("source_sha256") != key["source_sha256"]:
        path = ((json_object(out / RECORD) or {}).get("source") or {}).get("path")  # the record names the file
        why = f"another source ({path or 'sha256 ' + str(old.get('source_sha256'))[:12]})"
    elif old.get("options") != key["options"]:
        why = "the same source with other options"
    else:
        why = f"the same source in another format ({old.get('format')}, now {FORMAT})"
    return (f"output folder {out} already holds a conversion of {why}; pass --force to replace it, or choose "
            f"another --out")


def _clear(out: Path) -> None:
    """Remove what a conversion writes besides its record (which `own` removed when it took the folder)."""
    for task in OUTPUTS:
        if (out / task).is_dir():
            shutil.rmtree(out / task)
    for tmp in out.glob(f".{RECORD}.*.tmp"):  # a record whose writer was killed before its rename
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# The record
def _source_info(src: Path, sha: str) -> dict:
    st = src.stat()
    return {"path": str(src), "name": src.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": sha, "published_at": CHECKPOINT_URLS.get(src.name)}


def _unmapped(keys) -> dict[str, int]:
    """Unmapped source keys by prefix: a top-level part none of the outputs takes → 'part.*', else the key."""
    used = {p for _, prefixes in OUTPUTS.values() for p in prefixes}
    counts = Counter()
    for k in keys:
        head = k.split(".")[0]
        counts[k if head in used else (head + ".*" if "." in k else head)] += 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------------------------------------
# Command line: `vlpeft convert-blip SRC --out DIR …` (wired by vlpeft.cli)
DESCRIPTION = f"""\
Convert BLIP's original pre-training checkpoint into transformers checkpoints for the study.

Download the pre-trained "BLIP w/ ViT-B" checkpoint published in BLIP's README ({README_URL}):
  {CHECKPOINT_URLS['model_base.pth']}
  (or, CapFilt-L: {CHECKPOINT_URLS['model_base_capfilt_large.pth']})

It writes OUT/caption (BlipForConditionalGeneration), OUT/vqa (BlipForQuestionAnswering, its answer decoder
initialised from the pre-trained text decoder, as BLIP's blip_vqa does) and OUT/conversion.json. With the
default --out this is what the `paper` preset's model_path expects: {DEFAULT_OUT}/{{task}}.
Nothing is downloaded: the tokenizer and image processor come from --processor."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command's arguments; also its --help description (where to download the checkpoint) if none is set."""
    if not parser.description:
        parser.description, parser.formatter_class = DESCRIPTION, argparse.RawDescriptionHelpFormatter
    parser.add_argument("src", help="the original checkpoint, e.g. model_base.pth")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--processor", default=DEFAULT_PROCESSOR,
                        help=f"a saved BlipProcessor folder or a cached hub name (default: {DEFAULT_PROCESSOR})")
    parser.add_argument("--image-size", type=int, help="input size (default: the checkpoint's, 224 for "
                        "model_base.pth); another size interpolates the position embeddings")
    parser.add_argument("--vision-heads", type=int, help="ViT attention heads (default: width / 64)")
    parser.add_argument("--text-heads", type=int, help="BERT attention heads (default: width / 64)")
    parser.add_argument("--force", action="store_true", help="redo a previous conversion in OUT")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load a checkpoint that holds Python objects besides tensors (trusted files only)")
    return parser


def main_cmd(args: argparse.Namespace) -> Path:
    """Run a parsed `convert-blip` command; a ConvertError propagates (vlpeft.cli prints user errors)."""
    out = convert_blip(args.src, args.out, processor=args.processor, image_size=args.image_size,
                       force=args.force, vision_heads=args.vision_heads, text_heads=args.text_heads,
                       allow_pickle=args.allow_pickle)
    rec = json.loads((out / RECORD).read_text())
    cfg = rec["config"]
    print(f"converted {rec['source']['name']} (sha256 {rec['source']['sha256'][:12]}…) → {out}/{{caption,vqa}}")
    print(f"  vision: {cfg['vision']['num_hidden_layers']} layers × {cfg['vision']['hidden_size']}, "
          f"{cfg['vision']['image_size']} px / patch {cfg['vision']['patch_size']}; text: "
          f"{cfg['text']['num_hidden_layers']} layers × {cfg['text']['hidden_size']}, "
          f"vocab {cfg['text']['vocab_size']}")
    print("  not used: " + ", ".join(f"{k}: {n} keys" for k, n in rec["unmapped_source"].items()))
    if rec.get("finetuned_on_vqa"):
        print(f"  WARNING: the source looks fine-tuned on VQA ({rec['finetuned_reason']})")
    return out
