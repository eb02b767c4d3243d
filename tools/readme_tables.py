"""The README's tables of the study's answer, written from the committed reports (so that the README says what the
reports hold, number for number).

    python tools/readme_tables.py verdicts reports/tiny-blip reports/tiny       # claim × study: verdict (value)
    python tools/readme_tables.py scores reports/families                      # each method at its reference size
    python tools/readme_tables.py changed reports/tiny --before e211bd6        # against the study at a commit:
                                                                               #   which verdicts changed, and which
                                                                               #   depend on the draw
    python tools/readme_tables.py changed reports/tiny-blip reports/tiny --before e211bd6   # the same, side by side

Effects are in score points; a supported verdict is in bold. `changed` reads the earlier claims.csv from git.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TITLES = {"tiny": "mPLUG recipe", "tiny-blip": "BLIP recipe"}


def claims(folder: str | Path) -> pd.DataFrame:
    table = pd.read_csv(Path(folder) / "claims.csv", dtype={"claim": str})
    return table.set_index("claim")


def said(row: pd.Series) -> str:
    """A verdict with its value and interval, in the units of the claim: "**supported** (+5.1 [+1.5, +8.8])"."""
    verdict = f"**{row.verdict}**" if row.verdict == "supported" else row.verdict
    if pd.isna(row.value):
        return verdict
    if row.get("value_unit") == "% of parameters":
        return f"{verdict} ({row.value:.2f} %)"
    interval = "" if pd.isna(row.ci_low) else f" [{row.ci_low:+.1f}, {row.ci_high:+.1f}]"
    return f"{verdict} ({row.value:+.1f}{interval})".replace("-", "−")


def markdown(rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in [rows[0], ["---"] * len(rows[0]), *rows[1:]])


def verdicts(folders: list[str]) -> str:
    tables = [claims(f) for f in folders]
    names = [f"{TITLES.get(Path(f).name, Path(f).name)} ({f})" for f in folders]
    rows = [["#", "claim (paper §V)", *[f"{n}: verdict (value)" for n in names], "statistic"]]
    for c, row in tables[0].iterrows():
        rows.append([c, row.text, *[said(t.loc[c]) if c in t.index else "" for t in tables], row.statistic])
    return markdown(rows)


def score(r: pd.Series, study: str) -> str:
    """A study's score of one row of the compare page's scores.csv: "121.7 [118.8, 124.6]"."""
    low, high = r[f"{study} low"], r[f"{study} high"]
    return f"{r[study]:.1f} [{low:.1f}, {high:.1f}]" if pd.notna(low) else f"{r[study]:.1f}"


def difference(r: pd.Series) -> str:
    """The row's paired difference (first study − second): "−15.2 [−18.9, −11.4]"."""
    if pd.isna(r.get("difference low")):
        return ""
    return f"{r.difference:+.1f} [{r['difference low']:+.1f}, {r['difference high']:+.1f}]".replace("-", "−")


def scores(folder: str) -> str:
    s = pd.read_csv(Path(folder) / "scores.csv")
    names = [c for c in s.columns if f"{c} low" in s.columns and c != "difference"]   # the studies, as compared
    rows = [["task", "method", *names, " − ".join(names) if len(names) == 2 else "difference"]]
    for _, r in s.iterrows():
        rows.append([r.task, r.method, *[score(r, n) for n in names], difference(r)])
    return markdown(rows)


def claims_at(folder: str, rev: str) -> pd.DataFrame:
    """A report's claims.csv as committed at `rev`."""
    path = (Path(folder) / "claims.csv").resolve().relative_to(ROOT)
    old_csv = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    if old_csv.returncode:
        sys.exit(f"{path} at {rev}: {old_csv.stderr.strip()}")
    return pd.read_csv(io.StringIO(old_csv.stdout), dtype={"claim": str}).set_index("claim")


def unit_of(table: pd.DataFrame) -> str:
    """A claims table's unit of replication: "draw", "seed" (a one-draw study), or "unit" where it records none."""
    return table.unit.iloc[0] if "unit" in table else "unit"


def depends(row: pd.Series) -> str:
    split = row.get("split_parts")
    return "no" if pd.isna(split) or not str(split) else f"yes: {split}"


def changed_side_by_side(folders: list[str], before: str) -> str:
    """Several studies against themselves at `before`: per study, the verdict then → now, and whether it depends on
    its unit (the draw, or a one-draw study's seed)."""
    olds, news = [claims_at(f, before) for f in folders], [claims(f) for f in folders]
    names = [TITLES.get(Path(f).name, Path(f).name) for f in folders]
    units = [unit_of(t) for t in news]
    rows = [["#", *[h for n, u in zip(names, units) for h in (f"{n}: at {before} → now", f"{n}: depends on the {u}")]]]
    for c in news[0].index:
        cells = []
        for old, new in zip(olds, news):
            was, now = (old.loc[c].verdict if c in old.index else "—"), new.loc[c].verdict
            cells += [f"**{was} → {now}**" if was != now else f"{now}, as before", depends(new.loc[c])]
        rows.append([c, *cells])
    return markdown(rows)


def changed(folder: str, before: str) -> str:
    old, new = claims_at(folder, before), claims(folder)
    def units(t):   # claim 11 counts runs, not units
        return int(t.n.drop(index="11", errors="ignore").max())
    word = unit_of(new)
    rows = [["#", f"at {before} ({units(old)} units)", f"now ({units(new)} {word}s)",
             "verdict changed", f"depends on the {word} (parts whose {word}s fall on both sides)"]]
    for c, row in new.iterrows():
        was = old.loc[c] if c in old.index else None
        rows.append([c, said(was) if was is not None else "", said(row),
                     "yes" if was is not None and was.verdict != row.verdict else "no", depends(row)])
    return markdown(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=["verdicts", "scores", "changed"])
    p.add_argument("folders", nargs="+", help="report folders (scores: the compare page's)")
    p.add_argument("--before", default="", help="changed: the commit whose claims.csv to compare with")
    a = p.parse_args()
    if a.table == "verdicts":
        print(verdicts(a.folders))
    elif a.table == "scores":
        print(scores(a.folders[0]))
    else:
        if not a.before:
            p.error("changed needs --before REV")
        print(changed(a.folders[0], a.before) if len(a.folders) == 1 else changed_side_by_side(a.folders, a.before))


if __name__ == "__main__":
    main()
