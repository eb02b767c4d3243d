"""The report stage: a study's runs → the claims, the figures and one offline HTML page laid out as the paper's
§V, one section per finding, each with its figures and the claims it bears on. The analysis notebook shows the
same sections, from the same list.

    study = Study.load("runs/tiny")              # a study's run folders, or a report folder (its runs.csv, curves.csv)
    write_report(study, "reports/tiny")          # the files below
    show(study, "inconsistent")                  # one section in a notebook

    reports/<study>/  runs.csv, curves.csv        the tidy runs table and every validation curve
                      claims.csv, claims.md       one row per claim (and the dial's): value, interval, verdict, evidence
                      claims_per_method.csv       each method's own mark per claim
                      claims_parts.csv            every part of every claim: what the forest plots draw
                      figures/*.png|svg           every figure
                      index.html                  the page: every figure inline (SVG), nothing loaded from the network
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..catalog import TASK_INFO
from ..errors import VlpeftError
from . import figures as F
from .claims import CI_LEVEL, VERDICT_RULES, dial_verdict, evaluate_claims, parts_table, per_method_table
from .results import complete, highest_consistency, load_curves, load_runs, summarize

VERDICT_COLOURS = {"supported": "#d4edda", "not supported": "#f8d7da", "inconclusive": "#fff3cd"}


class StudyError(VlpeftError, FileNotFoundError):
    """No runs where a study was asked for; the message says which command makes them."""


# ---------------------------------------------------------------------------------------------------------
# A study: its runs and everything computed from them, once
@dataclass
class Study:
    name: str
    source: str                       # the run folders or the report folder it was read from
    runs: pd.DataFrame
    curves: pd.DataFrame
    claims: pd.DataFrame = field(init=False)
    per_method: pd.DataFrame = field(init=False)
    parts: pd.DataFrame = field(init=False)
    dial: dict = field(init=False)

    def __post_init__(self):
        self.claims, self.per_method = evaluate_claims(self.runs), per_method_table(self.runs)
        self.parts, self.dial = parts_table(self.runs), dial_verdict(self.runs)

    @property
    def is_dial(self) -> bool:
        """Runs from models at several consistency levels (a missing level is 1, the embedded model's)."""
        if "consistency" not in self.runs:
            return False
        return pd.to_numeric(self.runs["consistency"], errors="coerce").fillna(1.0).nunique() > 1

    @property
    def paper_runs(self) -> pd.DataFrame:
        """The runs the paper's figures use: for a dial study those at the highest consistency level."""
        return highest_consistency(self.runs) if self.is_dial else self.runs

    @property
    def paper_curves(self) -> pd.DataFrame:
        return self.curves[self.curves.run_dir.isin(self.paper_runs.run_dir)]

    @classmethod
    def load(cls, where: str | Path) -> "Study":
        """From `runs/<study>` (its run folders), from a report folder (its runs.csv and curves.csv), or from a
        bare study name: `runs/<name>` when it holds runs, else the committed `reports/<name>`."""
        where = Path(where)
        candidates = [where] if where.exists() or len(where.parts) > 1 else [Path("runs") / where,
                                                                            Path("reports") / where]
        for folder in candidates:
            if (folder / "runs.csv").is_file():
                return cls(folder.name, str(folder), *_read_report(folder))
            if folder.is_dir() and any(folder.rglob("config.json")):
                return cls(folder.name, str(folder), load_runs(folder), load_curves(folder))
        name = where.name
        raise StudyError(f"no runs of study {name!r} in {' or '.join(map(str, candidates))}. Fill it with "
                         f"`make study` (the tiny preset), `vlpeft study --preset {name}` or "
                         f"`vlpeft sweep --preset {name}`.")

    def claim_row(self, claim) -> dict:
        if claim == "dial":
            return self.dial | {"claim": "dial"}
        return self.claims[self.claims.claim == claim].iloc[0].to_dict()


def _read_report(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A report folder's runs.csv and curves.csv (no curves: an empty table), refused when not a runs table."""
    tables = []
    runs_columns = {"task", "method", "variant", "size", "tune_classifier", "data_ratio", "seed", "status", "best_val",
                    "error", "run_dir"}
    for name, needed in (("runs.csv", runs_columns), ("curves.csv", {"run_dir"})):
        path = folder / name
        if not path.is_file():
            tables.append(pd.DataFrame(columns=sorted(needed)))
            continue
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
            raise StudyError(f"{path}: not a readable table ({str(e).splitlines()[0]}); re-write it with `vlpeft "
                             f"report --study runs/<study>` from the run folders") from None
        if not needed <= set(table.columns):
            raise StudyError(f"{path}: not a vlpeft {name} (no {', '.join(sorted(needed - set(table.columns)))} "
                             f"column); re-write it with `vlpeft report --study runs/<study>`")
        tables.append(table)
    return tables[0], tables[1]


# ---------------------------------------------------------------------------------------------------------
# The sections, as the paper's §V
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


def sections(study: Study) -> list[Section]:
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
    return F.fig_forest(study.parts, claim, row["verdict"], row["text"])


# ---------------------------------------------------------------------------------------------------------
# Text
def _value(x, unit: str = "score points") -> str:
    """A claim's value in its own unit: score points (+1.23 pt), points per doubling, or % of parameters."""
    if pd.isna(x):
        return ""
    if unit == "% of parameters":
        return f"{x:.4g} %"
    return f"{x:+.2f} pt" + ("/doubling" if unit.endswith("per doubling") else "")


def _seeds(x) -> str:
    return "" if pd.isna(x) else "> 1000" if x == float("inf") else f"{x:.0f}"


def verdict_table(study: Study, claims=None) -> pd.DataFrame:
    """Claim, its text, the verdict, its value with the 90 % interval, n (units) and the seeds that would decide
    it — one row per claim (the dial's last for a dial study); the evidence is in claims.md."""
    rows = [study.claim_row(c) for c in (claims or [*study.claims.claim, *(["dial"] if study.is_dial else [])])]
    out = []
    for c in rows:
        unit = c.get("value_unit", "score points")
        ci = "" if pd.isna(c["ci_low"]) else f"[{_value(c['ci_low'], unit)}, {_value(c['ci_high'], unit)}]"
        out.append({"#": c["claim"], "claim": c["text"], "verdict": c["verdict"],
                    "value": f"{_value(c['value'], unit)} {ci}".strip(), "n": c["n"],
                    "seeds to decide": _seeds(c.get("seeds_needed"))})
    return pd.DataFrame(out)


def _markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which the project does not depend on)."""
    cells = df.astype(object).where(df.notna(), "").astype(str)
    rows = [list(df.columns), ["---"] * len(df.columns)] + cells.values.tolist()
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows) + "\n"


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


# ---------------------------------------------------------------------------------------------------------
# The notebook's view
def show(study: Study | None, key: str) -> None:
    """Display one section in a notebook: its question, figures, verdict table and forest plots."""
    from IPython.display import Markdown, display
    if study is None:
        return
    s = SECTION[key]
    if key == "dial" and not study.is_dial:
        display(Markdown("*Not a dial study: run `make dial` for the consistency dial.*"))
        return
    display(Markdown(f"*{s.paper}.* {s.text}"))
    for name in s.figures:
        chart, why = figure(study, name)
        display(chart if chart is not None else Markdown(f"*{why}*"))
    if s.claims:
        display(verdict_table(study, s.claims).style.hide(axis="index").set_properties(
            **{"text-align": "left", "white-space": "pre-wrap"}))
        for c in s.claims:
            chart = forest(study, c)
            if chart is not None:
                display(chart)


def summary(study: Study | None):
    """What was loaded, and every verdict at a glance."""
    from IPython.display import Markdown, display
    if study is None:
        return None
    done = complete(study.runs)
    display(Markdown(f"Study **{study.name}** from `{study.source}`: {len(study.runs)} runs, {len(done)} complete."))
    return verdict_table(study).style.hide(axis="index").set_properties(
        **{"text-align": "left", "white-space": "pre-wrap"}).map(
        lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}" if v in VERDICT_COLOURS else "",
        subset=["verdict"])


def load_or_say(where) -> Study | None:
    """`Study.load`, or None after printing which command fills the study (a notebook never trains)."""
    try:
        return Study.load(where)
    except StudyError as e:
        print(e)
        return None


# ---------------------------------------------------------------------------------------------------------
# The page
CSS = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 6px;
vertical-align:top;text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:.5em;vertical-align:top}
img{max-width:100%}.note{color:#a33}.q{color:#444;max-width:900px}nav a{margin-right:1em}"""


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


def _section_html(study: Study, s: Section, out: Path, formats, notes: list[str]) -> str:
    e = html.escape
    body = [f"<h2 id='{s.key}'>{e(s.title)}</h2><p class='q'><i>{e(s.paper)}.</i> {e(s.text)}</p>"]
    for name in s.figures:
        chart, why = figure(study, name)
        if chart is None:
            notes.append(why)
            continue
        body.append(_img(F.save(chart, out / "figures", name, formats), name))
    if s.claims:
        body.append(_html_table(verdict_table(study, s.claims), verdicts=True))
        for c in s.claims:
            chart = forest(study, c)
            if chart is not None:
                body.append(_img(F.save(chart, out / "figures", f"claim_{c}", formats), f"claim {c}"))
    return "".join(body)


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
    notes = [f"a dial study: the paper's figures and claims use the runs at the highest consistency level "
             f"({study.paper_runs['consistency'].fillna(1.0).max():g})"] if study.is_dial else []
    shown = sections(study)
    notes += [f"{s.title}: no complete runs of its task — the section is left out" for s in SECTIONS
              if s not in shown and s.key in NEEDS]
    body = "".join(_section_html(study, s, out, formats, notes) for s in shown)
    runs = study.runs
    counts = runs.groupby(["task", "status"]).size().unstack(fill_value=0).reset_index() if len(runs) else runs
    failures = runs[runs.status != "complete"][["status", "task", "variant", "size", "data_ratio", "seed",
                                                 "error", "run_dir"]]
    e = html.escape
    nav = "".join(f"<a href='#{s.key}'>{e(s.title)}</a>" for s in shown)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vlpeft report — {e(study.name)}</title><style>{CSS}</style></head><body>
<h1>vlpeft report — study <code>{e(study.name)}</code></h1>
<p class='q'>Re-run of <i>An Empirical Study of Parameter Efficient Fine-tuning on Vision-Language Pre-train Model</i>
(Tian et al., 2024): {len(runs)} run folders, {len(complete(runs))} complete. Effects are in score points (100 × CIDEr or
VQA accuracy) with {CI_LEVEL:.0%} t intervals over seeds, the unit of replication; the rules were fixed before any
result was seen (end of the page). The evidence behind each verdict, in words, is in claims.md.</p>
<nav>{nav}</nav>
<h2>The answer at a glance</h2>{_html_table(verdict_table(study), verdicts=True)}
{"".join(f"<p class='note'>{e(n)}</p>" for n in notes)}
{body}
<h2>Verdict rules</h2><details><summary>the rules, as declared before the runs</summary>{_rules_html()}</details>
<h2>Runs</h2>{_html_table(counts) if len(runs) else "<p>no runs found</p>"}
<h3>Runs that are not complete ({len(failures)})</h3>{_html_table(failures) if len(failures) else "<p>none</p>"}
<details><summary>Mean ± std over seeds of every configuration</summary>{_html_table(summarize(runs).round(4))}</details>
</body></html>
"""
    (out / "index.html").write_text(page)
    return out
