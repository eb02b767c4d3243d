"""The report stage: a study's runs → the tidy table, the claims (`vlpeft.claims`), the figures
(`vlpeft.figures`) and one offline HTML page.

    write_report("runs/tiny", "reports/tiny")    # runs.csv, claims.csv/.md, claims_per_method.csv, figures/, index.html

index.html embeds every figure as a base64 SVG image and loads nothing from the network, so it opens offline.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from .claims import CI_LEVEL, VERDICT_RULES, dial_verdict, evaluate_claims, per_method_table
from ..catalog import TASK_INFO
from .figures import FIGURES, TASK_LABEL, fig_dial, save
from .results import complete, highest_consistency, load_curves, load_runs, summarize

VERDICT_COLORS = {"supported": "#d4edda", "not supported": "#f8d7da", "inconclusive": "#fff3cd"}


def _markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which the project does not depend on)."""
    cells = df.astype(object).where(df.notna(), "").astype(str)
    rows = [list(df.columns), ["---"] * len(df.columns)] + cells.values.tolist()
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows) + "\n"


def _pct(x, unit: str = "score points") -> str:
    """A claim's value in its own unit: score points (+1.23 pt), points per doubling, or % of parameters."""
    if pd.isna(x):
        return ""
    if unit == "% of parameters":
        return f"{x:.4g} %"
    return f"{x:+.2f} pt" + ("/doubling" if unit.endswith("per doubling") else "")


def _seeds(x) -> str:
    return "" if pd.isna(x) else "> 1000" if x == float("inf") else f"{x:.0f}"


def _html_table(df: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{e('' if pd.isna(v) else str(v))}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _claims_html(claims: pd.DataFrame) -> str:
    """The claims table: value and CI in score points (claim 11: % of parameters), n = units (seeds), and for an
    inconclusive claim the seeds that would decide it at the measured seed-to-seed spread."""
    e = html.escape
    rows = []
    for c in claims.to_dict("records"):
        unit = c.get("value_unit", "score points")
        ci = "" if pd.isna(c["ci_low"]) else f"[{_pct(c['ci_low'], unit)}, {_pct(c['ci_high'], unit)}]"
        rows.append(f"<tr><td>{e(str(c['claim']))}</td><td>{e(c['text'])}</td>"
                    f"<td style='background:{VERDICT_COLORS[c['verdict']]}'><b>{e(c['verdict'])}</b></td>"
                    f"<td>{e(c['statistic'])}</td><td>{e(_pct(c['value'], unit))}</td><td>{e(ci)}</td>"
                    f"<td>{c['n']}</td><td>{_seeds(c.get('seeds_needed'))}</td>"
                    f"<td class='ev'>{e(c['evidence'])}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ["#", "claim", "verdict", "statistic", "value",
                                             f"{CI_LEVEL:.0%} CI", "n (seeds)", "seeds to decide", "evidence"])
    return f"<table class='claims'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(paths: list[Path], alt: str) -> str:
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


CSS = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 6px;
vertical-align:top}th{background:#f3f3f3}td.ev{font-size:.85em;max-width:520px}
figure{display:inline-block;margin:.5em;vertical-align:top}img{max-width:100%}.note{color:#a33}"""


def write_report(study_dir, out_dir, formats=("png", "svg")) -> Path:
    """Tidy table, claims and every figure of each task with runs → out_dir/{runs.csv, claims.csv, claims.md,
    figures/*.png|svg, index.html}. index.html is self-contained: figures are inline base64 SVG images.
    `formats` must include svg (the page embeds it); png is for papers and slides."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs, curves = load_runs(study_dir), load_curves(study_dir)
    runs.to_csv(out / "runs.csv", index=False)
    claims, dial = evaluate_claims(runs), dial_verdict(runs)
    is_dial = runs["consistency"].nunique() > 1
    table = claims
    if is_dial:  # its verdict is the last row of the claims files
        table = pd.concat([claims, pd.DataFrame([dial]).drop(columns="levels").assign(claim="dial")])
    table.to_csv(out / "claims.csv", index=False)
    (out / "claims.md").write_text(_markdown(table.round({"value": 3, "ci_low": 3, "ci_high": 3})))
    per_method = per_method_table(runs)
    per_method.to_csv(out / "claims_per_method.csv", index=False)

    sections, notes = [], []
    if is_dial:  # its own figure; the paper's figures at the highest level
        try:
            sections.append("<h2>Consistency dial (beyond the paper)</h2>"
                            + _figure(save(fig_dial(runs), out / "figures", "dial", formats), "dial"))
        except Exception as err:  # noqa: BLE001 - one figure that cannot be drawn must not sink the report
            notes.append(f"dial figure: skipped ({type(err).__name__}: {err})")
        runs_for_figures = highest_consistency(runs)
        top = runs_for_figures["consistency"].fillna(1.0).max()
        notes.append(f"the paper's figures and claims below use the runs at the highest consistency level ({top:g})")
        curves = curves[curves.run_dir.isin(runs_for_figures.run_dir)]
    else:
        runs_for_figures = runs
    done = complete(runs_for_figures)
    for task in TASK_INFO:
        if not (done.task == task).any():
            notes.append(f"{task}: no complete runs — its figures are skipped")
            continue
        figs = []
        for name, build in FIGURES.items():
            try:
                paths = save(build(runs_for_figures, curves, task), out / "figures", f"{task}_{name}", formats)
            except Exception as err:  # noqa: BLE001 - one figure that cannot be drawn must not sink the report
                notes.append(f"{task} {name}: skipped ({type(err).__name__}: {err})")
                continue
            figs.append(_figure(paths, f"{task} {name}"))
        sections.append(f"<h2>{html.escape(TASK_LABEL[task])}</h2>" + "".join(figs))

    counts = runs.groupby(["task", "status"]).size().unstack(fill_value=0).reset_index() if len(runs) else runs
    failures = runs[runs.status != "complete"][["status", "task", "variant", "size", "data_ratio", "seed",
                                                 "error", "run_dir"]]
    summary = summarize(runs).round(4)
    e = html.escape
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vlpeft report — {e(Path(study_dir).name)}</title>
<style>{CSS}</style></head><body>
<h1>vlpeft report — study <code>{e(Path(study_dir).name)}</code></h1>
<p>Re-run of <i>An Empirical Study of Parameter Efficient Fine-tuning on Vision-Language Pre-train Model</i>:
{len(runs)} run folders, {len(complete(runs))} complete. Files: runs.csv, claims.csv, claims.md, claims_per_method.csv,
figures/.</p>
<h2>Runs by status</h2>{_html_table(counts) if len(runs) else "<p>no runs found</p>"}
{"".join(f"<p class='note'>{e(n)}</p>" for n in notes)}
<h2>The paper's claims</h2>
<p>Effects in score points (100 × CIDEr or VQA accuracy); {CI_LEVEL:.0%} t intervals over seeds, the unit of
replication; n counts seeds. The rules were fixed before any result was seen.</p>{_claims_html(claims)}
<details><summary>Each method's own mark (claims 1–6, 8, 10, 11)</summary>{_html_table(per_method.round(3))}</details>
<h3>Consistency dial (beyond the paper)</h3>{_claims_html(pd.DataFrame([dial]).assign(claim="dial"))}
<details><summary>Verdict rules</summary>{_rules_html()}</details>
{"".join(sections)}
<h2>Runs that are not complete ({len(failures)})</h2>
{_html_table(failures) if len(failures) else "<p>none</p>"}
<details><summary>Mean ± std over seeds of every configuration</summary>{_html_table(summary)}</details>
</body></html>
"""
    (out / "index.html").write_text(page)
    return out
