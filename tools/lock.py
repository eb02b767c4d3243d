"""`make lock`'s second half: environment.yml from requirements.lock, so that conda users get the same versions.

    python tools/lock.py            # after pip-compile has written requirements.lock

The conda environment takes Python and Java from conda-forge and every Python package from pip at the lock's exact
versions (conda-forge does not carry every locked version, and pip resolves the same names the lock does). torch is
named without its local label (`+cpu`): the CPU build is not on PyPI, so conda users get PyPI's build of the same
version; `make setup` installs the lock itself, hashes checked.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vlpeft.io import locked_versions  # noqa: E402  (the one reader of the lock)

HEADER = """\
# conda env create -f environment.yml && conda activate vlpeft
# Written by `make lock` (tools/lock.py) from requirements.lock: the same versions (tests/test_setup.py checks it).
# `make setup` installs requirements.lock itself, every file's hash checked; this is the conda route to the same set.
name: vlpeft
channels:
  - conda-forge
dependencies:
  - python=3.11
  - openjdk            # Java: pycocoevalcap's PTB tokenizer (CIDEr) runs on the JVM
  - pip
  - pip:
"""


def main() -> None:
    pins = locked_versions(ROOT / "requirements.lock")
    lines = [f"      - {name}=={version.split('+')[0]}" for name, version in sorted(pins.items())]
    (ROOT / "environment.yml").write_text(HEADER + "\n".join(lines) + '\n      - -e ".[dev,slurm]"\n')
    print(f"environment.yml: {len(pins)} packages at the lock's versions")


if __name__ == "__main__":
    main()
