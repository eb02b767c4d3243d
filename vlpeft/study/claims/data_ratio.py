"""Claims 1 and 4: how the score changes with the training-data ratio (paper Fig. 3 and 4, data size)."""
from __future__ import annotations

from .estimators import methods_in, ratio_change, task_runs
from .judges import FLAT_CAPTION, Judge, every_method, gain
from .parts import Part, claim, evidence, result, unit_note
from .stats import mean_of

STATISTIC = "change lowest → highest data ratio"


def trend(d, number: int, task: str, judge: Judge):
    """Per method, the lowest → highest data-ratio change judged by `judge`; Bonferroni over the methods."""
    d = task_runs(d, task)
    per = {m: ratio_change(d[d.method == m]) for m in methods_in(d)}
    k = max(sum(e is not None for e in per.values()), 1)
    parts = {m: Part(m, e, judge, k) for m, e in per.items()}
    note, needed = unit_note(list(parts.values()))
    rows = [p.method_row(number, m, STATISTIC) for m, p in parts.items()]
    return result(number, STATISTIC + " (mean over methods)", mean_of(list(per.values())),
                  every_method({m: p.mark for m, p in parts.items()}),
                  (evidence(list(parts.values())) or "no runs") + note, needed,
                  parts=list(parts.values())), rows


@claim(1, "Caption (consistent): score does not depend on data ratio.")
def caption_flat_in_data(d):
    """Per method and unit, the change from the lowest to the highest data ratio: a least-squares line in
    log2(ratio) with one intercept per series (variant, size) inside the unit (≥ MIN_LEVELS = {MIN_LEVELS}
    ratios), times the log2 span of the grid. Judged *flat* with FLAT_CAPTION."""
    return trend(d, 1, "caption", Judge("equiv", FLAT_CAPTION))


@claim(4, "VQA (inconsistent): score rises with data ratio, for every method.")
def vqa_rises_with_data(d):
    """As claim 1 on VQA, judged gain with MIN_GAIN_VQA. Caveat: VQA training is epoch-based (the same number of
    epochs at every ratio), so a larger data ratio also trains for more steps; the ratio effect is confounded
    with training length."""
    return trend(d, 4, "vqa", gain("vqa"))
