"""claims: verdicts on synthetic studies whose answer is known, interval coverage by simulation, the dial.

The scenarios are helpers.py's (section 4): `paper_caption` and `paper_vqa` behave as the paper says, so every claim
must come out supported; CASES bend one part at a time.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import FAMILY, RATIOS, SEEDS, SIZES, dial_frame, frame, paper_caption, paper_vqa, variant  # noqa: F401
from vlpeft.study import claims
from vlpeft.study.claims.estimators import cls_gain, ratio_change
from vlpeft.study.claims.judges import DIAL_NEGLIGIBLE


# ---------------------------------------------------------------------------------------------------------
# The paper scenario, the table's shape, determinism
@pytest.fixture(scope="module")
def paper():
    return frame()


def test_the_paper_scenario_supports_all_eleven_claims(paper):
    table = claims.evaluate_claims(paper)
    assert table.claim.tolist() == list(range(1, 12)) and len(claims.CLAIMS) == 11
    assert list(table.columns) == claims.COLUMNS
    assert table.verdict.tolist() == ["supported"] * 11, table[["claim", "verdict", "evidence"]].to_string()
    stat = table[table.claim <= 10]
    assert (stat.ci_low <= stat.value).all() and (stat.value <= stat.ci_high).all()
    assert (stat.n == len(SEEDS)).all() and (table.unit == "seed").all()  # n counts units (one model: seeds), not runs
    assert table.units_needed.isna().all()  # only inconclusive claims get a number
    assert (table.split_parts == "").all()  # every seed on the side of every bound the paper's answer is on


def test_claims_are_deterministic_and_take_the_checks_one_by_one(paper):
    a, b = claims.evaluate_claims(paper), claims.evaluate_claims(paper.sample(frac=1, random_state=1))
    pd.testing.assert_frame_equal(a, b)  # row order does not matter
    for i, check in claims.CLAIMS.items():
        row = check(paper)
        assert row["claim"] == i and row["verdict"] == a.verdict[i - 1]


def test_no_complete_runs_make_every_claim_inconclusive():
    table = claims.evaluate_claims(frame().assign(status="failed"))
    assert table.verdict.tolist() == ["inconclusive"] * 11 and (table.n == 0).all()
    assert claims.per_method_table(frame().assign(status="diverged")).empty
    assert claims.dial_verdict(frame().assign(status="failed"))["verdict"] == "inconclusive"


def test_the_unit_is_the_draw_when_there_are_several():
    df = frame(seeds=(0, 1), pretrain_seeds=(0, 1, 2))
    table = claims.evaluate_claims(df)
    assert (table[table.claim <= 10].n == 3).all() and (table.unit == "draw").all(), table[["claim", "n", "unit"]]
    one = claims.evaluate_claims(df.assign(pretrain_seed=float("nan")))   # missing: one pre-trained model
    assert one.n[0] == 2 and (one.unit == "seed").all()
    assert claims.evaluate_claims(df[df.pretrain_seed == 1]).n[0] == 2     # one draw: its seeds are the units


def test_a_draws_estimate_is_the_mean_of_its_seeds():
    """The meaning of a unit's number: a draw's own estimate of every part equals the mean over its fine-tuning
    seeds of what each seed alone estimates (that draw analysed alone, where the seeds are the units)."""
    df = frame(seeds=(0, 1), pretrain_seeds=(0, 1, 2), seed_sd=0.01, noise=0.005)
    units = claims.units_table(df)
    assert set(units.unit) == {"draw 0", "draw 1", "draw 2"}
    checked = 0
    for draw in (0, 1, 2):
        alone = claims.units_table(df[df.pretrain_seed == draw])
        assert set(alone.unit) == {f"{draw}/0", f"{draw}/1"}
        mean = alone.groupby(["claim", "part"], sort=False).estimate.mean()
        mine = units[units.unit == f"draw {draw}"].set_index(["claim", "part"]).estimate
        both = mine.to_frame("draw").join(mean.rename("seeds"), how="inner")
        assert len(both) > 20 and np.allclose(both.draw, both.seeds, atol=1e-9), both[~np.isclose(both.draw,
                                                                                                both.seeds)]
        checked += len(both)
    assert checked == 3 * len(units[units.unit == "draw 0"])


def test_a_part_whose_draws_disagree_is_named_split():
    """Claim 4's rise on VQA: two draws rise, one falls — the pooled answer may be anything, but the claim names the
    parts its draws split on, and the units table shows each draw's side."""
    df = frame(seeds=(0,), pretrain_seeds=(0, 1, 2), seed_sd=0.001)
    falls = (df.pretrain_seed == 1) & (df.task == "vqa") & (df.method == "lora")
    df.loc[falls, "best_val"] -= 0.05 * np.log10(df.loc[falls, "data_ratio"]) * 3   # draw 1: LoRA falls with data
    row = claims.evaluate_claims(df).set_index("claim").loc[4]
    assert row.unit == "draw" and "lora" in row.split_parts, row.split_parts
    units = claims.units_table(df)
    lora = units[(units.claim == 4) & units.part.str.startswith("lora")]
    assert lora.set_index("unit").towards_yes.to_dict() == {"draw 0": True, "draw 1": False, "draw 2": True}
    assert "lora" not in claims.evaluate_claims(frame(seeds=(0,), pretrain_seeds=(0, 1, 2))).split_parts[3]


def test_effects_are_in_score_points(paper):
    """Claim 3's value is prompt's +cls gain (+6 points) minus the layer methods' (−6 points); claim 4's the VQA
    change from 10 % to 100 % data (0.06 · log10(10) = 6 points)."""
    table = claims.evaluate_claims(paper).set_index("claim")
    assert table.value[3] == pytest.approx(12.0, abs=1.0)
    assert table.value[4] == pytest.approx(6.0, abs=1.0)
    assert table.value_unit[1] == "score points" and table.value_unit[11] == "% of parameters"


def test_per_method_table_has_a_mark_per_method(paper):
    pm = claims.per_method_table(paper)
    assert list(pm.columns) == claims.PER_METHOD_COLUMNS
    for claim in (1, 2, 3, 4, 5, 6):
        rows = pm[pm.claim == claim]
        assert sorted(rows.method) == sorted(claims.PEFT), claim
        assert (rows.n_units == len(SEEDS)).all()
    assert (pm[pm.claim.isin([1, 2, 4, 5, 6])].mark == "yes").all()
    assert pm[(pm.claim == 3) & (pm.method == "prefix")].mark.item() == "not judged"
    assert set(pm[pm.claim == 10].method) == set(claims.PEFT)  # prompt listed, not judged
    assert (pm.ci_low.dropna() <= pm.estimate[pm.ci_low.notna()]).all()


def test_a_method_that_does_not_rise_refutes_claim_4_and_is_named():
    def lora_flat(m, i, cls, r):
        return paper_vqa(m, i, cls, 1.0 if m == "lora" else r)
    df = frame(vqa=lora_flat, seeds=range(6))  # 'no' is judged at the Bonferroni level (k = 5 methods)
    row = claims.CLAIMS[4](df)
    assert row["verdict"] == "not supported"
    assert "lora: " in row["evidence"] and "(no)" in row["evidence"]
    pm = claims.per_method_table(df)
    marks = pm[pm.claim == 4].set_index("method").mark
    assert marks["lora"] == "no" and (marks.drop("lora") == "yes").all()


# ---------------------------------------------------------------------------------------------------------
# Verdicts on data whose answer is known
def rising_caption(m, i, cls, r):
    return paper_caption(m, i, cls, r) + 0.3 * math.log10(r)


def monotone_caption(m, i, cls, r):
    return paper_caption(m, 1, cls, r) + 0.1 * i


def declining_caption(m, i, cls, r):
    """A decline in size: a quadratic clamped to 'no optimum' would have hidden it; it is no optimum either way."""
    return paper_caption(m, 1, cls, r) - 0.1 * i


def cls_hurts_everyone(m, i, cls, r):
    return paper_caption(m, i, False, r) - 0.06 * cls


def flat(m, i, cls, r):
    return 0.5 + 0.02 * i


def vqa_small_rise(m, i, cls, r):
    return paper_vqa(m, 1, cls, 1.0) + 0.01 * math.log10(r)


def rise_then_fall(m, i, cls, r):
    """Largest > smallest, but the last step drops: a straight slope would call it a rise."""
    return paper_vqa(m, 0, cls, r) + [0.0, 0.10, 0.05][i]


def cls_below_full(m, i, cls, r):
    return paper_vqa(m, i, False, r) + 0.01 * cls - (0.15 if m != "full" else 0)


def cls_no_gain(m, i, cls, r):
    return paper_vqa(m, i, False, r) + 0.15 * (m == "full")


def embedding_wins(m, i, cls, r):
    return paper_vqa(m, i, cls, r) + (0.3 if FAMILY[m] == "embedding" else 0)


def layer_far_below_full(m, i, cls, r):
    return paper_vqa(m, i, cls, r) - (0.2 if FAMILY[m] == "layer" else 0)


def embedding_near_full(m, i, cls, r):
    return paper_vqa(m, i, cls, r) + (0.15 if FAMILY[m] == "embedding" else 0)


def prefix_far_below_full(m, i, cls, r):
    return paper_caption(m, i, cls, r) - (0.1 if m == "prefix" else 0)


def layer_far_above_full(m, i, cls, r):
    return paper_caption(m, i, cls, r) + (0.1 if FAMILY[m] == "layer" else 0)


def big_prompt(df):
    out = df.copy()
    out.loc[out.method == "prompt", "trainable_pct"] *= 5  # 0.08 % → 0.4 % at length 32
    return out


def prompt_above_lora_at_reference(df):
    out = df.copy()
    ref = (out.method == "lora") & (out["size"] == 8) & ~out.tune_classifier
    out.loc[ref, "trainable_pct"] = 0.001
    return out


ONE_SEED = {"seeds": (0,)}
CASES = [  # (id, claim, frame kwargs, verdict); "edit" post-processes the frame
    ("flat caption series", 1, {}, "supported"),
    ("rising caption series", 1, {"caption": rising_caption}, "not supported"),
    ("caption at 2 data ratios", 1, {"ratios": (0.3, 1.0)}, "inconclusive"),
    ("caption, one seed", 1, ONE_SEED, "inconclusive"),
    ("caption noisy", 1, {"noise": 0.1}, "inconclusive"),
    ("caption, 2 pretrain × 2 seeds", 1, {"seeds": (0, 1), "pretrain_seeds": (0, 1)}, "supported"),
    ("interior optimum", 2, {}, "supported"),
    ("monotone rise in size", 2, {"caption": monotone_caption}, "not supported"),
    ("monotone decline in size", 2, {"caption": declining_caption}, "not supported"),
    ("one seed, 3 sizes", 2, ONE_SEED, "inconclusive"),
    ("+cls helps prompt, hurts layer", 3, {}, "supported"),
    ("+cls hurts prompt too", 3, {"caption": cls_hurts_everyone}, "not supported"),
    ("+cls, one seed", 3, ONE_SEED, "inconclusive"),
    ("rising VQA series", 4, {}, "supported"),
    ("flat VQA series", 4, {"vqa": flat, "seeds": range(6)}, "not supported"),
    ("VQA, 5 ratios, every size", 4, {"ratios": (0.1, 0.2, 0.4, 0.8, 1.0), "every_size": True}, "supported"),
    ("VQA at 2 data ratios", 4, {"ratios": (0.3, 1.0)}, "inconclusive"),
    ("VQA rise of 1 point in noise", 4, {"vqa": vqa_small_rise, "noise": 0.03}, "inconclusive"),
    ("VQA, one seed", 4, ONE_SEED, "inconclusive"),
    ("VQA rising in size", 5, {}, "supported"),
    ("VQA flat in size", 5, {"vqa": lambda m, i, c, r: 0.5}, "not supported"),
    ("VQA rise then fall in size", 5, {"vqa": rise_then_fall}, "not supported"),
    ("+cls raises VQA, up to full", 6, {}, "supported"),
    ("+cls barely helps, far below full", 6, {"vqa": cls_below_full}, "not supported"),
    ("+cls does not help", 6, {"vqa": cls_no_gain}, "not supported"),
    ("layer beats embedding", 7, {}, "supported"),
    ("embedding beats layer on VQA", 7, {"vqa": embedding_wins}, "not supported"),
    ("caption only", 7, {"tasks": ("caption",)}, "inconclusive"),
    ("layer ≈ full, embedding lags", 8, {}, "supported"),
    ("layer far below full", 8, {"vqa": layer_far_below_full}, "not supported"),
    ("embedding close to full", 8, {"vqa": embedding_near_full}, "not supported"),
    ("VQA, one seed", 8, ONE_SEED, "inconclusive"),
    ("layer better per cost", 9, {}, "supported"),
    ("embedding better per cost", 9, {"vqa": embedding_wins}, "not supported"),
    ("PEFT ≥ full except prompt, families comparable", 10, {}, "supported"),
    ("prefix far below full", 10, {"caption": prefix_far_below_full}, "not supported"),
    ("layer far above full: not comparable", 10, {"caption": layer_far_above_full}, "not supported"),
    ("caption noisy", 10, {"noise": 0.05}, "inconclusive"),
    ("prompt < 0.16 %, the fewest", 11, {}, "supported"),
    ("prompt at 0.4 %", 11, {"edit": big_prompt}, "not supported"),
    ("prompt above LoRA at the reference size", 11, {"edit": prompt_above_lora_at_reference}, "not supported"),
    ("no trainable % recorded", 11, {"pct": False}, "inconclusive"),
    ("VQA only: prompt still the fewest", 11, {"tasks": ("vqa",)}, "supported"),
]


@pytest.mark.parametrize("claim, kwargs, verdict", [c[1:] for c in CASES], ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_claim_verdicts(claim, kwargs, verdict):
    kwargs = dict(kwargs)
    edit = kwargs.pop("edit", lambda df: df)
    row = claims.CLAIMS[claim](edit(frame(**kwargs)))
    assert row["claim"] == claim and row["verdict"] == verdict, row["evidence"]
    assert row["verdict"] in claims.VERDICTS
    if verdict != "inconclusive":
        assert row["n"] > 0 and np.isfinite(row["value"])


def test_one_seed_says_how_many_seeds_an_interval_needs():
    row = claims.CLAIMS[4](frame(seeds=(0,)))
    assert row["verdict"] == "inconclusive" and row["n"] == 1
    assert f"needs ≥ {claims.MIN_UNITS} seeds" in row["evidence"] and "too few units" in row["evidence"]


def test_an_undecided_claim_reports_the_seeds_that_would_decide_it():
    def rise_of_3_points(m, i, cls, r):
        return paper_vqa(m, 1, cls, 1.0) + 0.03 * math.log10(r)
    row = claims.CLAIMS[4](frame(vqa=rise_of_3_points, noise=0.03))
    assert row["verdict"] == "inconclusive" and len(SEEDS) < row["units_needed"] < 1000, row["evidence"]
    assert f"about {row['units_needed']:.0f} seeds would decide it" in row["evidence"]
    # a true rise of exactly MIN_GAIN_VQA sits on the bound: no number of seeds decides it
    row = claims.CLAIMS[4](frame(vqa=vqa_small_rise, noise=0.03))
    assert row["verdict"] == "inconclusive" and row["units_needed"] == math.inf


def test_units_needed_is_a_t_power_calculation():
    # t(0.95, 4)·2/√5 = 1.91 < 2 ≤ t(0.95, 3)·2/√4 = 2.35
    assert claims.units_needed(effect=2.0, sd=2.0, margin=0.0) == 5
    assert claims.units_needed(effect=3.0, sd=1.0, margin=1.0) == 3  # t(0.95, 2)/√3 = 1.69 < 2
    assert claims.units_needed(effect=1.0, sd=float("nan"), margin=0.0) is None
    assert claims.units_needed(effect=1.0, sd=1.0, margin=1.0) == math.inf  # on the bound: never decided
    n = claims.units_needed(0.5, 3.0, 0.0)
    from scipy import stats
    t = lambda k: stats.t.ppf(0.95, k - 1) * 3.0 / math.sqrt(k)  # noqa: E731
    assert t(n) < 0.5 <= t(n - 1)


def test_verdict_rules_name_every_threshold_and_margin():
    rules = claims.VERDICT_RULES
    assert f"{claims.CI_LEVEL:.0%}" in rules
    for name, value in claims.THRESHOLDS.items():
        if name != "CI_LEVEL":
            assert name in rules, name
            assert f"{value:g}" in rules, name
    for words in ("epoch-based", "unit of replication", "pre-training draw", "TOST", "reference size", "units_needed",
                  "split_parts"):
        assert words.lower() in rules.lower(), words


# ---------------------------------------------------------------------------------------------------------
# Coverage: per-unit effects with t intervals over seeds cover the truth at the nominal rate
def _sim_runs(rng, effect, n_seeds=4, sizes=(2, 8, 32), ratios=(0.1, 0.3, 1.0), cls=False):
    """One simulated study of one method, in points, with a per-seed offset (sd 2), a per-(seed, ratio) data-
    subset offset (sd 1.5) shared by every run of that seed and ratio, a per-seed '+ classifier' effect (sd 1),
    and run noise (sd 0.5). `effect`: points per log2(ratio) (cls=False) or the '+ classifier' gain (cls=True)."""
    s, z, r, c = np.meshgrid(np.arange(n_seeds), np.asarray(sizes), np.asarray(ratios), [False, True] if cls else
                             [False], indexing="ij")
    s, z, r, c = s.ravel(), z.ravel(), r.ravel(), c.ravel()
    seed_off, subset = rng.normal(0, 2, n_seeds), rng.normal(0, 1.5, (n_seeds, len(ratios)))
    seed_cls = rng.normal(0, 1, n_seeds)
    ri = np.searchsorted(np.asarray(ratios), r)
    signal = effect * c + seed_cls[s] * c if cls else effect * np.log2(r)
    pts = 50 + signal + seed_off[s] + subset[s, ri] + rng.normal(0, 0.5, len(s))
    return pd.DataFrame({"unit": [f"0/{k}" for k in s], "size": z, "data_ratio": r, "tune_classifier": c,
                         "pts": pts})


def test_t_intervals_over_seeds_cover_at_the_nominal_rate():
    rng = np.random.default_rng(2024)
    n_sim, slope, gain = 400, 1.0, 3.0
    truth4 = slope * math.log2(1.0 / 0.1)  # claim 4's statistic: the change lowest → highest ratio
    hits4 = hits3 = 0
    for _ in range(n_sim):
        e4 = ratio_change(_sim_runs(rng, slope))
        hits4 += e4.lo <= truth4 <= e4.hi
        e3 = cls_gain(_sim_runs(rng, gain, cls=True))
        hits3 += e3.lo <= gain <= e3.hi
        assert e4.n == e3.n == 4
    assert 0.85 <= hits4 / n_sim <= 0.95, hits4 / n_sim
    assert 0.85 <= hits3 / n_sim <= 0.95, hits3 / n_sim


# ---------------------------------------------------------------------------------------------------------
# The consistency dial
def test_dial_supported_when_the_ratio_slope_rises_as_consistency_falls():
    row = claims.dial_verdict(dial_frame())
    assert row["verdict"] == "supported", row["evidence"]
    assert row["value"] == pytest.approx(3.0, abs=0.5)  # points per doubling, lowest − highest level
    assert row["n"] == 2 and row["unit"] == "draw"  # the two pre-training draws, each over its three seeds
    assert row["levels"] == [0.0, 0.5, 1.0] and row["value_unit"] == "score points per doubling"
    assert "monotone rise in 3/3 methods" in row["evidence"] and "interior optimum in 3/3" in row["evidence"]


def test_dial_not_supported_when_the_slope_does_not_change():
    row = claims.dial_verdict(dial_frame(rise=0.0))
    assert row["verdict"] == "not supported", row["evidence"]
    assert row["ci_high"] < DIAL_NEGLIGIBLE


def test_dial_not_supported_when_the_slope_falls_with_consistency():
    row = claims.dial_verdict(dial_frame(rise=-3.0))
    assert row["verdict"] == "not supported" and row["value"] < 0


def test_dial_inconclusive_with_fewer_than_three_levels_or_one_unit():
    row = claims.dial_verdict(dial_frame(levels=(0.0, 1.0)))
    assert row["verdict"] == "inconclusive" and "need" in row["evidence"]
    assert claims.dial_verdict(frame())["verdict"] == "inconclusive"  # no dial at all
    one = claims.dial_verdict(dial_frame(pretrain_seeds=(0,), seeds=(0,)))
    assert one["verdict"] == "inconclusive" and one["n"] == 1


def test_dial_is_deterministic():
    df = dial_frame()
    assert claims.dial_verdict(df) == claims.dial_verdict(df.sample(frac=1, random_state=3))


def test_claims_use_the_paper_level_of_the_dial():
    """With a dial, claims 1–11 read the highest consistency level only (the paper's setting)."""
    low = frame(caption=rising_caption).assign(consistency=0.0)
    both = pd.concat([frame().assign(consistency=1.0), low], ignore_index=True)
    assert claims.CLAIMS[1](both)["verdict"] == "supported"
    assert claims.CLAIMS[1](low)["verdict"] == "not supported"


# ---------------------------------------------------------------------------------------------------------
# The committed reports are what the rules give on their own runs
COMMITTED = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "reports").iterdir()
                   if (p / "claims.csv").is_file())


@pytest.mark.parametrize("study", COMMITTED)
def test_the_committed_claims_are_what_the_rules_give_on_the_committed_runs(study):
    """claims.csv and claims_per_method.csv recomputed from the committed runs.csv equal the committed files,
    cell for cell: text exactly, numbers to 1e-9 (a CSV round trip moves the last bits of a float)."""
    from vlpeft.study import report
    folder = Path(__file__).resolve().parent.parent / "reports" / study
    s = report.Study.load(folder)
    table = s.claims
    if s.is_dial:
        table = pd.concat([table, pd.DataFrame([s.dial]).drop(columns="levels").assign(claim="dial")])
    for got, name in ((table, "claims.csv"), (s.per_method, "claims_per_method.csv")):
        want = pd.read_csv(folder / name)
        got = pd.read_csv(io.StringIO(got.to_csv(index=False)))
        assert list(got.columns) == list(want.columns) and got.shape == want.shape, name
        for col in want.columns:
            if pd.api.types.is_numeric_dtype(want[col]):
                np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-9, atol=1e-12,
                                           err_msg=f"{name}: {col}")
            else:
                assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), f"{name}: {col}"
