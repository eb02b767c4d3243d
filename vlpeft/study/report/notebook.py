"""What the analysis notebook (`99_analysis`) calls: the study, or the command that fills it; every verdict at a
glance; and one section — the same `walk` the page renders, displayed in the notebook.

    s = load_or_say("tiny")        # None, after printing which command fills the study
    summary(s)                     # what was loaded, and every verdict
    show(s, "inconsistent")        # one section: its question, figures, verdict table and forest plots
"""
from __future__ import annotations

from ..results import complete
from .families import (
    get_factor,
    premise_problems,
    scores_chart,
    scores_for_page,
    scores_side_by_side,
    verdicts_side_by_side,
    what_changes,
)
from .load import Study, StudyError
from .sections import SECTION, VERDICT_COLOURS, verdict_table
from .walker import Figure, Note, Question, Table, Verdicts, walk


def load_or_say(where) -> Study | None:
    """`Study.load`, or None after printing which command fills the study (a notebook never trains)."""
    try:
        return Study.load(where)
    except StudyError as e:
        print(e)
        return None


def _styled(table):
    """A verdict table as the notebook shows it: no index, text left-aligned and wrapped."""
    return table.style.hide(axis="index").set_properties(**{"text-align": "left", "white-space": "pre-wrap"})


def summary(study: Study | None):
    """What was loaded, and every verdict at a glance."""
    from IPython.display import Markdown, display  # only where a notebook calls it: `vlpeft report` starts faster
    if study is None:
        return None
    done = complete(study.runs)
    display(Markdown(f"Study **{study.name}** from `{study.source}`: {len(study.runs)} runs, {len(done)} complete."))
    return _styled(verdict_table(study)).map(
        lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}" if v in VERDICT_COLOURS else "",
        subset=["verdict"])


def show_families(studies: dict[str, Study | None], factor: str = "recipe") -> None:
    """Two studies of one grid side by side (`families`; by default two pre-training recipes): what the factor
    changes, the verdicts, the scores — or, when they are not one grid in two values of the factor, why not
    (`families.premise_problems`), and nothing else."""
    from IPython.display import Markdown, display
    if any(s is None for s in studies.values()):
        return
    f = get_factor(factor)
    names = list(studies)
    if problems := premise_problems(list(studies.values()), factor):
        display(Markdown(f"*Not one study from two {f.plural}, so not shown side by side: {'; '.join(problems)}.*"))
        return
    verdicts, scores = verdicts_side_by_side(studies), scores_side_by_side(studies)
    display(Markdown(f"**What the {f.noun} changes**\n\n" + "".join(f"- {c}\n" for c in
                                                                     what_changes(verdicts, scores, names))))
    display(_styled(verdicts))
    display(scores_chart(scores, names, f.noun))
    display(_styled(scores_for_page(scores, names)))


def show(study: Study | None, key: str) -> None:
    """Display one section in a notebook: `walk`'s items — its question, figures, verdict table and forest plots,
    and a note for what the study cannot show."""
    from IPython.display import Markdown, display
    if study is None:
        return
    for item in walk(study, SECTION[key]):
        match item:
            case Question(section=s):
                display(Markdown(f"*{s.paper}.* {s.text}"))
            case Figure(chart=chart):
                display(chart)
            case Verdicts(table=table):
                display(_styled(table))
            case Table(caption=caption, table=table):
                display(Markdown(f"*{caption}*"), table)
            case Note(text=text):
                display(Markdown(f"*{text}*"))
