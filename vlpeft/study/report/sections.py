"""The report's sections, as the paper's §V: one per finding, each with its figures and the claims it bears on;
the figures by name, each claim's forest plot, and the verdict table.

    sections_of(study)                  # the sections a study has something for
    figure(study, "vqa_data_ratio")     # (chart, None), or (None, why it is not drawn)
    verdict_table(study, (4, 5, 6))     # claim, verdict, value with its interval, n, units to decide (, split on)
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ...catalog import TASK_INFO
from .. import figures as F
from ..results import complete
from .load import NOT_JUDGED, Study

VERDICT_COLOURS = {"supported": "#d4edda", "not supported": "#f8d7da", "inconclusive": "#fff3cd",
                   NOT_JUDGED: "#e2e3e5"}


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    paper: str                  # where the paper shows it
    text: str                   # what the section asks
    figures: tuple[str, ...]    # FIGURES names
    claims: tuple = ()          # claim numbers ("dial" for the dial)


SECTIONS = [
    Section("consistent", "The consistent task: captioning", "§V-A, Fig. 3",
            "Captioning is what the model was pre-trained on. The paper finds the score independent of the data "
            "ratio, an optimum in the parameter size, and '+ classifier' helping prompt-tuning only.",
            ("caption_data_ratio", "caption_param_size"), (1, 2, 3)),
    Section("inconsistent", "The inconsistent task: VQA", "§V-B, Fig. 4",
            "VQA was never seen in pre-training. The paper finds the score rising with data and with parameters "
            "for every method, and '+ classifier' lifting every method to full fine-tuning.",
            ("vqa_data_ratio", "vqa_param_size"), (4, 5, 6)),
    Section("families", "Two families against full fine-tuning", "§V-C, Fig. 3–4",
            "Layer composition (LoRA, adapters) against embedding composition (prompt, prefix), and both against "
            "full fine-tuning, at the reference sizes. The grid shows each method's own mark on every claim "
            "judged per method.", ("marks",), (7, 8, 10)),
    Section("cost", "Cost", "§V-D, Fig. 5",
            "Score against cost = training examples × fine-tunable parameters, one point per run: which family "
            "is the better buy at equal cost.", ("caption_cost", "vqa_cost"), (9,)),
    Section("budget", "The parameter budget", "§V-C",
            "How small a share of the model each method trains, and whether prompt-tuning's is the smallest.",
            ("budget",), (11,)),
    Section("curves", "Training curves", "Fig. 6–10",
            "Validation score over training at the largest data ratio, per method and size: whether the runs "
            "had flattened when they stopped.", ("caption_curves", "vqa_curves")),
    Section("dial", "The consistency dial (beyond the paper)", "—",
            "The paper explains its split by consistency with pre-training; the embedded world varies it. "
            "Prediction declared in advance: the captioning data-ratio slope rises as consistency falls.",
            ("dial",), ("dial",)),
]
SECTION = {s.key: s for s in SECTIONS}

FIGURES = {  # name → builder(study)
    **{f"{t}_{kind}": (lambda s, t=t, build=build: build(s, t)) for t in TASK_INFO for kind, build in {
        "data_ratio": lambda s, t: F.fig_data_ratio(s.paper_runs, t),
        "param_size": lambda s, t: F.fig_param_size(s.paper_runs, t),
        "cost": lambda s, t: F.fig_cost(s.paper_runs, t),
        "curves": lambda s, t: F.fig_curves(s.paper_curves, t),
    }.items()},
    "marks": lambda s: F.fig_marks(s.per_method),
    "budget": lambda s: F.fig_budget(s.paper_runs),
    "dial": lambda s: F.fig_dial(s.runs),
}


NEEDS = {"consistent": "caption", "inconsistent": "vqa"}   # the task a section is about


def sections_of(study: Study) -> list[Section]:
    """The sections a study has something for: a task's section only with complete runs of it, the dial only for
    a dial study."""
    tasks = set(complete(study.paper_runs).task)
    return [s for s in SECTIONS if (s.key != "dial" or study.is_dial)
            and ((NEEDS[s.key] in tasks) if s.key in NEEDS else bool(tasks))]


def figure(study: Study, name: str):
    """A figure of the study, or None (with the reason) when its runs cannot draw it."""
    try:
        return FIGURES[name](study), None
    except (ValueError, KeyError) as err:  # no runs for it (a task not run, a dial of one level, …)
        return None, f"{name}: not drawn ({err})"


def forest(study: Study, claim):
    """The claim's forest plot, or None when none of its parts could be estimated (no runs for it)."""
    row = study.claim_row(claim)
    mine = study.parts[study.parts.claim.astype(str) == str(claim)]
    if not (mine.n_units > 0).any():
        return None
    units = study.units if study.unit == "draw" else None    # a row per draw; not per seed (one model's seeds)
    return F.fig_forest(study.parts, claim, row["verdict"], row["text"], units=units)


# ---------------------------------------------------------------------------------------------------------
# The verdict table
def _value(x, unit: str = "score points") -> str:
    """A claim's value in its own unit: score points (+1.23 pt), points per doubling, or % of parameters."""
    if pd.isna(x):
        return ""
    if unit == "% of parameters":
        return f"{x:.4g} %"
    return f"{x:+.2f} pt" + ("/doubling" if unit.endswith("per doubling") else "")


def _units(x) -> str:
    return "" if pd.isna(x) else "> 1000" if x == float("inf") else f"{x:.0f}"


def verdict_table(study: Study, claims=None) -> pd.DataFrame:
    """Claim, its text, the verdict, its value with the 90 % interval, n (units: draws or seeds), the units that
    would decide it, and, when the units are pre-training draws, the parts whose draws fall on both sides of their
    decision ("depends on the draw") — one row per claim (the dial's last for a dial study); the evidence is in
    claims.md."""
    unit = study.unit
    rows = [study.claim_row(c) for c in (claims or [*study.claims.claim, *(["dial"] if study.is_dial else [])])]
    out = []
    for c in rows:
        value_unit = c.get("value_unit", "score points")
        ci = "" if pd.isna(c["ci_low"]) else f"[{_value(c['ci_low'], value_unit)}, {_value(c['ci_high'], value_unit)}]"
        out.append({"#": c["claim"], "claim": c["text"], "verdict": c["verdict"],
                    "value": f"{_value(c['value'], value_unit)} {ci}".strip(), f"n ({unit}s)": c["n"],
                    f"{unit}s to decide": _units(c.get("units_needed"))}
                   | ({"depends on the draw": _split(c.get("split_parts"))} if unit == "draw" else {}))
    return pd.DataFrame(out)


def _split(parts) -> str:
    """The parts whose draws disagree, or "no" (every draw on one side of every bound)."""
    return "no" if pd.isna(parts) or not str(parts) else f"yes: {parts}"
