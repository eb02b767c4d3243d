"""Record the stand-ins' identity: each named world's pre-trained weight hashes, from its card, into
vlpeft/worlds/standins.json (what `make study` compares a machine's pre-training with).

    python tools/record_standins.py smoke embedded embedded-blip     # after pre-training them on the pinned path

Only a model pre-trained on the pinned numeric path, from its world's committed config, is recorded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vlpeft.config import PretrainConfig  # noqa: E402
from vlpeft.worlds.assets import STANDINS, get_world  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("worlds", nargs="+")
    a = p.parse_args()
    entries = json.loads(STANDINS.read_text())
    for name in a.worlds:
        w = get_world(name)
        card = json.loads((Path(w.model_root) / "card.json").read_text())
        expected = PretrainConfig(data_root=w.data_root, out=w.model_root, **w.pretrain).as_dict()
        made_on = card.get("provenance", {}).get("numerics", {})
        if card["config"] != expected or made_on.get("mode") != "pinned":
            sys.exit(f"{w.model_root}: not {name}'s committed config on the pinned path; pre-train it with "
                     f"`vlpeft study --preset ...` or `vlpeft pretrain` and its defaults")
        entries[name] = {"weights_sha256": card["weights_sha256"], "cpu": made_on["cpu"],
                         "zero_shot": card.get("zero_shot"), "git_commit": card["provenance"]["git_commit"]}
        print(f"{name}: {', '.join(f'{t} {h[:12]}' for t, h in card['weights_sha256'].items())}")
    STANDINS.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
