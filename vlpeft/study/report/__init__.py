"""The report stage: a study's runs → the claims, the figures and one offline HTML page laid out as the paper's
§V, one section per finding, each with its figures and the claims it bears on. The analysis notebook shows the
same sections, from the same walk.

    study = Study.load("runs/tiny")              # a study's run folders, or a report folder (its runs.csv, curves.csv)
    write_report(study, "reports/tiny")          # the files below
    show(study, "inconsistent")                  # one section in a notebook

    reports/<study>/  runs.csv, curves.csv        the tidy runs table and every validation curve
                      claims.csv, claims.md       one row per claim (and the dial's): value, interval, verdict, evidence
                      claims_per_method.csv       each method's own mark per claim
                      claims_parts.csv            every part of every claim: what the forest plots draw
                      claims_units.csv            each unit's (draw's) own estimate of every part: their rows
                      figures/*.png|svg           every figure
                      index.html                  the page: every figure inline (SVG), nothing loaded from the network

The rooms: `load` (a study: its runs and everything computed from them, once), `sections` (the sections, their
figures and the verdict table), `walker` (`walk`: a section's items, in order, that both media show), `page` (the
report folder: tables, figures and index.html, rendering `walk`'s items), `notebook` (what `99_analysis` calls;
`show` displays `walk`'s items), `families` (beyond the paper: the same study from two pre-training recipes side
by side, `vlpeft compare` → reports/families).
"""
from .families import label_of, write_families
from .load import Study, StudyError
from .notebook import load_or_say, show, show_families, summary
from .page import write_report
from .sections import SECTION, SECTIONS, Section, sections_of, verdict_table
from .walker import walk

__all__ = ["SECTION", "SECTIONS", "Section", "Study", "StudyError", "label_of", "load_or_say", "sections_of", "show",
           "show_families", "summary", "verdict_table", "walk", "write_families", "write_report"]
