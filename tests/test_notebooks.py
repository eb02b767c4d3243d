"""The read-along notebooks as a reader sees them: executed with the network blocked, rendered to HTML, with no
CDN script and no warning in their outputs; the checks they show are asserted, not only printed."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from vlpeft import nb
from vlpeft.methods import adapter

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
CDN = re.compile(r"cdn\.|jsdelivr|unpkg|cdnjs|<script[^>]+src=\"?https?:", re.I)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """04_lora executed by papermill on the smoke world, with every proxy pointing nowhere."""
    import os

    import papermill as pm
    tmp = tmp_path_factory.mktemp("nb")
    saved = {k: os.environ.get(k) for k in BLOCKED}
    os.environ.update(BLOCKED)
    try:
        pm.execute_notebook(str(ROOT / "notebooks" / "04_lora.ipynb"), str(tmp / "04_lora.ipynb"), cwd=str(tmp),
                            kernel_name="python3", progress_bar=False, parameters={"progress": False})
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    import nbformat
    return nbformat.read(tmp / "04_lora.ipynb", as_version=4)


def test_the_executed_notebook_renders_offline_and_quietly(executed):
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(executed)   # the outputs, not the page chrome
    assert not CDN.search(body), CDN.search(body)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], "stderr in the outputs"
    assert not [o for o in outputs if o.output_type == "error"]
    charts = [o for o in outputs if "image/svg+xml" in o.get("data", {})]          # the charts: static SVG …
    assert charts and all("image/png" in o.data for o in charts)  # … and PNG, which untrusted JupyterLab shows
    assert "image/svg+xml" in body                                                # the HTML shows the SVG
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "Warning" not in text and "warning" not in text


def test_the_notebook_shows_its_checks_and_its_results(executed):
    outputs = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                        + str(o.get("data", {}).get("text/html", "")) + str(o.get("data", {}).get("text/markdown", ""))
                        for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "max |Δlogits| at initialisation = 0.0" in outputs                    # LoRA starts as the base model
    assert "BLIP-base shape" in outputs and "L·r·" in outputs                     # the count and its formula
    assert "lora_B(lora_A(dropout(x))) * scaling" in outputs                      # the code under the equation
    assert "wiring check" in outputs                                               # the smoke banner
    assert "references" in outputs and "generated" in outputs                     # what the run produced


def test_the_on_screen_checks_assert_what_they_show(tmp_path, monkeypatch, models, tiny_world):
    from helpers import smoke_config
    cfg = smoke_config(models, tiny_world, tmp_path / "run", task="caption", method="serial_adapter", size=4)
    assert nb.identity_check(cfg) == 0.0
    counts = nb.count_check(cfg)
    assert counts.loc["this model", "trainable"] == counts.loc["this model", "= formula"]
    assert counts.loc["BLIP-base shape", "trainable"] == counts.loc["BLIP-base shape", "= formula"]

    original = adapter.Bottleneck.__init__

    def not_zero(self, d, hidden):  # an adapter whose output projection does not start at zero
        original(self, d, hidden)
        torch.nn.init.normal_(self.adapter_up.weight)
    monkeypatch.setattr(adapter.Bottleneck, "__init__", not_zero)
    with pytest.raises(AssertionError, match="must start equal to the base model"):
        nb.identity_check(cfg)
    monkeypatch.undo()

    import vlpeft.methods as methods
    real = methods.closed_form_count
    monkeypatch.setattr(methods, "closed_form_count", lambda *a, **k: (real(*a, **k)[0] + 1, "off by one"))
    with pytest.raises(AssertionError, match="the formula gives"):
        nb.count_check(copy.copy(cfg))


def test_the_committed_notebooks_are_the_generators_and_open_unmodified():
    """Each committed notebook is what tools/make_notebooks.py writes (no drift from the catalogue or the tiny
    preset), and its metadata is what JupyterLab writes when the kernel connects, so opening it does not mark it
    modified (checked by hand in JupyterLab; here against the installed ipykernel)."""
    import importlib.util

    import nbformat
    from ipykernel.ipkernel import IPythonKernel
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    wanted = {"00_pretrain": gen.pretrain_notebook(), "99_analysis": gen.analysis_notebook(),
              **{m.notebook: gen.method_notebook(m.name) for m in gen.METHODS.values()}}
    assert sorted(wanted) == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    def but_version(info):  # the Python patch version is the generating machine's (3.11.7 on ours)
        return {k: v for k, v in info.items() if k != "version"}
    for name, made in wanted.items():
        committed = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
        info = nbformat.reads(committed, as_version=4).metadata.language_info
        made.metadata.language_info.version = info.get("version")
        assert committed == nbformat.writes(made) + "\n", f"{name}: run `python tools/make_notebooks.py`"
        assert but_version(info) == but_version(IPythonKernel.language_info) and info.version.startswith("3.")


@pytest.mark.parametrize("helper", ["identity_check", "count_check", "show_method"])
@pytest.mark.parametrize("route", ["mplug", "blip"])
def test_the_on_screen_checks_load_the_model_on_the_runs_route(monkeypatch, tmp_path, models, tiny_world, helper,
                                                               route):
    """Each check injects the method into the checkpoint on the run's VQA route (a random BLIP's own is blip), as
    the run trains it (`train.base_model`)."""
    import vlpeft.methods as methods
    from helpers import smoke_config
    real, routes = methods.apply_method, []

    def spy(model, *args, **kwargs):
        routes.append(getattr(model.config, "vqa_route", None))
        return real(model, *args, **kwargs)
    monkeypatch.setattr(methods, "apply_method", spy)
    cfg = smoke_config(models, tiny_world, tmp_path / "run", task="vqa", method="lora", size=2, vqa_route=route)
    getattr(nb, helper)(cfg)
    assert routes[0] == route        # count_check's second model is the BLIP-base shape, which has no route
