"""Claims 2 and 5: how the score changes with the fine-tunable parameter size (paper Fig. 3 and 4, parameter
size): an interior optimum on the consistent task, a monotone rise on the inconsistent one."""
from __future__ import annotations

from .estimators import methods_in, size_profile, task_runs
from .judges import MIN_METHODS, Judge, Mark, Verdict, every_method, gain
from .parts import Part, claim, result, unit_note
from .stats import MIN_UNITS, Estimate, mean_of


def _size_claim(d, task: str, per_method):
    """A size-profile judgement per method, Bonferroni over the k methods that have a profile."""
    d, judge = task_runs(d, task), gain(task)
    methods = methods_in(d)
    k = max(sum(size_profile(d[d.method == m]) is not None for m in methods), 1)
    return judge, k, {m: per_method(d[d.method == m], judge, k) for m in methods}


def optimum(g, judge: Judge, k: int) -> tuple[Estimate | None, Estimate | None, Mark]:
    """One method: (interior − smallest, interior − largest, mark of 'an interior optimum')."""
    prof = size_profile(g)
    if prof is None:
        return None, None, Mark.TOO_FEW_POINTS
    interior = prof[prof.columns[1:-1]].mean(axis=1)
    small, large = Estimate(interior - prof[prof.columns[0]]), Estimate(interior - prof[prof.columns[-1]])
    a, b = judge.mark(small, 2 * k), judge.mark(large, 2 * k)
    for bad in (Mark.TOO_FEW_UNITS, Mark.TOO_FEW_POINTS):
        if bad in (a, b):
            return small, large, bad
    return small, large, Mark.YES if a == b == Mark.YES else Mark.NO if Mark.NO in (a, b) else Mark.UNCLEAR


def monotone(g, judge: Judge, k: int) -> tuple[Estimate | None, list[Estimate], Mark]:
    """One method: (largest − smallest, the consecutive steps, mark of 'a monotone rise')."""
    prof = size_profile(g)
    if prof is None:
        return None, [], Mark.TOO_FEW_POINTS
    cols = list(prof.columns)
    rise = Estimate(prof[cols[-1]] - prof[cols[0]])
    steps = [Estimate(prof[b] - prof[a]) for a, b in zip(cols, cols[1:])]
    mark = judge.mark(rise, k)
    if mark.undecidable:
        return rise, steps, mark
    kk = k * len(steps)
    drops = [s.n >= MIN_UNITS and s.interval(kk)[1] < 0 and s.est <= -judge.margin for s in steps]
    return rise, steps, Mark.NO if any(drops) else mark


@claim(2, "Caption: score is not monotone in parameter size (an optimum exists; too many parameters over-fit).")
def caption_has_a_size_optimum(d):
    """Per method and unit, plain variants at every data ratio where the unit has the method's whole size grid
    (≥ {MIN_LEVELS} sizes), averaged over those ratios: the mean score of the interior sizes minus the smallest
    size, and minus the largest size. A method shows an *optimum* when both contrasts are judged gain-**yes**
    (MIN_GAIN_CAPTION); *none* when either is **no** (Bonferroni over 2 contrasts × methods). *Supported* when a
    strict majority of ≥ {MIN_METHODS} evaluable methods show an optimum, *not supported* when a strict majority
    show none. Value: mean over methods of interior − largest ("too many parameters over-fit")."""
    judge, k, res = _size_claim(d, "caption", optimum)
    marks = {m: r[2] for m, r in res.items()}
    evaluable = [m for m, v in marks.items() if v in (Mark.YES, Mark.NO, Mark.UNCLEAR)]
    yes, no = (sum(marks[m] == v for m in evaluable) for v in (Mark.YES, Mark.NO))
    verdict = (Verdict.INCONCLUSIVE if len(evaluable) < MIN_METHODS else Verdict.SUPPORTED if yes > len(evaluable) / 2
               else Verdict.NOT_SUPPORTED if no > len(evaluable) / 2 else Verdict.INCONCLUSIVE)
    words = {Mark.YES: "optimum", Mark.NO: "no optimum"}
    text = [f"{m}: interior − smallest {small if small is not None else 'n/a'}, interior − largest "
            f"{large if large is not None else 'n/a'} ({words.get(mark, mark)})"
            for m, (small, large, mark) in res.items()]
    parts = [Part(m, e, judge, 2 * k, mark=r[2]) for m, r in res.items() for e in r[:2] if e is not None]
    note, needed = unit_note(parts)
    rows = [Part(m, large, judge, 2 * k, mark=marks[m]).method_row(
                2, m, "interior − largest size", f"interior − smallest: {small}" if small else "")
            for m, (small, large, _) in res.items()]
    return result(2, "mean score of interior sizes − largest size (mean over methods)",
                  mean_of([r[1] for r in res.values()]), verdict,
                  f"optimum in {yes} of {len(evaluable)} evaluable methods; " + ("; ".join(text) or "no runs") + note,
                  needed, parts=[Part(f"{m}: interior − {side}", e, judge, 2 * k)
                                 for m, r in res.items() for side, e in zip(("smallest", "largest"), r[:2])]), rows


@claim(5, "VQA: score rises with parameter size, for every method.")
def vqa_rises_with_size(d):
    """Per method and unit, the size profile of claim 2 on VQA. *Monotone rise* = largest − smallest size judged
    gain-**yes** (MIN_GAIN_VQA) **and** no consecutive step is a significant drop (Bonferroni interval over the
    steps wholly below 0 and estimate ≤ −MIN_GAIN_VQA). **No** when the rise is **no** or any step drops."""
    judge, k, res = _size_claim(d, "vqa", monotone)
    text = []
    for m, (rise, steps, mark) in res.items():
        st = ", ".join(f"{s.est:+.2f}" for s in steps)
        text.append(f"{m}: largest − smallest {rise if rise else 'n/a'}, steps [{st}] ({mark})")
    parts = {m: Part(m, r[0], judge, k, mark=r[2]) for m, r in res.items()}
    note, needed = unit_note(list(parts.values()))
    rows = [parts[m].method_row(5, m, "largest − smallest size", "steps: " + ", ".join(str(s) for s in r[1]))
            for m, r in res.items()]
    return result(5, "largest − smallest size (mean over methods)", mean_of([r[0] for r in res.values()]),
                  every_method({m: r[2] for m, r in res.items()}), ("; ".join(text) or "no runs") + note,
                  needed, parts=[Part(f"{m}: largest − smallest", p.estimate, judge, k, mark=p.mark)
                                 for m, p in parts.items()]), rows
