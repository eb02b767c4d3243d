"""results → claims → figures → report on synthetic run folders (no training, a few seconds).

A scenario is a score function per task, `score(method, size_index, classifier, data_ratio)`, laid out on the
tiny preset's design (3 data ratios at the middle size with and without "+ classifier", 3 sizes at the full
data, full fine-tuning at every ratio, 3 seeds) with a small seeded noise. `paper_*` behave as the paper says,
so every claim must come out supported; tests/test_claims.py holds the claim rules' table of cases.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest

from helpers import METRIC, ONE_DRAW_STUDIES, SIZES, dial_frame, paper_caption, paper_vqa  # noqa: F401
from helpers import frame as scenario
from vlpeft.catalog import METHODS, family_of
from vlpeft.study import claims, figures, report, results
from vlpeft.study.claims.judges import KINDS
from vlpeft.study.results import load_curves, load_runs, summarize

SEEDS = (0, 1, 2)


def frame(**kw) -> pd.DataFrame:
    """The paper scenario over three seeds, as load_runs would give it (every run complete)."""
    return scenario(**({"seeds": SEEDS, "noise": 0.004, "seed_sd": 0.0} | kw))


def run_id(method, size, cls, ratio, seed) -> str:  # as presets.Cell.run_id
    return f"{method}{'+cls' if cls else ''}_s{size}_r{ratio:g}_seed{seed}"


def write_run(study: Path, row: dict, metrics: bool = True, curve_len: int = 4) -> Path:
    """One run folder as train.run writes it: config.json, curve.json, metrics.json last."""
    keys = ["task", "method", "size", "tune_classifier", "data_ratio", "seed"]
    d = study / row["task"] / row["method"] / run_id(*(row[k] for k in keys[1:]))
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({k: row[k] for k in keys} | {"steps": 120, "lr": 1e-3}))
    best = row.get("best_val")
    curve = [{"step": 40 * k, "val": (best or 0.5) * (0.6 + 0.4 * k / (curve_len - 1)), "loss": 2.0 / (k + 1),
              "lr": 1e-3} for k in range(curve_len)]
    (d / "curve.json").write_text(json.dumps(curve))
    if metrics:
        all_params = 2_000_000
        (d / "metrics.json").write_text(json.dumps({k: row[k] for k in keys} | {
            "status": row.get("status", "complete"), "family": family_of(row["method"]), "metric": METRIC[row["task"]],
            "best_val": best, "best_step": 120, "test": best, "final_val": best, "zero_shot_val": 0.1,
            "trainable_params": int(row["trainable_params"]), "all_params": all_params,
            "trainable_pct": 100 * row["trainable_params"] / all_params, "n_train": int(row["n_train"]),
            "steps": 120, "wall_s": 3.5, "samples_per_s": 900.0, "error": row.get("error")}))
    return d


def bad_runs(study: Path) -> dict[str, Path]:
    """One run folder in each state that is not complete."""
    row = {"task": "vqa", "method": "lora", "size": 8, "tune_classifier": False, "seed": 5,
           "trainable_params": 24000, "n_train": 1000}
    dirs = {
        "diverged": write_run(study, row | {"data_ratio": 0.5, "status": "diverged", "best_val": None,
                                            "error": "non-finite loss"}),
        "corrupt": write_run(study, row | {"data_ratio": 0.6}),
        "incomplete": write_run(study, row | {"data_ratio": 0.7}, metrics=False),
        "failed": write_run(study, row | {"data_ratio": 0.8}, metrics=False),
    }
    (dirs["corrupt"] / "metrics.json").write_text('{"status": "complete", "best_val": 0.')  # cut short
    (dirs["failed"] / "failed.json").write_text(json.dumps({"error": "PapermillExecutionError: CUDA OOM"}))
    return dirs


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs") / "synthetic"
    for row in frame().to_dict("records"):
        write_run(root, row)
    bad_runs(root)
    return root


@pytest.fixture(scope="module")
def runs(study) -> pd.DataFrame:
    return load_runs(study)


# ---------------------------------------------------------------------------------------------------------
# results
def test_load_runs_rows_statuses_and_cost(runs):
    expected = frame()
    assert len(runs) == len(expected) + 4
    assert runs.status.value_counts().to_dict() == {"complete": len(expected), "diverged": 1, "corrupt": 1,
                                                    "incomplete": 1, "failed": 1}
    assert set(runs.study) == {"synthetic"}
    done = runs[runs.status == "complete"]
    assert (done.cost == done.n_train * done.trainable_params).all()
    assert set(done.variant) == {"full"} | set(SIZES) | {f"{m}+cls" for m in SIZES}
    assert set(done.family) == {"full", "embedding", "layer"}
    merged = done.merge(expected, on=["task", "method", "size", "tune_classifier", "data_ratio", "seed"])
    assert len(merged) == len(expected) and np.allclose(merged.best_val_x, merged.best_val_y)
    assert np.allclose(merged.cost_x, merged.cost_y)


@pytest.mark.parametrize("status, error", [("diverged", "non-finite loss"), ("corrupt", "metrics.json"),
                                           ("incomplete", None), ("failed", "CUDA OOM")])
def test_runs_that_are_not_complete_keep_their_keys_and_reason(runs, status, error):
    row = runs[runs.status == status].iloc[0]
    assert (row["task"], row["method"], row["size"], row["seed"]) == ("vqa", "lora", 8, 5)
    assert (error is None and pd.isna(row.error)) or error in row.error
    assert Path(row.run_dir).is_dir()


def test_complete_and_summarize_use_complete_runs_only(runs):
    assert len(results.complete(runs)) == len(frame())
    s = summarize(runs)
    assert (s.n == len(SEEDS)).all() and s["std"].notna().all()
    cell = s[(s.task == "caption") & (s.variant == "prompt+cls") & (s.data_ratio == 1.0)].iloc[0]
    assert cell["mean"] == pytest.approx(paper_caption("prompt", 1, True, 1.0), abs=0.02)


def test_family_comes_from_the_catalogue(runs):
    done = runs[runs.status == "complete"]
    assert (done.family == [METHODS[m].family for m in done.method]).all()


def test_load_curves_is_a_long_table_with_run_keys(study, runs):
    curves = load_curves(study)
    assert {"step", "val", "loss", "lr", "task", "variant", "size", "data_ratio", "seed", "status"} <= set(curves)
    assert len(curves) == 4 * len(runs)  # every folder written here has a 4-point curve
    one = curves[curves.run_dir == runs.run_dir.iloc[0]]
    assert one.step.tolist() == [0, 40, 80, 120]


def test_a_malformed_config_or_curve_does_not_sink_the_load(tmp_path):
    row = frame(tasks=("caption",)).iloc[0].to_dict()
    d = write_run(tmp_path / "s", row)
    (d / "curve.json").write_text("[{")
    other = write_run(tmp_path / "s", row | {"seed": 9})
    (other / "config.json").write_text("not json")
    df = load_runs(tmp_path / "s")
    assert sorted(df.status) == ["complete", "corrupt"]
    assert df[df.status == "corrupt"].seed.iloc[0] == 9  # keys recovered from metrics.json
    with pytest.warns(UserWarning, match="curve"):
        assert len(load_curves(tmp_path / "s")) == 4  # the other run's curve still loads


def test_a_missing_study_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such study"):
        load_runs(tmp_path / "typo")


@pytest.mark.parametrize("state, card, want", [
    ("incomplete", True, (2, 6000, "mplug")),    # still running: listed with the draw its config names
    ("failed", True, (2, 6000, "mplug")),        # and a failed one, so `compare` pairs it with its cell
    ("failed", False, (None, None, None)),       # the stand-in is not on this machine: blank, not guessed
])
def test_a_run_without_metrics_is_listed_with_its_stand_in(tmp_path, state, card, want):
    model = tmp_path / "checkpoints" / "mplug-L6000-p2"
    if card:
        model.mkdir(parents=True)
        (model / "card.json").write_text(json.dumps({"config": {"seed": 2, "recipe": "mplug"}, "steps": 6000,
                                                     "world": {"consistency": 1.0}}))
    row = {"task": "vqa", "method": "lora", "size": 8, "tune_classifier": False, "data_ratio": 1.0, "seed": 2}
    d = write_run(tmp_path / "s", row, metrics=False)
    (d / "config.json").write_text(json.dumps(row | {"model_path": f"{model}/{{task}}"}))
    if state == "failed":
        (d / "failed.json").write_text(json.dumps({"error": "PapermillExecutionError: killed"}))
    got = load_runs(tmp_path / "s").iloc[0]
    assert got.status == state
    assert tuple(None if pd.isna(got[k]) else got[k] for k in ("pretrain_seed", "pretrain_steps", "recipe")) == want


# ---------------------------------------------------------------------------------------------------------
# claims: the full rule tables live in tests/test_claims.py; here the study read from disk
def test_the_paper_scenario_supports_every_claim(runs):
    table = claims.evaluate_claims(runs)
    assert table.claim.tolist() == list(range(1, 12))
    assert set(table.columns) >= {"claim", "text", "statistic", "value", "ci_low", "ci_high", "n", "verdict",
                                  "evidence"}
    assert table.verdict.tolist() == ["supported"] * 11, table[["claim", "verdict", "evidence"]].to_string()
    stat = table[table.claim <= 10]  # claim 11 is a deterministic check: no interval
    assert (stat.ci_low <= stat.value).all() and (stat.value <= stat.ci_high).all()
    assert (stat.n == len(SEEDS)).all()  # n counts seeds (the unit of replication), not runs


# ---------------------------------------------------------------------------------------------------------
# figures and the report
BUILDERS = [("data_ratio", "caption"), ("data_ratio", "vqa"), ("param_size", "caption"), ("param_size", "vqa"),
            ("cost", "caption"), ("cost", "vqa"), ("curves", "caption"), ("curves", "vqa")]


@pytest.mark.parametrize("name, task", BUILDERS)
def test_figures_build_valid_charts(study, runs, name, task):
    chart = {"data_ratio": figures.fig_data_ratio, "param_size": figures.fig_param_size, "cost": figures.fig_cost,
             "curves": figures.fig_curves}[name](load_curves(study) if name == "curves" else runs, task)
    assert isinstance(chart, alt.TopLevelMixin)
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    assert "Fig." in json.dumps(spec["title"])


def test_figures_refuse_a_task_without_runs(runs):
    with pytest.raises(ValueError, match="no complete"):
        figures.fig_data_ratio(runs[runs.task == "caption"], "vqa")


def test_save_writes_png_and_svg(runs, tmp_path):
    paths = figures.save(figures.fig_param_size(runs, "vqa"), tmp_path, "vqa_param_size")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()[:500]


def glance(page: str) -> str:
    """The page's at-a-glance verdict table."""
    return page.split("The answer at a glance</h2>")[1].split("</table>")[0]


def test_write_report_is_offline_and_follows_the_paper(study, tmp_path):
    out = report.write_report(study, tmp_path / "report", formats=("svg",))
    page = (out / "index.html").read_text()
    assert "<script" not in page
    for attr in ("src", "href"):
        for quote in "'\"":
            assert f"{attr}={quote}http" not in page
    assert glance(page).count(">supported</td>") == 11
    # one section per finding of §V, in the paper's order, each with its figures and its claims' forest plots
    keys = [s.key for s in report.SECTIONS if s.key != "dial"]
    assert [page.index(f"id='{k}'") for k in keys] == sorted(page.index(f"id='{k}'") for k in keys)
    svgs = sorted(p.stem for p in (out / "figures").glob("*.svg"))
    assert svgs == sorted([f for s in report.SECTIONS if s.key != "dial" for f in s.figures]
                          + [f"claim_{c}" for c in range(1, 11)])      # claim 11 is deterministic: no forest
    assert page.count("data:image/svg+xml;base64,") == len(svgs)
    assert "CUDA OOM" in page and "non-finite loss" in page  # the failures list
    for name in ("runs.csv", "curves.csv", "claims.csv", "claims.md", "claims_per_method.csv", "claims_parts.csv"):
        assert (out / name).stat().st_size > 0
    assert len(pd.read_csv(out / "claims.csv")) == 11
    assert " pt" in page and "seeds to decide" in page and "depends on the draw" not in page  # points; one model
    assert "TOST" in page  # the verdict rules are rendered


def test_the_forest_plots_draw_what_the_claims_judged(runs):
    """Every part a forest plot draws is the claim's own number: claim 4's parts are the per-method estimates,
    intervals and marks of claim 4; the Bonferroni interval contains the 90 % one; 'yes' parts' intervals lie in
    the shaded region."""
    parts, pm = claims.parts_table(runs), claims.per_method_table(runs)
    four = parts[parts.claim == 4].set_index("part")
    mine = pm[pm.claim == 4].set_index("method")
    for col in ("estimate", "ci_low", "ci_high", "mark"):
        assert four[col].to_dict() == mine[col].to_dict(), col
    judged = parts[parts.judge != ""]
    assert (judged.bonferroni_low <= judged.ci_low + 1e-12).all()
    assert (judged.ci_high <= judged.bonferroni_high + 1e-12).all()
    for r in judged[judged["mark"] == "yes"].itertuples():
        lo, hi = KINDS[r.judge].yes_region(r.margin, -1e9, 1e9)
        assert lo < r.ci_low and r.ci_high < hi, r
    spec = figures.fig_forest(parts, 4, "supported").to_dict()
    assert "Claim 4: supported" in json.dumps(spec["title"])


def test_a_study_of_several_draws_shows_each_draws_estimate(tmp_path):
    """Draws as the unit: the verdict table counts draws and says whether each answer depends on the draw; each
    forest plot has a row per draw under every part, at that draw's own estimate (the units table's), coloured by
    the side of the part's bound it lies on; claims_units.csv holds them."""
    from vlpeft.study.report.sections import forest
    runs = scenario(seeds=(0,), pretrain_seeds=(0, 1, 2))
    study = report.Study("draws", "memory", runs.assign(run_dir=[f"r{i}" for i in range(len(runs))], error=""),
                         pd.DataFrame(columns=["run_dir"]))
    assert study.unit == "draw" and set(study.units.unit) == {"draw 0", "draw 1", "draw 2"}
    out = report.write_report(study, tmp_path / "report", formats=("svg",))
    page = (out / "index.html").read_text()
    assert "<th>n (draws)</th><th>draws to decide</th><th>depends on the draw</th>" in glance(page)
    assert "t intervals over pre-training draws (3:" in page
    assert pd.read_csv(out / "claims_units.csv").equals(pd.read_csv(io.StringIO(study.units.to_csv(index=False))))
    spec = forest(study, 4).to_dict()
    rings = [layer for layer in spec["layer"] if layer.get("mark", {}).get("filled") is False]
    assert len(rings) == 1
    drawn = spec["datasets"][rings[0]["data"]["name"]]
    mine = study.units[study.units.claim == 4]
    assert sorted((r["part"], r["unit"], round(r["estimate"], 9)) for r in drawn) == sorted(
        (r.part, r.unit, round(r.estimate, 9)) for r in mine.itertuples())
    assert {r["side"] for r in drawn} == {"#2e7d32"}    # every draw of the paper scenario on the yes side
    legend = rings[0]["encoding"]["color"]     # the rings have their own legend, naming only the sides drawn
    assert legend["title"] == "a draw's estimate" and legend["scale"] == {
        "domain": ["on the yes side of the bound"], "range": ["#2e7d32"]}
    assert spec["resolve"] == {"scale": {"color": "independent"}}
    reported = set(study.parts[study.parts.judge == ""].part)
    for claim in study.parts[study.parts.judge == ""].claim.unique():   # parts reported beside a claim: grey rings
        spec = forest(study, claim).to_dict()
        ring = next(layer for layer in spec["layer"] if layer.get("mark", {}).get("filled") is False)
        rows = spec["datasets"][ring["data"]["name"]]
        assert {r["side"] for r in rows if r["part"] in reported} == {"#9e9e9e"}
        assert "#9e9e9e" not in {r["side"] for r in rows if r["part"] not in reported}
    seeds = report.Study("seeds", "memory", scenario(), pd.DataFrame(columns=["run_dir"]))
    assert seeds.unit == "seed" and not any(layer.get("mark", {}).get("filled") is False
                                            for layer in forest(seeds, 4).to_dict()["layer"])


def test_a_study_pooling_two_pretraining_lengths_is_refused():
    runs = scenario(seeds=(0,), pretrain_seeds=(0, 1)).assign(run_dir="r", error="", pretrain_steps=1000)
    runs.loc[runs.pretrain_seed == 1, "pretrain_steps"] = 3000
    with pytest.raises(report.StudyError, match="mixes runs from stand-ins pre-trained 1000 and 3000 steps"):
        report.Study("mixed", "runs/mixed", runs, pd.DataFrame(columns=["run_dir"]))
    report.Study("one", "runs/one", runs.assign(pretrain_steps=3000), pd.DataFrame(columns=["run_dir"]))


def test_the_fairness_check_is_each_draws_margin_over_the_question_prior(tmp_path):
    """Per draw, every plain VQA PEFT configuration at 100 % data: best validation accuracy minus the question prior
    its run recorded; a method below it in one draw is not above in every draw; the VQA section shows the table."""
    from vlpeft.study.results import fairness
    runs = scenario(seeds=(0,), pretrain_seeds=(0, 1, 2)).assign(question_prior=0.3)
    runs = runs.assign(run_dir=[f"r{i}" for i in range(len(runs))], error="")
    low = (runs.task == "vqa") & (runs.method == "prompt") & (runs.pretrain_seed == 2)
    runs.loc[low, "best_val"] = 0.25
    table = fairness(runs)
    plain = runs[(runs.task == "vqa") & ~runs.tune_classifier & (runs.method != "full") & (runs.data_ratio == 1.0)]
    assert len(table) == len(plain.groupby(["method", "size"])) and table.attrs["prior"] == pytest.approx(0.3)
    for r in plain.itertuples():
        row = table[(table.method == r.method) & (table["size"] == r.size)].iloc[0]
        assert row[f"draw {r.pretrain_seed}"] == pytest.approx(100 * (r.best_val - 0.3))   # accuracy points
    verdict = table.set_index(["method", "size"])["above in every draw"]
    assert set(verdict[verdict == "no"].index.get_level_values(0)) == {"prompt"}
    page = (report.write_report(report.Study("f", "memory", runs, pd.DataFrame(columns=["run_dir"])),
                                tmp_path / "r", formats=("svg",)) / "index.html").read_text()
    vqa = page.split("id='inconsistent'")[1].split("<h2")[0]
    assert "Fairness check" in vqa and "question-type prior of its validation questions (0.300)" in vqa
    assert fairness(runs.drop(columns="question_prior")).empty   # runs from before #39 record none: no table
    missing = fairness(runs[~((runs.method == "lora") & (runs.pretrain_seed == 1))])
    assert set(missing[missing.method == "lora"]["above in every draw"]) == {"n/a"}   # a draw without it: not "no"
    assert len(fairness(runs.drop(columns="pretrain_seed"))) == len(table)           # one model: one column


def test_each_kind_of_judge_lives_in_one_place(runs):
    """Every kind of judge the claims use is an entry of KINDS, and that entry is what the verdict-rules page states
    and what the forest plots draw: its words and margin in the tooltip, its margin lines (its yes-region: above);
    a kind that is not there is refused."""
    parts = claims.parts_table(runs)
    assert set(parts.judge) - {""} <= set(KINDS)
    for kind in KINDS.values():
        assert f"- {kind.rule}" in claims.VERDICT_RULES
    spec = figures.fig_forest(parts, 10).to_dict()
    drawn = {r["part"]: r for rows in spec["datasets"].values() for r in rows if "rule" in r}
    for r in parts[parts.claim.astype(str) == "10"].itertuples():
        kind = KINDS.get(r.judge)
        if kind is None:
            assert drawn[r.part]["rule"] == "reported, not judged"
            continue
        assert drawn[r.part]["rule"] == f"{kind.words}, margin {r.margin:g}"
        at, neg = kind.margin_lines(r.margin)
        assert drawn[r.part]["margin_at"] == at and drawn[r.part]["margin_neg"] == neg
    with pytest.raises(ValueError, match="judge kind 'nearly'"):
        claims.Judge("nearly", 1.0)


def test_the_notebook_shows_what_the_page_shows(study, tmp_path, monkeypatch):
    """One walk, two media: for every section, `show` displays the page's question, as many charts as the page
    inlines, and the same verdict table."""
    import IPython.display
    from pandas.io.formats.style import Styler
    s = report.Study.load(study)
    out = report.write_report(s, tmp_path / "report", formats=("svg",))
    page = (out / "index.html").read_text()
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    for section in report.sections_of(s):
        shown.clear()
        report.show(s, section.key)
        html = page.split(f"<h2 id='{section.key}'>")[1].split("<h2")[0]
        assert shown[0].data == f"*{section.paper}.* {section.text}"
        charts = [x for x in shown if isinstance(x, alt.TopLevelMixin)]
        assert len(charts) == html.count("data:image/svg+xml;base64,") > 0, section.key
        tables = [x.data for x in shown if isinstance(x, Styler)]
        assert len(tables) == html.count("<table>") == (1 if section.claims else 0), section.key
        if section.claims:
            assert tables[0]["verdict"].tolist() == re.findall(r"<td style='background:#\w+'>([^<]+)</td>", html)


def test_write_report_notes_a_task_without_runs(tmp_path):
    for row in frame(tasks=("caption",)).to_dict("records"):
        write_run(tmp_path / "caption_only", row)
    out = report.write_report(tmp_path / "caption_only", tmp_path / "report", formats=("svg",))
    page = (out / "index.html").read_text()
    assert "The inconsistent task: VQA: no complete runs of its task — the section is left out" in page
    assert "id='inconsistent'" not in page and "id='consistent'" in page
    assert "vqa_cost: not drawn (no complete runs with a cost for task &#x27;vqa&#x27;)" in page
    assert not (out / "figures" / "vqa_data_ratio.svg").exists()
    assert (out / "figures" / "caption_data_ratio.svg").exists()
    assert "inconclusive" in glance(page)


def test_a_report_folder_reloads_to_the_same_claims(study, tmp_path):
    """A report folder is a study too: its runs.csv and curves.csv give the same claims and figures."""
    out = report.write_report(study, tmp_path / "report", formats=("svg",))
    again = report.Study.load(out)
    first = report.Study.load(study)
    pd.testing.assert_frame_equal(again.claims, first.claims, check_exact=False, rtol=1e-9)
    assert len(again.curves) == len(first.curves) > 0
    figures.fig_curves(again.paper_curves, "vqa").to_dict()


def test_a_missing_study_says_which_command_fills_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(report.StudyError, match="make study"):
        report.Study.load("tiny")
    assert report.load_or_say("tiny") is None and "vlpeft study --preset tiny" in capsys.readouterr().out


def test_a_dial_study_reports_its_verdict_and_figure(tmp_path):
    """A study whose runs started from models at several consistency levels (metrics.json's `start`)."""
    study = tmp_path / "dial"
    for row in dial_frame().to_dict("records"):
        row |= {"trainable_params": 1000, "n_train": 100}
        d = write_run(study / f"c{row['consistency']}-p{row['pretrain_seed']}", row)
        m = json.loads((d / "metrics.json").read_text())
        m["start"] = {"path": "checkpoints/x", "pretrain": {"seed": row["pretrain_seed"],
                                                           "consistency": row["consistency"]}}
        (d / "metrics.json").write_text(json.dumps(m))
    runs = load_runs(study)
    assert sorted(runs.consistency.unique()) == [0.0, 0.5, 1.0] and set(runs.pretrain_seed) == {0, 1}
    figures.fig_dial(runs).to_dict()
    out = report.write_report(study, tmp_path / "report")
    page = (out / "index.html").read_text()
    assert (out / "figures" / "dial.svg").exists() and (out / "figures" / "claim_dial.svg").exists()
    dial_section = page.split("id='dial'")[1]
    assert "<td style='background:#d4edda'>supported</td>" in dial_section.split("</table>")[0]
    assert "highest consistency level (1)" in page
    table = pd.read_csv(out / "claims.csv")
    assert list(table.claim) == [str(c) for c in range(1, 12)] + ["dial"]         # the dial's verdict is a row too
    assert table.set_index("claim").loc["dial", "verdict"] == "supported"
    assert "| dial |" in (out / "claims.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# Two pre-training recipes side by side (report/families.py)
def vqa_with_lora_lifted(m, i, cls, r):
    return paper_vqa(m, i, cls, r) + (0.2 if m == "lora" else 0.0)


def test_two_recipes_side_by_side_say_what_the_recipe_changes(tmp_path):
    from vlpeft.study.report import families
    no_curves = pd.DataFrame(columns=["run_dir"])
    a = report.Study("a", "memory", scenario().assign(recipe="mplug"), no_curves)
    b = report.Study("b", "memory", scenario(vqa=vqa_with_lora_lifted).assign(recipe="blip"), no_curves)  # same draws
    verdicts = families.verdicts_side_by_side({"a": a, "b": b})
    for name, s in (("a", a), ("b", b)):                       # each study judged by its own rules
        assert verdicts[f"{name}: verdict"].tolist() == report.verdict_table(s)["verdict"].tolist()
    scores = families.scores_side_by_side({"a": a, "b": b})
    diff = scores.set_index(["task", "method"])["difference"]
    assert diff[("vqa", "LoRA")] == pytest.approx(-20.0, abs=1e-6)           # a − b in points, paired by seed
    assert diff.drop(("vqa", "LoRA")).abs().max() < 1e-6
    changes = families.what_changes(verdicts, scores, ["a", "b"])
    assert [c for c in changes if not c.startswith("claim")] == [c for c in changes if c.startswith("vqa, LoRA")]
    assert len([c for c in changes if c.startswith("vqa, LoRA")]) == 1
    same = {"a": a, "a again": a}
    assert families.what_changes(families.verdicts_side_by_side(same), families.scores_side_by_side(same),
                                 list(same)) == ["no verdict and no reference-size score differs beyond its interval"]
    out = report.write_families({"a": a, "b": b}, tmp_path / "families", formats=("svg",))
    page = (out / "index.html").read_text()
    assert "<script" not in page and "vqa, LoRA" in page and (out / "figures" / "scores.svg").is_file()
    assert pd.read_csv(out / "verdicts.csv").shape[0] == 11
    assert "the same study from two pre-training recipes" in page and "recipe mplug, VQA route mplug" in page


# The premise of a comparison (#41): one grid, the same seeds, one value of the factor per study and two of them.
# Real studies' runs, changed where a case says; a study here is what the premise reads (runs, source).
REPORTS = Path(__file__).resolve().parent.parent / "reports"


def study_of(name, change=lambda runs: runs, source=None):
    """tiny, tiny-blip: the one-draw studies (ONE_DRAW_STUDIES, a design whose counts the cases below name); dial:
    the committed dial; reports/<name>: whatever is committed there now. The source, which the messages name, is
    reports/<name> for all of them (as the one-draw studies were when committed), not the file read."""
    from types import SimpleNamespace
    folder = (REPORTS.parent / name if "/" in name else REPORTS / name if name == "dial" else ONE_DRAW_STUDIES / name)
    runs = change(pd.read_csv(folder / "runs.csv"))
    return SimpleNamespace(name=Path(name).name, source=source or f"reports/{Path(name).name}", runs=runs)


def vqa_route(route):
    def change(runs):
        return runs.assign(vqa_route=np.where(runs.task == "vqa", route, ""))
    return change


def without(mask):
    return lambda runs: runs[~mask(runs)]


def one_cell(r):
    return (r.task == "vqa") & (r.method == "lora") & (r["size"] == 8) & (r.data_ratio == 1.0) & ~r.tune_classifier


PREMISES = [  # (case, first, second, factor, what the refusal says: None when the premise holds)
    ("the committed pair", ("reports/tiny",), ("reports/tiny-blip",), "recipe", None),
    ("the one-draw pair", ("tiny",), ("tiny-blip",), "recipe", None),
    ("another grid", ("tiny",), ("dial",), "recipe",
     ["not one grid: 53 of its 66 cells only in reports/tiny, 65 of 78 only in reports/dial",
      "values only in reports/tiny: task vqa, method parallel_adapter/prefix/serial_adapter, size 4/16/64, "
      "tune_classifier True; values only in reports/dial: consistency 0/0.5, pretrain_seed 1",
      "both record the recipe mplug"]),
    ("the same recipe", ("tiny",), ("tiny", vqa_route("mplug"), "reports/tiny-again"), "recipe",
     ["both record the recipe mplug (--factor names what they differ in"]),
    ("a seed missing", ("tiny",), ("tiny-blip", without(lambda r: one_cell(r) & (r.seed == 2))), "recipe",
     ["other seeds in 1 cell (pairing by seed needs the same), e.g. task=vqa method=lora size=8 "
      "tune_classifier=False data_ratio=1 consistency=1 pretrain_seed=0 pretrain_steps=1000: 0, 1, 2 in reports/tiny, "
      "0, 1 in reports/tiny-blip"]),
    ("a cell missing", ("tiny",), ("tiny-blip", without(one_cell)), "recipe",
     ["not one grid: 1 of its 66 cells only in reports/tiny, 0 of 65 only in reports/tiny-blip (e.g. task=vqa "
      "method=lora size=8 tune_classifier=False data_ratio=1 consistency=1 pretrain_seed=0 pretrain_steps=1000 only "
      "in reports/tiny)"]),
    ("stand-ins of another length", ("tiny",), ("tiny-blip", lambda r: r.assign(pretrain_steps=6000)), "recipe",
     ["values only in reports/tiny: pretrain_steps 1000; values only in reports/tiny-blip: pretrain_steps 6000"]),
    ("a study mixing recipes", ("tiny",), ("tiny-blip", lambda r: r.assign(recipe=np.where(r.seed == 0, "mplug",
                                                                                         "blip"))), "recipe",
     ["reports/tiny-blip mixes the pre-training recipes blip and mplug"]),
    ("two routes on one recipe", ("tiny",), ("tiny", vqa_route("blip"), "reports/tiny-route-blip"), "route", None),
    ("two recipes called routes", ("tiny",), ("tiny-blip",), "route",
     ["values only in reports/tiny: recipe mplug; values only in reports/tiny-blip: recipe blip"]),
    ("two pre-training draws", ("tiny",), ("tiny", lambda r: r.assign(pretrain_seed=1), "reports/tiny-p1"),
     "pretrain-seed", None),
    ("two worlds", ("tiny",), ("tiny", lambda r: r, "reports/tiny-elsewhere"), "world", None),
    ("one study as two worlds", ("tiny",), ("tiny",), "world", ["reports/tiny twice"]),
]


@pytest.mark.parametrize("case,first,second,factor,says", PREMISES, ids=[c[0] for c in PREMISES])
def test_a_comparison_checks_its_premise(case, first, second, factor, says):
    from vlpeft.errors import ConfigError
    from vlpeft.study.report import families
    studies = [study_of(*first), study_of(*second)]
    problems = families.premise_problems(studies, factor)
    if says is None:
        assert problems == []
        families.check_premise(studies, factor)
        return
    line = "; ".join(problems)
    assert all(s in line for s in says), line
    assert len(problems) == len(says) or case == "another grid"
    with pytest.raises(ConfigError, match="are not one study from two") as refused:
        families.check_premise(studies, factor)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("name,change,factor,label", [
    ("tiny", lambda r: r, "recipe", "mPLUG recipe"),
    ("tiny-blip", lambda r: r, "recipe", "BLIP recipe"),               # runs from before recipes and routes
    ("tiny", vqa_route("blip"), "recipe", "mPLUG recipe, VQA route blip"),   # a route not the recipe's own
    ("tiny", vqa_route("blip"), "route", "VQA route blip"),
    ("tiny-blip", lambda r: r, "route", "VQA route blip"),             # a run before routes: its checkpoint's own
    ("tiny", lambda r: r.assign(pretrain_seed=1), "pretrain-seed", "pre-training seed 1"),
    ("tiny", lambda r: r, "world", "tiny"),                            # no world recorded: the study's name
])
def test_a_study_is_labelled_by_the_factor_compared(name, change, factor, label):
    from vlpeft.study.report import families
    assert families.label_of(study_of(name, change), factor) == label


def test_nothing_is_written_when_the_premise_fails(tmp_path):
    from vlpeft.errors import ConfigError
    studies = {"a": study_of("tiny"), "b": study_of("dial")}
    with pytest.raises(ConfigError, match="not one grid"):
        report.write_families(studies, tmp_path / "families", formats=("svg",))
    assert not (tmp_path / "families").exists()


def test_another_factor_is_named_on_the_page(tmp_path):
    no_curves = pd.DataFrame(columns=["run_dir"])
    studies = {f"VQA route {r}": report.Study(r, f"memory/{r}", scenario().assign(
        recipe="mplug", vqa_route=lambda d, r=r: np.where(d.task == "vqa", r, "")), no_curves)
        for r in ("mplug", "blip")}
    out = report.write_families(studies, tmp_path / "routes", formats=("svg",), factor="route")
    page, md = (out / "index.html").read_text(), (out / "families.md").read_text()
    assert "<h1>vlpeft — the same study on two VQA routes</h1>" in page
    assert "<h2>What the VQA route changes</h2>" in page
    assert "recipe" not in page.split("<h2>The eleven verdicts")[0].replace("recipe mplug", "")
    assert md.startswith("# Two VQA routes, one study\n\n## What the VQA route changes")
    assert ">VQA route</text>" in (out / "figures" / "scores.svg").read_text()          # the legend's title


def test_the_committed_comparison_re_renders_byte_for_byte(tmp_path, monkeypatch):
    """reports/families from the committed pair, rendered again: every file the page is made of is the same."""
    monkeypatch.chdir(REPORTS.parent)                             # the page names its sources as `vlpeft compare` does
    studies = [report.Study.load(f"reports/{name}") for name in ("tiny", "tiny-blip")]
    out = report.write_families({report.label_of(s): s for s in studies}, tmp_path / "families", formats=("svg",))
    for name in ("index.html", "families.md", "verdicts.csv", "scores.csv", "figures/scores.svg"):
        assert (out / name).read_bytes() == (REPORTS / "families" / name).read_bytes(), name


SETTINGS = [  # (a run as its row records it, its recipe and VQA route as `results.setting` gives them)
    ({"task": "vqa", "pretrain_seed": 0}, ("blip", "blip")),                        # before recipes: BLIP's, own route
    ({"task": "vqa", "pretrain_seed": 0, "recipe": "mplug"}, ("mplug", "mplug")),    # before routes: the recipe's
    ({"task": "vqa", "pretrain_seed": 0, "recipe": "mplug", "vqa_route": "blip"}, ("mplug", "blip")),  # as recorded
    ({"task": "vqa"}, (None, "blip")),                                              # real BLIP: no recipe; blip
    ({"task": "caption", "pretrain_seed": 0, "recipe": "mplug", "vqa_route": ""}, ("mplug", "")),  # no route
    ({"task": "caption"}, (None, None)),
]


def test_a_runs_recipe_and_route_are_as_recorded_or_as_they_were_before():
    from vlpeft.worlds.pretrain import RECIPES
    assert all(recipe == route for recipe, route in RECIPES.items())   # the rule: a checkpoint's own route is its
    got = results.setting(pd.DataFrame([row for row, _ in SETTINGS]))  # recipe's, of the same name
    for (row, want), pair in zip(SETTINGS, got.itertuples(index=False)):
        assert tuple(None if pd.isna(v) else v for v in pair) == want, row
    committed_runs = pd.read_csv(ONE_DRAW_STUDIES / "tiny-blip" / "runs.csv")   # from before recipes and routes
    vqa = results.setting(committed_runs)[committed_runs.task == "vqa"]
    assert set(vqa.recipe) == set(vqa.vqa_route) == {"blip"}


@pytest.mark.parametrize("pretrain_seeds, over", [
    (None, "seeds"),                                       # runs that record no draw: one model's seeds
    ([0, 0, 0], "seeds"),
    ([0, 1, 2], "the runs of 3 pre-training draws"),
    ([float("nan"), 1, 1], "the runs of 2 pre-training draws"),   # a run with none is draw 0, as the claims count
])
def test_a_figure_says_what_its_means_are_over_as_the_claims_count_units(pretrain_seeds, over):
    from vlpeft.study.claims.estimators import prepare
    from vlpeft.study.figures import _over
    runs = pd.DataFrame({"status": "complete", "best_val": 0.5, "method": "lora", "seed": [0, 1, 2],
                         "tune_classifier": False})
    if pretrain_seeds is not None:
        runs["pretrain_seed"] = pretrain_seeds
    assert _over(runs) == over
    assert (over == "seeds") == (not str(prepare(runs)["unit"].iloc[0]).startswith("draw "))
