"""Claim 11: the parameter budget — how small a share of the model prompt-tuning trains (paper §V-C)."""
from __future__ import annotations

import numpy as np

from ..results import reference_sizes
from .estimators import N_METHODS, PEFT
from .judges import PROMPT_PCT, Mark, Verdict
from .parts import Part, claim, result
from .stats import Estimate

NOTE = ("the check speaks for the runs given: the tiny embedded model (d = 128) has other parameter ratios than "
        "BLIP-base / mPLUG-base")
UNIT = "% of parameters"


@claim(11, f"Prompt-tuning trains less than 0.16 % of the parameters, the fewest of the {N_METHODS} methods.")
def prompt_trains_fewest(d):
    """Deterministic, on the plain (no '+ classifier') runs given: (a) every prompt-tuning run trains fewer than
    PROMPT_PCT = {PROMPT_PCT:g} % of all parameters; (b) on each task, prompt-tuning's trainable % at its smallest
    size is below every other PEFT method's at its smallest size, and likewise at the reference sizes. The tiny
    embedded model (d = 128) has other ratios than BLIP-base or mPLUG-base (p·d/N): the check speaks for the runs
    given, not for the paper's model. Inconclusive without prompt runs or without another method to compare."""
    d = d[d.method.isin(PEFT) & ~d.tune_classifier].copy()
    if "trainable_pct" not in d or d["trainable_pct"].isna().all():
        if {"trainable_params", "all_params"} <= set(d):
            d["trainable_pct"] = 100 * d.trainable_params / d.all_params
        else:
            d["trainable_pct"] = np.nan
    d = d[np.isfinite(d["trainable_pct"].astype(float))]
    prompt = d[d.method == "prompt"]
    statistic = "largest trainable % of a plain prompt-tuning run"
    if prompt.empty:
        return result(11, statistic, None, Verdict.INCONCLUSIVE,
                      f"no plain prompt-tuning run with a trainable % ; {NOTE}", value_unit=UNIT), []
    worst = float(prompt.trainable_pct.max())
    below = worst < PROMPT_PCT
    parts, fewest, compared, rows = [], True, 0, []
    for task, g in d.groupby("task"):
        ref = reference_sizes(g)
        p = g[g.method == "prompt"]
        if p.empty:
            continue
        for label, pick in (("smallest size", lambda h: h["size"] == h["size"].min()),
                            ("reference size", lambda h: h["size"] == ref.get(h.method.iloc[0]))):
            pct = {m: float(h[pick(h)].trainable_pct.max()) for m, h in g.groupby("method")}
            pct = {m: v for m, v in pct.items() if np.isfinite(v)}
            others = {m: v for m, v in pct.items() if m != "prompt"}
            if "prompt" not in pct or not others:
                continue
            compared += 1
            ok = all(pct["prompt"] < v for v in others.values())
            fewest &= ok
            parts.append(f"{task}, {label}: prompt {pct['prompt']:.4g}% vs " +
                         ", ".join(f"{m} {v:.4g}%" for m, v in others.items()) + (" (fewest)" if ok else
                                                                                    " (NOT the fewest)"))
        top = float(p.trainable_pct.max())
        part = Part("prompt", Estimate.exact(top, len(p)), mark=Mark.YES if top < PROMPT_PCT else Mark.NO)
        rows.append(part.method_row(11, "prompt", f"{task}: largest trainable % (plain runs)",
                                    "deterministic; n_units = runs"))
    verdict = (Verdict.NOT_SUPPORTED if not below or (compared and not fewest) else
               Verdict.SUPPORTED if compared and fewest else Verdict.INCONCLUSIVE)
    text = (f"{len(prompt)} plain prompt runs, largest {worst:.4g}% ({'<' if below else '≥'} {PROMPT_PCT:g}%); "
            + ("; ".join(parts) if parts else "no other PEFT method to compare with") + f"; {NOTE}")
    return result(11, statistic + " (n = runs)", Estimate.exact(worst, len(prompt)), verdict, text,
                  value_unit=UNIT), rows
