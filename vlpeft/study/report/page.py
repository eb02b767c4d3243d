"""The report folder: the tables, every figure and index.html — the study's sections (`walker.walk`) as one
offline page, every figure inline as SVG, nothing loaded from the network.

    write_report(study, "reports/tiny")          # runs.csv, curves.csv, claims* (claims_units: per draw), figures/,
                                                 # index.html
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from ...io import write_json
from .. import figures as F
from ..claims import CI_LEVEL, VERDICT_RULES
from ..results import complete, summarize
from .load import Study
from .sections import NEEDS, SECTIONS, VERDICT_COLOURS, Section, sections_of, verdict_table
from .walker import Figure, Note, Question, Table, Verdicts, walk

CSS = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 6px;
vertical-align:top;text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em;vertical-align:top}
img{max-width:100%}.note{color:#a33}.q{color:#444;max-width:900px}nav a{margin-right:1em}"""
WIRING_BANNER = ("<p class='banner' style='background:#fff3cd;border:2px solid #c9a227;padding:.6em 1em'>"
                 "<b>Wiring check — its numbers mean nothing.</b> These runs come from the smoke world (a 16-px world, "
                 "a 20-step model, a few training steps per run): they check that every stage — world, pre-training, "
                 "runs, analysis, figures, this page — works end to end. No claim is judged. The study's answer is "
                 "in <code>reports/tiny/</code> (<code>make study</code>).</p>")


# ---------------------------------------------------------------------------------------------------------
# The tables
def _markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which the project does not depend on)."""
    cells = df.astype(object).where(df.notna(), "").astype(str)
    rows = [list(df.columns), ["---"] * len(df.columns)] + cells.values.tolist()
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows) + "\n"


def _write_tables(study: Study, out: Path) -> None:
    study.runs.to_csv(out / "runs.csv", index=False)
    study.curves.to_csv(out / "curves.csv", index=False)
    table = study.claims
    if study.is_dial:  # its verdict is the last row of the claims files
        table = pd.concat([table, pd.DataFrame([study.dial]).drop(columns="levels").assign(claim="dial")])
    table.to_csv(out / "claims.csv", index=False)
    (out / "claims.md").write_text(_markdown(table.round({"value": 3, "ci_low": 3, "ci_high": 3})))
    study.per_method.to_csv(out / "claims_per_method.csv", index=False)
    study.parts.to_csv(out / "claims_parts.csv", index=False)
    study.units.to_csv(out / "claims_units.csv", index=False)


# ---------------------------------------------------------------------------------------------------------
# The page
def _html_table(df: pd.DataFrame, verdicts: bool = False) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    body = []
    for r in df.to_dict("records"):
        cells = []
        for k, v in r.items():
            style = f" style='background:{VERDICT_COLOURS[v]}'" if verdicts and k == "verdict" else ""
            cells.append(f"<td{style}>{e('' if pd.isna(v) else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(paths: list[Path], alt: str) -> str:
    """A saved figure's SVG, inline as a base64 image: the page loads nothing."""
    svg = next(p for p in paths if p.suffix == ".svg")
    return (f"<figure><img alt='{html.escape(alt)}' "
            f"src='data:image/svg+xml;base64,{base64.b64encode(svg.read_bytes()).decode()}'></figure>")


def _rules_html() -> str:
    try:
        import mistune  # ships with nbconvert (jupyterlab); a plain <pre> is the fallback
        return mistune.html(VERDICT_RULES)
    except ImportError:
        return f"<pre>{html.escape(VERDICT_RULES)}</pre>"


def _rules(study: Study) -> str:
    if study.wiring_check:
        return "<p>None applied: a wiring check judges nothing (the rules are on any study's page).</p>"
    return f"<details><summary>the rules, as declared before the runs</summary>{_rules_html()}</details>"


def _section_html(study: Study, section: Section, out: Path, formats, notes: list[str]) -> str:
    """One section: `walk`'s items as HTML, each figure saved under figures/ and inlined; a figure that is not
    drawn is a note at the top of the page."""
    e = html.escape
    body = []
    for item in walk(study, section):
        match item:
            case Question(section=s):
                body.append(f"<h2 id='{s.key}'>{e(s.title)}</h2><p class='q'><i>{e(s.paper)}.</i> {e(s.text)}</p>")
            case Figure(name=name, caption=caption, chart=chart):
                body.append(_img(F.save(chart, out / "figures", name, formats), caption))
            case Verdicts(table=table):
                body.append(_html_table(table, verdicts=True))
            case Table(caption=caption, table=table):
                body.append(f"<p class='q'>{e(caption)}</p>{_html_table(table)}")
            case Note(text=text):
                notes.append(text)
    return "".join(body)


def _unit_words(study: Study) -> str:
    """The unit of replication, as the page's opening names it."""
    if study.unit == "draw":
        draws = sorted(set(study.units.unit))
        thin = ("; with two draws an interval has one degree of freedom (t multiplier 6.31), and two draws that "
                "happen to agree make it narrow by chance" if len(draws) == 2 else "")
        return (f"pre-training draws ({len(draws)}: each draw's effect over its own runs; every forest plot shows "
                f"each draw's own estimate under the pooled one{thin})")
    return "seeds"


def _page(study: Study, shown: list[Section], body: str, notes: list[str]) -> str:
    """index.html: the verdicts at a glance, the notes, the sections, the rules, and every run's state."""
    e = html.escape
    runs = study.runs
    counts = runs.groupby(["task", "status"]).size().unstack(fill_value=0).reset_index() if len(runs) else runs
    failures = runs[runs.status != "complete"][["status", "task", "variant", "size", "data_ratio", "seed",
                                                 "error", "run_dir"]]
    n_complete, means = len(complete(runs)), _html_table(summarize(runs).round(4))
    nav = "".join(f"<a href='#{s.key}'>{e(s.title)}</a>" for s in shown)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vlpeft report — {e(study.name)}</title><style>{CSS}</style></head><body>
<h1>vlpeft report — study <code>{e(study.name)}</code></h1>{WIRING_BANNER if study.wiring_check else ""}
<p class='q'>Re-run of <i>An Empirical Study of Parameter Efficient Fine-tuning on Vision-Language Pre-train Model</i>
(Tian et al., 2024): {len(runs)} run folders, {n_complete} complete. Effects are in score points (100 × CIDEr or
VQA accuracy) with {CI_LEVEL:.0%} t intervals over {_unit_words(study)}, the unit of replication; the rules were fixed
before any result was seen (end of the page). The evidence behind each verdict, in words, is in claims.md.</p>
<nav>{nav}</nav>
<h2>The answer at a glance</h2>{_html_table(verdict_table(study), verdicts=True)}
{"".join(f"<p class='note'>{e(n)}</p>" for n in notes)}
{body}
<h2>Verdict rules</h2>{_rules(study)}
<h2>Runs</h2>{_html_table(counts) if len(runs) else "<p>no runs found</p>"}{_made_on_html(runs)}
<h3>Runs that are not complete ({len(failures)})</h3>{_html_table(failures) if len(failures) else "<p>none</p>"}
<details><summary>Mean ± std over seeds of every configuration</summary>{means}</details>
</body></html>
"""


MADE_ON = ["numerics", "cpu", "lock", "torch", "transformers", "peft", "standin"]


def _made_on_html(runs: pd.DataFrame) -> str:
    """Where the numbers were made (results.made_on): each combination of numeric path, CPU, lock, versions and
    stand-in, with its count of runs. Nothing for a study from before these were recorded."""
    if not set(MADE_ON) <= set(runs.columns) or runs[MADE_ON].isna().all().all():
        return ""
    table = runs[MADE_ON].fillna("(not recorded)").astype(str).value_counts().rename("runs").reset_index()
    return ("<h3>Where these numbers were made</h3><p class='q'>The numeric path (vlpeft/numerics.py: pinned gives "
            "the same numbers on any x86-64 CPU with AVX2), the CPU, the hash of requirements.lock the environment "
            "was installed from, the library versions, and the pre-trained stand-in's weights (a short sha256 of "
            "model.safetensors; vlpeft/worlds/standins.json holds the committed ones). `vlpeft verify` re-makes a "
            "sample of the runs and compares.</p>" + _html_table(table))


def write_report(study: Study | str | Path, out_dir, formats=("png", "svg")) -> Path:
    """The tables, every figure and index.html (self-contained: figures are inline base64 SVG images) of a study
    → out_dir. `formats` must include svg (the page embeds it); png is for papers and slides."""
    if "svg" not in formats:
        raise ValueError(f"formats {formats!r}: the page embeds the SVG of every figure; include 'svg'")
    study = study if isinstance(study, Study) else Study.load(study)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "figures").glob("*.*"):   # the report's own figures: none of an earlier render stays behind
        if old.suffix in (".png", ".svg"):
            old.unlink()
    _write_tables(study, out)
    if study.wiring_check:  # the mark travels with the report folder (`Study.load` of it reads it back)
        write_json(out / "study.json", {"wiring_check": True})
    notes = [f"a dial study: the paper's figures and claims use the runs at the highest consistency level "
             f"({study.paper_runs['consistency'].fillna(1.0).max():g})"] if study.is_dial else []
    shown = sections_of(study)
    notes += [f"{s.title}: no complete runs of its task — the section is left out" for s in SECTIONS
              if s not in shown and s.key in NEEDS]
    body = "".join(_section_html(study, s, out, formats, notes) for s in shown)
    (out / "index.html").write_text(_page(study, shown, body, notes))
    return out
