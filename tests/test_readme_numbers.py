"""The README says what the committed reports hold, number for number: every verdict cell of its claims table is the
verdict and value of that claim in the report its column names, and every cell of its scores table is the compare
page's (reports/families/scores.csv), as `tools/readme_tables.py` writes them. A report re-made without its README,
or a README number edited by hand, fails here."""
from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("readme_tables", REPO / "tools" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)


def plain(cell: str) -> str:
    return cell.replace("**", "").strip()


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown text: its rows of cells, the header first, the --- row left out."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [plain(c) for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables, rows = [*tables, rows], []
    return tables


def the_table(first_columns: list[str]) -> list[list[str]]:
    """The README's one table whose header starts with these columns."""
    found = [t for t in markdown_tables((REPO / "README.md").read_text()) if t[0][:len(first_columns)] == first_columns]
    assert len(found) == 1, f"README.md: {len(found)} tables headed {first_columns}, expected one"
    return found[0]


def test_a_table_is_read_as_written():
    text = "a\n\n| # | x (reports/a): verdict |\n|---|---|\n| 1 | **supported** (+1.0) |\n| 2 | no |\nb\n| c |\n"
    assert markdown_tables(text) == [[["#", "x (reports/a): verdict"], ["1", "supported (+1.0)"], ["2", "no"]],
                                     [["c"]]]


def test_the_claims_table_is_the_reports():
    table = the_table(["#", "claim (paper §V)"])
    columns = {i: re.search(r"\((reports/[\w-]+)\)", h).group(1) for i, h in enumerate(table[0]) if "verdict" in h}
    assert sorted(columns.values()) == ["reports/tiny", "reports/tiny-blip"]
    for i, folder in columns.items():
        claims = readme_tables.claims(REPO / folder)
        assert [row[0] for row in table[1:]] == list(claims.index), f"{folder}: the README's claims are not its claims"
        for row in table[1:]:
            assert row[i] == plain(readme_tables.said(claims.loc[row[0]])), f"claim {row[0]} of {folder}"


@pytest.mark.parametrize("column, expected", [
    ("BLIP recipe", lambda r: readme_tables.score(r, "BLIP recipe")),
    ("mPLUG recipe", lambda r: readme_tables.score(r, "mPLUG recipe")),
    ("mPLUG − BLIP", readme_tables.difference),
])
def test_the_scores_table_is_the_compare_page(column, expected):
    table = the_table(["task", "method"])
    scores = pd.read_csv(REPO / "reports" / "families" / "scores.csv")
    assert "mPLUG recipe" == scores.columns[3], "the difference is the first study's − the second's: mPLUG − BLIP"
    i = table[0].index(column)
    assert len(table) - 1 == len(scores), "the README's scores table has a row per row of scores.csv"
    for row in table[1:]:
        method = re.sub(r" \(\d+\)$", "", row[1])                    # "LoRA (8)": the reference size, said once
        r = scores[(scores.task == row[0]) & (scores.method == method)]
        assert len(r) == 1, f"{row[0]} / {method}: not one row of scores.csv"
        assert row[i] == expected(r.iloc[0]), f"{row[0]} / {row[1]}: {column}"


def test_the_changed_verdicts_table_is_the_reports_against_the_commit_it_names():
    """The README's table of verdicts then → now is `readme_tables.changed_side_by_side` of the committed reports
    against the commit its header names (read from git), its columns' studies in the header's order."""
    found = [t for t in markdown_tables((REPO / "README.md").read_text())
             if len(t[0]) > 1 and re.fullmatch(r".+: at \w+ → now", t[0][1])]
    assert len(found) == 1, f"README.md: {len(found)} tables of changed verdicts, expected one"
    table = found[0]
    heads = [re.fullmatch(r"(.+): at (\w+) → now", h) for h in table[0] if h.endswith("→ now")]
    rev = heads[0].group(2)
    if subprocess.run(["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True).returncode:
        pytest.skip(f"commit {rev} is not in this clone's history (a shallow clone): nothing to compare against")
    study = {title: f"reports/{name}" for name, title in readme_tables.TITLES.items()}
    folders = [study[h.group(1)] for h in heads]
    expected = markdown_tables(readme_tables.changed_side_by_side(folders, rev))[0]
    assert table == expected, "the README's changed-verdicts table is not the reports' against " + rev

