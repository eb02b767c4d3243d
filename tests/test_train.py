"""One fine-tuning run at smoke size: every method on both tasks, kill-and-resume, divergence, determinism,
and configs refused before any work."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import method_cases, smoke_config
from vlpeft.catalog import METHODS as CATALOGUE
from vlpeft.cli import to_args
from vlpeft.config import RunConfig
from vlpeft.errors import ConfigError
from vlpeft.tasks import TASKS
from vlpeft.train import run

METHODS = method_cases()   # every catalogue method at its smallest size


def smoke(models, world, out, **kw) -> RunConfig:
    return smoke_config(models, world, out, **kw)


@pytest.mark.parametrize("task", ["caption", "vqa"])
@pytest.mark.parametrize("method,size", METHODS)
def test_run_writes_a_complete_folder(models, tiny_world, tmp_path, task, method, size):
    m = run(smoke(models, tiny_world, tmp_path / "run", task=task, method=method, size=size), progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "curve.json", "metrics.json", "train.log", "method", "provenance.json"} <= files
    assert "checkpoint" not in files  # removed once complete
    assert m["status"] == "complete" and m["metric"] == ("cider" if task == "caption" else "vqa_acc")
    assert m["best_val"] is not None and m["test"] is not None and m["trainable_params"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == method
    curve = json.loads((tmp_path / "run" / "curve.json").read_text())
    steps = [c["step"] for c in curve]
    assert steps[0] == 0 and steps[-1] == m["steps"] and steps == sorted(set(steps)) and steps[1] == 2


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_a_vqa_run_records_what_the_question_alone_scores(models, tiny_world, tmp_path, task):
    """The fairness check's bar, in the run's own metrics: the question-type prior of the whole training split (not
    the run's share of it) on exactly the questions the run validates on; a caption run has none."""
    from vlpeft.data import Paths, question_prior
    from vlpeft.tasks import get_task
    cfg = smoke(models, tiny_world, tmp_path / "run", task=task, method="lora", size=2, data_ratio=0.5, eval_size=5)
    m = run(cfg, progress=False)
    if task == "caption":
        assert m["question_prior"] is None
        return
    train, val, _ = get_task("vqa").splits(Paths.of(cfg))
    assert m["question_prior"] == question_prior(train, val[:5])[0]
    assert m["question_prior"] != question_prior(train, val)[0] or len(val) == 5


def test_complete_run_is_not_redone(models, tiny_world, tmp_path):
    cfg = smoke(models, tiny_world, tmp_path / "r", task="vqa", method="lora", size=2)
    first = run(cfg, progress=False)
    mtime = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    assert run(cfg, progress=False) == first
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == mtime


def test_same_seed_same_metrics(models, tiny_world, tmp_path):
    a = run(smoke(models, tiny_world, tmp_path / "a", task="vqa", method="prefix", size=2), progress=False)
    b = run(smoke(models, tiny_world, tmp_path / "b", task="vqa", method="prefix", size=2), progress=False)
    keys = ("best_val", "test", "final_val", "steps", "trainable_params")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert (json.loads((tmp_path / "a" / "curve.json").read_text())
            == json.loads((tmp_path / "b" / "curve.json").read_text()))


@pytest.mark.parametrize("route", ["mplug", "blip"])
def test_killed_run_resumes_to_the_same_result(models, tiny_world, tmp_path, route):
    kw = dict(task="vqa", method="lora", size=4, epochs=3, eval_every=3, checkpoint_every=2, vqa_route=route)
    reference = run(smoke(models, tiny_world, tmp_path / "ref", **kw), progress=False)
    killed = smoke(models, tiny_world, tmp_path / "killed", fault="kill:5", **kw)
    code = ("import sys; sys.path.insert(0, 'tests'); from vlpeft.train import RunConfig, run; "
            f"run(RunConfig(**{json.dumps(vars(killed))!s}), progress=False)")
    proc = subprocess.run([sys.executable, "-c", code.replace("true", "True").replace("false", "False")])
    assert proc.returncode == -9  # SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["step"] == 4
    resumed = run(smoke(models, tiny_world, tmp_path / "killed", **kw), progress=False)
    for k in ("best_val", "best_step", "test", "final_val", "steps"):
        assert resumed[k] == reference[k], k
    assert (json.loads((tmp_path / "killed" / "curve.json").read_text())
            == json.loads((tmp_path / "ref" / "curve.json").read_text()))


def test_nan_loss_ends_as_diverged(models, tiny_world, tmp_path):
    m = run(smoke(models, tiny_world, tmp_path / "nan", task="vqa", method="lora", size=2, fault="nan:1"),
            progress=False)
    assert m["status"] == "diverged" and m["steps"] == 1 and m["error"] == "non-finite loss"
    assert "diverged" in (tmp_path / "nan" / "train.log").read_text()


@pytest.mark.parametrize("change,match", [
    (dict(data_ratio=0), r"data ratio must be in \(0, 1\]"),
    (dict(data_ratio=1.5), r"data ratio must be in \(0, 1\]"),
    (dict(task="retrieval"), "unknown task 'retrieval'; choose one of caption, vqa"),
    (dict(method="bitfit"), "unknown method 'bitfit'"),
    *[(dict(method=m.name, size=4), f"{m.title} has no size") for m in CATALOGUE.values() if not m.sized],
    (dict(data_root="/nonexistent/data"), "has no annotations/ folder"),
    (dict(batch_size=0), "batch_size must be positive"),
])
def test_bad_config_refused_before_any_work(models, tiny_world, tmp_path, change, match):
    cfg = smoke(models, tiny_world, tmp_path / "never", **(dict(task="vqa", method="lora", size=2) | change))
    with pytest.raises(ConfigError, match=match):
        run(cfg, progress=False)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("task,step,expected", [
    ("caption", 0, 0.0), ("caption", 5, 0.5), ("caption", 10, 1.0), ("caption", 100, 0.0),
    ("vqa", 0, 1e-6 / 1e-3), ("vqa", 100, 1e-6 / 1e-3),
])
def test_schedules(task, step, expected):
    cfg = RunConfig(task=task, lr=1e-3, warmup_steps=10, warmup_per_ratio=20, data_ratio=0.5)
    assert TASKS[task].lr_lambda(cfg, 100)(step) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("task,decoding", [("vqa", dict(vqa_beams=2, vqa_max_tokens=3, vqa_min_tokens=1)),
                                           ("caption", dict(caption_beams=1, caption_max_tokens=5))])
def test_a_run_decodes_as_its_config_declares(models, tiny_world, tmp_path, monkeypatch, task, decoding):
    """Every evaluation of a run (validation and test) generates with the decoding its config declares, and the
    config.json saved beside its numbers says so."""
    seen, generate = [], type(TASKS[task]).generate

    def spy(self, model, batch, tokenizer, **kw):
        seen.append({k: kw.get(k) for k in ("num_beams", "max_new_tokens", "min_new_tokens")})
        return generate(self, model, batch, tokenizer, **kw)
    monkeypatch.setattr(type(TASKS[task]), "generate", spy)
    m = run(smoke(models, tiny_world, tmp_path / "r", task=task, method="lora", size=2, **decoding), progress=False)
    prefix = f"{task}_"
    want = {"num_beams": decoding[prefix + "beams"], "max_new_tokens": decoding[prefix + "max_tokens"],
            "min_new_tokens": decoding.get(prefix + "min_tokens") or None}
    assert m["status"] == "complete" and len(seen) >= 3 and all(s == want for s in seen), seen
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert {k: saved[k] for k in decoding} == decoding


def test_data_parallel_under_accelerate_launch(models, tiny_world, tmp_path):
    """Two CPU processes (gloo) under `accelerate launch`: each trains on half of every global batch with the
    gradients averaged, so the result tracks a single-process run of the same config closely."""
    import shutil

    from safetensors.torch import load_file
    kw = dict(task="vqa", method="lora", size=4, epochs=2, eval_every=3)
    single = run(smoke(models, tiny_world, tmp_path / "one", **kw), progress=False)
    cfg = smoke(models, tiny_world, tmp_path / "two", **kw)
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    proc = subprocess.run([launcher, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vlpeft.cli", "train",
                           *to_args(cfg)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["status"] == "complete" and two["steps"] == single["steps"]
    w1, w2 = (load_file(tmp_path / d / "method" / "method.safetensors") for d in ("one", "two"))
    assert w1.keys() == w2.keys()
    moved = [(w1[k] - w2[k]).abs().max().item() for k in w1]
    assert max(moved) < 0.05  # same trajectory up to per-shard loss averaging


def test_the_route_is_saved_with_the_run_and_separates_run_ids(models, tiny_world, tmp_path):
    from vlpeft.rundir import run_id
    cfg = smoke(models, tiny_world, tmp_path / "r", task="vqa", method="lora", size=2, epochs=1)
    m = run(cfg, progress=False)                                   # "": the checkpoint's own (a random BLIP: blip)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["vqa_route"] == "blip"
    mplug = run(smoke(models, tiny_world, tmp_path / "m", task="vqa", method="lora", size=2, epochs=1,
                      vqa_route="mplug"), progress=False)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["vqa_route"] == "mplug"
    assert m["best_val"] is not None and mplug["best_val"] is not None
    ids = {run_id(RunConfig(task="vqa", vqa_route=r)) for r in ("mplug", "blip")}
    assert len(ids) == 2


def stand_in(models, tmp_path, route="mplug", recipe="mplug") -> Path:
    """A copy of the random checkpoints as pre-training leaves them: config.json's vqa_route, a card beside them."""
    import shutil
    root = shutil.copytree(models, tmp_path / "models")
    for task in ("caption", "vqa"):
        path = root / task / "config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"vqa_route": route}))
    (root / "card.json").write_text(json.dumps({"config": {"seed": 0, "recipe": recipe}, "steps": 20,
                                                "world": {"consistency": 1.0}}))
    return root


NOT_ITS_OWN = ("vlpeft: this VQA run's answer decoder reads the question only (route blip), not what its "
               "checkpoint's own route mplug reads ([image; question]): allowed, and recorded as vqa_route in "
               "metrics.json")


@pytest.mark.parametrize("task,asked,route,said", [
    ("vqa", "blip", "blip", NOT_ITS_OWN),    # BLIP's route on a checkpoint of mPLUG's recipe: allowed, said
    ("vqa", "", "mplug", None),              # the checkpoint's own
    ("vqa", "mplug", "mplug", None),         # asked, and its own
    ("caption", "", None, None),             # captioning has no route
])
def test_a_route_not_the_checkpoints_own_is_said_and_recorded(models, tiny_world, tmp_path, capsys, task, asked,
                                                                route, said):
    from vlpeft.study.results import load_runs
    root = stand_in(models, tmp_path)
    capsys.readouterr()
    m = run(smoke(root, tiny_world, tmp_path / "study" / "r", task=task, method="lora", size=2, epochs=1,
                  vqa_route=asked), progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "route" in line]
    assert lines == ([said] if said else [])
    assert (m["vqa_route"], m["recipe"]) == (route, "mplug")
    row = load_runs(tmp_path / "study").iloc[0]
    assert (row.vqa_route, row.recipe) == (route, "mplug")                       # the tidy table


@pytest.mark.parametrize("where", ["checkpoint", "run"])
@pytest.mark.parametrize("load", ["base_model", "trained_model", "identity_check", "count_check", "show_method"])
def test_an_unknown_route_is_refused_at_load(models, tiny_world, tmp_path, where, load):
    """Wherever a model is loaded without `validate`: a route string the tasks do not know, from the checkpoint's
    config.json or from an unchecked run config, is refused in one line (never read as mplug)."""
    from vlpeft import nb, train
    root = stand_in(models, tmp_path, route="mplug2" if where == "checkpoint" else "mplug")
    cfg = smoke(root, tiny_world, tmp_path / "r", task="vqa", method="lora", size=2,
                vqa_route="" if where == "checkpoint" else "both")
    call = {"base_model": train.base_model, "trained_model": lambda c: train.trained_model(c, c.out_dir)}.get(
        load) or getattr(nb, load)
    with pytest.raises(ConfigError, match=f"unknown VQA route '{'mplug2' if where == 'checkpoint' else 'both'}' in "
                                          f"the model's config"):
        call(cfg)


# ---------------------------------------------------------------------------------------------------------
# The compiled training step (vlpeft/compiling.py): the same losses as eager, a plan in words, a clean fall-back
COMPILE_TOLERANCE = 1e-4   # relative, per logged loss: float re-association inside fused kernels, nothing more


def test_a_compiled_run_has_the_eager_runs_losses(models, tiny_world, tmp_path):
    # batches of one size (4 divides the split): one dynamic-shape recompile, not a second for a short last batch
    kw = dict(task="vqa", method="lora", size=4, epochs=1, batch_size=4, eval_every=2, vqa_route="mplug")
    eager = run(smoke(models, tiny_world, tmp_path / "eager", **kw), progress=False)
    compiled = run(smoke(models, tiny_world, tmp_path / "compiled", compile="on",
                         compile_cache=str(tmp_path / "inductor"), **kw), progress=False)
    assert (eager["compiled"], compiled["compiled"]) == (False, True), compiled["compile"]
    curves = [json.loads((tmp_path / name / "curve.json").read_text()) for name in ("eager", "compiled")]
    losses = [[c["loss"] for c in curve[1:]] for curve in curves]
    assert len(losses[0]) >= 2 and all(abs(a - b) <= COMPILE_TOLERANCE * abs(a) for a, b in zip(*losses)), losses
    assert any((tmp_path / "inductor").iterdir())  # the kernels went to the run's cache folder


@pytest.mark.parametrize("compile_,steps,compiler,expected", [
    ("off", 10_000, True, "off"), ("on", 10, True, "compiled"), ("auto", 10_000, True, "compiled"),
    ("auto", 10, True, "eager: 10 steps, under the"), ("on", 10_000, False, "eager: no C++ compiler"),
])
def test_the_compile_plan_says_why(monkeypatch, compile_, steps, compiler, expected):
    import torch

    from vlpeft import compiling
    if not compiler:
        monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    on, why = compiling.plan(RunConfig(compile=compile_), steps, torch.device("cpu"))
    assert why.startswith(expected) and on == (expected == "compiled")


def test_a_compile_failure_falls_back_to_eager_with_one_line(monkeypatch, capsys):
    import torch

    from vlpeft import compiling

    def broken(module):
        def call(batch):
            raise torch._dynamo.exc.BackendCompilerFailed(broken, RuntimeError("g++: not found"), None)
        return call
    monkeypatch.setattr(torch, "compile", broken)
    loss = compiling.CompiledLoss(torch.nn.Linear(2, 1))
    x = torch.ones(1, 2)
    assert torch.equal(loss(x), loss.eager(x)) and loss.failed is not None
    assert "continues eager" in capsys.readouterr().err


def test_a_backward_compile_failure_falls_back_and_recomputes_the_step(monkeypatch, capsys):
    import torch

    from vlpeft import compiling

    class BrokenBackward(torch.autograd.Function):   # what inductor failing on the backward graph looks like
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            raise torch._dynamo.exc.BackendCompilerFailed(BrokenBackward, RuntimeError("bw compiler"), None)
    monkeypatch.setattr(torch, "compile", lambda module: lambda batch: BrokenBackward.apply(module(batch)).sum())
    module = torch.nn.Linear(2, 1)
    loss_module = compiling.CompiledLoss(lambda x: module(x).sum())
    x = torch.ones(3, 2)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed) as raised:
        loss_module(x).backward()
    assert compiling.fall_back(loss_module, raised.value) and loss_module.failed is not None
    loss_module(x).backward()                                              # the step again, eager
    assert torch.equal(module.weight.grad, torch.full((1, 2), 3.0))
    assert not compiling.fall_back(loss_module, ValueError("a model's own error"))  # never a second time
    assert "continues eager" in capsys.readouterr().err


def test_a_models_own_error_under_compile_is_raised_as_eager_raises_it(capsys):
    import torch

    from vlpeft import compiling
    loss_module = compiling.CompiledLoss(torch.nn.Linear(4, 1))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        loss_module(torch.ones(1, 5))                                       # a shape error, not the compiler's
    assert loss_module.failed is None and "torch.compile failed" not in capsys.readouterr().err
