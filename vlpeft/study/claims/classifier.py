"""Claims 3 and 6: what fine-tuning the final classifier too ("+ classifier") does to each PEFT method."""
from __future__ import annotations

from .estimators import LAYER, PEFT, cls_gain, contrast, methods_in, reference_cells, task_runs
from .judges import COMPARABLE_VQA, REPORTED, Judge, Mark, Verdict, all_parts, every_method, gain
from .parts import Part, claim, evidence, result, unit_note
from .stats import mean_of

STATISTIC = "'+ classifier' − plain"


@claim(3, "Caption: '+ classifier' helps prompt-tuning and hurts the layer-composition methods.")
def caption_classifier_helps_prompt_hurts_layers(d):
    """Per method and unit, '+ classifier' minus plain on cells matched by (size, data ratio). *Supported* when
    prompt-tuning's gain is **yes** and every layer method's loss (the negated gain) is **yes** (MIN_GAIN_CAPTION);
    *not supported* when any of these is **no** (k = 1 + layer methods); prefix-tuning is reported, not judged.
    Value: prompt's gain minus the layer methods' mean gain, per unit."""
    d, judge = task_runs(d, "caption"), gain("caption")
    per = {m: cls_gain(d[d.method == m]) for m in methods_in(d)}
    layer = [m for m in LAYER if m in per]
    k = 1 + len(layer)
    helps = Part("prompt gain", per.get("prompt"), judge, k, label="helps")
    # a layer method's loss (its negated gain) is what is judged, and drawn; the evidence shows the gain, so marked
    losses = {m: Part(f"{m} loss (− gain)", -per[m] if per[m] is not None else None, judge, k) for m in layer}
    hurts = {m: Part(f"{m} gain", per[m], judge, k, label="hurts", mark=losses[m].mark) for m in layer}
    marks = [helps.mark, *(p.mark for p in hurts.values())]
    verdict = all_parts(marks) if "prompt" in per and layer else (
        Verdict.NOT_SUPPORTED if Mark.NO in marks else Verdict.INCONCLUSIVE)
    layer_mean = mean_of([per[m] for m in layer])
    value = per["prompt"] - layer_mean if per.get("prompt") is not None and layer_mean is not None else None
    prefix = [Part("prefix gain", per["prefix"], label=REPORTED, mark=Mark.NOT_JUDGED)] if "prefix" in per else []
    note, needed = unit_note([helps, *losses.values()])
    judged = {"prompt": (helps.mark, "judged: helps")} | {m: (p.mark, "judged: hurts (negated gain)")
                                                           for m, p in hurts.items()}
    rows = []
    for m in per:
        mark, detail = judged.get(m, (Mark.NOT_JUDGED, ""))
        rows.append(Part(m, per[m], judge, k, mark=mark).method_row(3, m, STATISTIC, detail))
    return result(3, "+cls gain of prompt − mean +cls gain of layer methods (paired)", value, verdict,
                  evidence([helps, *hurts.values(), *prefix]) + note, needed,
                  parts=[helps, *losses.values(), *prefix]), rows


@claim(6, "VQA: '+ classifier' raises every method, up to or above full fine-tuning.")
def vqa_classifier_raises_every_method(d):
    """(a) every method's paired '+ classifier' gain (as claim 3) judged gain with MIN_GAIN_VQA; (b) the mean over
    methods of '+ classifier' at the reference size minus full fine-tuning, matched by (data ratio, unit), judged
    non-inferior with COMPARABLE_VQA (each method's own mark is reported). *Supported* when (a) is supported and
    (b) is yes; *not supported* when (a) is not supported or (b) is no."""
    d, judge = d[d.task == "vqa"], gain("vqa")
    peft = d[d.method.isin(PEFT)]
    per = {m: cls_gain(peft[peft.method == m]) for m in methods_in(peft)}
    k = max(sum(e is not None for e in per.values()), 1) + 1
    gains = {m: Part(f"{m} +cls gain", e, judge, k) for m, e in per.items()}
    every = every_method({m: p.mark for m, p in gains.items()})
    tbl = reference_cells(d, cls=True)
    up = Judge("noninf", COMPARABLE_VQA)
    each = {m: contrast(tbl, m, "full") for m in per}
    mean_vs_full = mean_of(list(each.values())) if all(e is not None for e in each.values()) else None
    up_part = Part("mean over methods of +cls at reference size − full FT", mean_vs_full, up, k, label="up to full")
    verdict = (Verdict.NOT_SUPPORTED if every == Verdict.NOT_SUPPORTED or up_part.mark == Mark.NO
               else Verdict.SUPPORTED if every == Verdict.SUPPORTED and up_part.mark == Mark.YES
               else Verdict.INCONCLUSIVE)
    vs = "; ".join(f"{m} {each[m] if each[m] else 'n/a'} ({up.mark(each[m])})" for m in each)
    note, needed = unit_note([*gains.values(), up_part])
    rows = [gains[m].method_row(6, m, STATISTIC, f"+cls at reference size − full FT: "
                                f"{each[m] if each[m] else 'n/a'} (up to full: {up.mark(each[m])})") for m in per]
    return result(6, "+cls gain, paired (mean over methods)", mean_of(list(per.values())), verdict,
                  evidence([*gains.values(), up_part]) + f"; per method vs full: {vs or 'none'}" + note,
                  needed, parts=[*gains.values(), up_part]), rows
