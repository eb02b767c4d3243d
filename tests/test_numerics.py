"""The pinned numeric path (vlpeft/numerics.py): the same config gives the same weights whatever the process may
use (one CPU or all) and whatever instruction-set variables the user's shell holds; the choice is saved, enters a
run id only when it is not the default, and is checked like every other field; the stand-in's identity line."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import smoke_config
from vlpeft import numerics
from vlpeft.config import RunConfig
from vlpeft.errors import ConfigError
from vlpeft.io import lock_record
from vlpeft.rundir import config_dict, run_id
from vlpeft.train import validate
from vlpeft.worlds import assets

ROOT = Path(__file__).resolve().parent.parent
SHELL_CAPS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", numerics.ENV)
PRETRAIN = """
import sys, vlpeft
from vlpeft.config import PretrainConfig
from vlpeft.worlds.assets import SMOKE_SPEC
from vlpeft.worlds.pretrain import pretrain
pretrain(PretrainConfig(data_root=sys.argv[1], out=sys.argv[2], steps=3, batch_size=8, warmup=2, zero_shot_eval=0,
                        spec=SMOKE_SPEC, numerics=sys.argv[3]), progress=False)
"""

# (what the process is given, the shell's variables, the CPUs it may use, the numeric path it asks for)
PROCESSES = [
    ("all CPUs, a clean shell", {}, None, "pinned"),
    ("one CPU, a shell asking for AVX-512 everywhere",
     {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, {0}, "pinned"),
    ("one CPU, a shell asking for unvectorised kernels", {"ATEN_CPU_CAPABILITY": "default"}, {0}, "pinned"),
]
CONTROL = ("native, unvectorised kernels: another path", {"ATEN_CPU_CAPABILITY": "default"}, None, "native")


def pretrain_in_a_process(world, out: Path, shell: dict, cpus, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SHELL_CAPS} | shell
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    done = subprocess.run([sys.executable, "-c", PRETRAIN, str(world), str(out), mode], env=env, cwd=ROOT,
                          capture_output=True, text=True, preexec_fn=pre, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((out / "card.json").read_text())
    for task, digest in card["weights_sha256"].items():   # the card's hash is the file's
        assert hashlib.sha256((out / task / "model.safetensors").read_bytes()).hexdigest() == digest
    return card


def test_pretraining_gives_the_same_weights_whatever_the_process_may_use(tmp_path, tiny_world):
    cards = [pretrain_in_a_process(tiny_world, tmp_path / f"m{i}", shell, cpus, mode)
             for i, (_, shell, cpus, mode) in enumerate(PROCESSES)]
    for (what, *_), card in zip(PROCESSES, cards):
        assert card["weights_sha256"] == cards[0]["weights_sha256"], what
        made_on = card["provenance"]["numerics"]
        assert made_on["mode"] == "pinned" and made_on["threads"] == numerics.THREADS, what
        if numerics.has_avx2():
            assert made_on["cpu_capability"] == "AVX2", what
    if numerics.has_avx2():  # the check can tell: another numeric path gives other weights on this machine
        _, shell, cpus, mode = CONTROL
        other = pretrain_in_a_process(tiny_world, tmp_path / "control", shell, cpus, mode)
        made_on = other["provenance"]["numerics"]
        assert made_on["mode"] == "native" and made_on["cpu_capability"] == "DEFAULT"
        assert other["weights_sha256"] != cards[0]["weights_sha256"]


# (fields, the problem's words or None)
FIELDS = [
    ({}, None),
    ({"threads": 1}, None),
    ({"threads": 4}, "pinned numeric path"),
    ({"threads": 4, "numerics": "native"}, None),
    ({"numerics": "fast"}, "unknown --numerics 'fast'"),
]


@pytest.mark.parametrize("fields,problem", FIELDS, ids=[json.dumps(f) for f, _ in FIELDS])
def test_numerics_fields_are_checked(tmp_path, models, tiny_world, fields, problem):
    cfg = dataclasses.replace(smoke_config(models, tiny_world, tmp_path / "run"), **fields)
    if problem is None:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match=problem):
            validate(cfg)


def test_the_path_enters_a_run_id_only_away_from_its_default():
    """Run ids from before the path was pinned stand (pinned, the default, is left out); native gets its own."""
    cfg = RunConfig()
    without = {k: v for k, v in config_dict(cfg).items() if k != "numerics"}
    from vlpeft.rundir import run_hash
    assert run_hash(config_dict(cfg)) == run_hash(without)
    assert run_id(dataclasses.replace(cfg, numerics="native")) != run_id(cfg)


def test_a_run_records_its_numeric_path_and_environment(tmp_path, models, tiny_world):
    from vlpeft.train import run
    cfg = dataclasses.replace(smoke_config(models, tiny_world, tmp_path / "run"), steps=2, eval_every=0)
    metrics = run(cfg, progress=False)
    prov = metrics["provenance"]
    assert prov["numerics"]["mode"] == "pinned" and prov["numerics"]["threads"] == numerics.THREADS
    assert prov["numerics"]["caps"] == numerics.CAPS
    assert prov["lock"] == lock_record() and prov["lock"]["sha256"]
    saved = json.loads((tmp_path / "run" / "provenance.json").read_text())["runs"][-1]
    assert saved["numerics"] == prov["numerics"]


def test_this_environment_is_the_lock():
    """`make setup` installed requirements.lock: every locked package at its locked version."""
    record = lock_record()
    assert record is not None and record["matches"], f"installed packages differ from the lock: {record['differs']}"


def test_an_unknown_path_is_refused_in_one_line():
    env = os.environ | {numerics.ENV: "fast"}
    done = subprocess.run([sys.executable, "-m", "vlpeft.cli", "sweep", "--preset", "smoke", "--dry-run"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "NUMERICS='fast'" in done.stderr and "Traceback" not in done.stderr


def card(folder: Path, hashes: dict, mode: str = "pinned") -> None:
    folder.mkdir(parents=True)
    made_on = {"numerics": {"mode": mode}}
    (folder / "card.json").write_text(json.dumps({"weights_sha256": hashes, "provenance": made_on}))


# (the model's hashes, its numeric path, the committed hashes or None, what the line says)
IDENTITY = [
    ({"caption": "a" * 64, "vqa": "b" * 64}, "pinned", {"caption": "a" * 64, "vqa": "b" * 64}, "re-made the committed"),
    ({"caption": "a" * 64, "vqa": "c" * 64}, "pinned", {"caption": "a" * 64, "vqa": "b" * 64}, "NOT the committed"),
    ({"caption": "a" * 64, "vqa": "c" * 64}, "native", {"caption": "a" * 64, "vqa": "b" * 64}, "native numeric path"),
    ({"caption": "a" * 64, "vqa": "b" * 64}, "pinned", None, "no committed hash"),
]


@pytest.mark.parametrize("made,mode,committed,says", IDENTITY, ids=[c[3] for c in IDENTITY])
def test_the_stand_in_says_whether_it_is_the_committed_one(tmp_path, monkeypatch, made, mode, committed, says):
    standins = tmp_path / "standins.json"
    standins.write_text(json.dumps({"smoke": {"weights_sha256": committed, "cpu": "AMD EPYC"}} if committed else {}))
    monkeypatch.setattr(assets, "STANDINS", standins)
    card(tmp_path / "model", made, mode)
    line = assets.identity("smoke", str(tmp_path / "model"))
    assert says in line and line.count("\n") == 0
    assert assets.identity("real") is None and assets.identity("smoke", str(tmp_path / "none")) is None


def test_the_committed_stand_ins_are_complete_hashes():
    for world, entry in json.loads(assets.STANDINS.read_text()).items():
        assert assets.get_world(world).synthetic
        assert set(entry["weights_sha256"]) == {"caption", "vqa"}
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in entry["weights_sha256"].values())


def test_this_machine_re_makes_the_committed_smoke_stand_in(tmp_path):
    """The cross-machine check in the suite: the smoke world's pre-training, from its committed config on the pinned
    path, gives the weights committed in standins.json (made on another machine, or on this one earlier)."""
    made = assets.prepare("smoke", str(tmp_path / "data"), str(tmp_path / "model"), progress=False)
    hashes = json.loads((Path(made.model_path.format(task="caption")).parent / "card.json").read_text())
    committed = json.loads(assets.STANDINS.read_text())["smoke"]["weights_sha256"]
    assert hashes["weights_sha256"] == committed
