"""Claims 7, 8 and 10: the two families of methods (embedding composition: prompt, prefix; layer composition:
LoRA, adapters) against each other and against full fine-tuning, at their reference sizes."""
from __future__ import annotations

import math

from .estimators import FAMILIES, LAYER, contrast, methods_in, reference_cells
from .judges import COMPARABLE_CAPTION, COMPARABLE_VQA, LAG_VQA, MIN_METHODS, Judge, Mark, Verdict, all_parts, gain
from .parts import Part, claim, evidence, result, unit_note
from .stats import mean_of


def both_tasks(number: int, statistic: str, per: dict):
    """Claims 7 and 9: an advantage judged per task (gain, MIN_GAIN of the task), required on both (k = 2).
    The value shown is the task whose interval reaches lower."""
    parts = {t: Part(t, e, gain(t), 2) for t, e in per.items()}
    known = {t: e for t, e in per.items() if e is not None and e.n}
    weaker = min(known, key=lambda t: known[t].lo if math.isfinite(known[t].lo) else -math.inf) if known else None
    note, needed = unit_note(list(parts.values()))
    return result(number, f"{statistic} ({weaker or 'no'} task: the lower bound)", known.get(weaker),
                  all_parts([p.mark for p in parts.values()]), evidence(list(parts.values())) + note, needed,
                  parts=list(parts.values())), []


@claim(7, "Layer composition (LoRA, adapters) beats embedding composition (prompt, prefix) on both tasks.")
def layer_beats_embedding(d):
    """Per task, layer family score minus embedding family score, judged gain with MIN_GAIN of the task;
    *supported* when both tasks are **yes**, *not supported* when either is **no** (k = 2). Value: the task with
    the lower bound."""
    per = {t: contrast(reference_cells(d[d.task == t]), "layer", "embedding") for t in ("caption", "vqa")}
    return both_tasks(7, "layer − embedding family score at reference sizes", per)


@claim(8, "On VQA layer composition is comparable to full fine-tuning; embedding composition lags far behind.")
def vqa_layer_near_full_embedding_far(d):
    """VQA, family score minus full fine-tuning: layer judged *comparable* (±COMPARABLE_VQA), embedding judged
    *lags far* (LAG_VQA); both needed (k = 2). Value: layer − embedding gap. Each method's gap is reported."""
    d = d[d.task == "vqa"]
    tbl = reference_cells(d)
    comparable, lags = Judge("equiv", COMPARABLE_VQA), Judge("lag", LAG_VQA)
    layer = Part("layer − full", contrast(tbl, "layer", "full"), comparable, 2, label="comparable")
    emb = Part("embedding − full", contrast(tbl, "embedding", "full"), lags, 2, label="lags far")
    gap = layer.estimate - emb.estimate if layer.estimate is not None and emb.estimate is not None else None
    rows = []
    for m in methods_in(d):
        j = comparable if m in LAYER else lags
        rows.append(Part(m, contrast(tbl, m, "full"), j).method_row(
            8, m, "method at reference size − full FT", "judged: comparable" if m in LAYER else "judged: lags far"))
    each = "; ".join(f"{r['method']} {'n/a' if r['estimate'] != r['estimate'] else format(r['estimate'], '+.2f')} "
                     f"({r['mark']})" for r in rows)   # n/a: no estimate (a NaN)
    note, needed = unit_note([layer, emb])
    return result(8, "layer − embedding family score (reference sizes)", gap, all_parts([layer.mark, emb.mark]),
                  f"{evidence([layer, emb])}; per method: {each or 'none'}{note}", needed, parts=[layer, emb]), rows


@claim(10, "Caption: every PEFT except prompt-tuning scores at least as well as full fine-tuning; both families are "
           "comparable to full fine-tuning there.")
def caption_peft_at_least_full(d):
    """Caption, reference sizes: (a) prefix, LoRA and both adapters each minus full fine-tuning judged
    non-inferior (COMPARABLE_CAPTION); (b) each family minus full fine-tuning judged *comparable*
    (±COMPARABLE_CAPTION). All six parts needed (k = 6); prompt-tuning (the paper's exception) is reported, not
    judged. Value: mean of (a)."""
    d = d[d.task == "caption"]
    tbl = reference_cells(d)
    atleast, comparable = Judge("noninf", COMPARABLE_CAPTION), Judge("equiv", COMPARABLE_CAPTION)
    methods = [m for m in methods_in(d) if m != "prompt"]
    k = len(methods) + len(FAMILIES)
    per = {m: Part(f"{m} − full", contrast(tbl, m, "full"), atleast, k, label="at least as well") for m in methods}
    fams = {f: Part(f"{f} family − full", contrast(tbl, f, "full"), comparable, k, label="comparable")
            for f in FAMILIES}
    marks = [p.mark for p in [*per.values(), *fams.values()]]
    verdict = all_parts(marks) if len(per) >= MIN_METHODS else (
        Verdict.NOT_SUPPORTED if Mark.NO in marks else Verdict.INCONCLUSIVE)
    prompt = Part("prompt − full", contrast(tbl, "prompt", "full"), label="the paper's exception, not judged")
    note, needed = unit_note([*per.values(), *fams.values()])
    statistic = "method at reference size − full FT"
    rows = [Part(m, p.estimate, atleast, k).method_row(10, m, statistic) for m, p in per.items()]
    if "prompt" in set(d.method):
        rows.insert(0, Part("prompt", prompt.estimate).method_row(10, "prompt", statistic))
    return result(10, "method − full FT at reference sizes (mean over prefix, LoRA, adapters)",
                  mean_of([p.estimate for p in per.values()]), verdict,
                  evidence([*per.values(), *fams.values(), prompt]) + note, needed,
                  parts=[*per.values(), *fams.values(), prompt]), rows
