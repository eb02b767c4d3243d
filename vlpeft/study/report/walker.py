"""The one walk over a section: its items in the order both media show them. The page (`page`) and the analysis
notebook (`notebook`) each render the same items in their own medium.

    for item in walk(study, SECTION["inconsistent"]):
        ...   # Question, then per figure a Figure (or a Note: why it is not drawn), the fairness check's Table (VQA,
              # when the runs record the question prior), Verdicts, a Figure per forest
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import altair as alt
import pandas as pd

from ..results import fairness
from .load import Study
from .sections import Section, figure, forest, verdict_table


@dataclass(frozen=True)
class Question:
    """What the section asks, and where the paper shows it."""
    section: Section


@dataclass(frozen=True, eq=False)
class Figure:
    name: str                   # its file name in the report's figures/: "caption_data_ratio", "claim_4"
    caption: str                # its alternative text on the page
    chart: alt.TopLevelMixin


@dataclass(frozen=True)
class Note:
    """Something the study cannot show here, and why (a figure its runs cannot draw, a dial it has not)."""
    text: str


@dataclass(frozen=True, eq=False)
class Table:
    """A table the section shows besides its verdicts (the VQA section's fairness check)."""
    caption: str
    table: pd.DataFrame


@dataclass(frozen=True, eq=False)
class Verdicts:
    """The verdict table of the section's claims."""
    table: pd.DataFrame


FAIRNESS = ("Fairness check (schedule.md §2): each plain PEFT configuration at 100 % data, its best validation "
            "accuracy minus the question-type prior of its validation questions ({prior:.3f}), in accuracy points, per "
            "pre-training draw: a method at or below 0 scores no better than the question alone.")
Item = Question | Figure | Note | Table | Verdicts
BEYOND = ("Beyond the paper's methods: {}. The figures show them beside the paper's families; they enter no claim "
          "(claims 1–11, their verdicts and marks judge the paper's five PEFT methods and full fine-tuning).")


def walk(study: Study, section: Section) -> Iterator[Item]:
    """The section's items, in the order both media show them: its question, each figure (or a note of why it is
    not drawn), the verdict table of its claims, and each claim's forest plot (when any part could be estimated).
    The dial's section of a study without a dial is one note; the families section of a study with methods beyond
    the paper's says that they enter no claim."""
    if section.key == "dial" and not study.is_dial:
        yield Note("Not a dial study: run `make dial` for the consistency dial.")
        return
    yield Question(section)
    if section.key == "families" and study.extra_methods:
        yield Note(BEYOND.format(", ".join(study.extra_methods)))
    for name in section.figures:
        chart, why = figure(study, name)
        yield Figure(name, name, chart) if chart is not None else Note(why)
    if section.key == "inconsistent" and len(fair := fairness(study.runs)):
        yield Table(FAIRNESS.format(prior=fair.attrs["prior"]), fair.round(2))
    if section.claims:
        yield Verdicts(verdict_table(study, section.claims))
        for c in section.claims:
            chart = forest(study, c)
            if chart is not None:
                yield Figure(f"claim_{c}", f"claim {c}", chart)
