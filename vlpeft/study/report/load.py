"""A study, loaded once: its runs (from its run folders or from a report folder) and everything the report computes
from them — the claims, each method's marks, the parts the forest plots draw, and the dial's verdict.

    study = Study.load("runs/tiny")      # run folders; a report folder (its runs.csv, curves.csv); or a bare name
    study.claims, study.per_method, study.parts, study.units, study.dial
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ...catalog import METHODS, PAPER_METHODS
from ...errors import VlpeftError
from ...io import read_json
from ..claims import claim_tables
from ..presets import PRESET_WORLD
from ..results import highest_consistency, load_curves, load_runs, run_lengths, setting

NOT_JUDGED = "not judged (a wiring check)"


class StudyError(VlpeftError, FileNotFoundError):
    """No runs where a study was asked for; the message says which command makes them."""


@dataclass
class Study:
    name: str
    source: str                       # the run folders or the report folder it was read from
    runs: pd.DataFrame
    curves: pd.DataFrame
    wiring_check: bool = False        # runs that check the wiring only (the smoke world): nothing is judged
    claims: pd.DataFrame = field(init=False)
    per_method: pd.DataFrame = field(init=False)
    parts: pd.DataFrame = field(init=False)
    units: pd.DataFrame = field(init=False)   # each part's units one by one (the forest plots' rows per draw)
    dial: dict = field(init=False)

    def __post_init__(self):
        routes = sorted(set(setting(self.runs)["vqa_route"].dropna()) - {""})   # a run before routes: its own
        if len(routes) > 1:
            raise StudyError(f"study {self.name!r} mixes VQA runs of the routes {' and '.join(routes)}; its claims "
                             f"would pool them. Run each route as its own study (`--study NAME`)")
        steps = run_lengths(self.runs)
        if len(steps) > 1:   # a draw of one length pooled with a draw of another: not one study's units
            raise StudyError(f"study {self.name!r} mixes runs from stand-ins pre-trained "
                             f"{' and '.join(map(str, steps))} steps ({self.source}); its units would pool them. Keep "
                             f"each design's runs in their own study folder (move the older runs away, or `--study "
                             f"NAME`)")
        tables = claim_tables(self.runs)   # every claim evaluated once
        self.claims, self.per_method, self.parts = tables["claims"], tables["per_method"], tables["parts"]
        self.units, self.dial = tables["units"], tables["dial"]
        if self.wiring_check:  # its numbers mean nothing: every claim computed (the wiring), none judged
            self.claims["verdict"] = self.dial["verdict"] = NOT_JUDGED
            self.per_method["mark"] = self.parts["mark"] = "not judged"
            self.parts["split"] = False

    @property
    def is_dial(self) -> bool:
        """Runs from models at several consistency levels (a missing level is 1, the embedded model's)."""
        if "consistency" not in self.runs:
            return False
        return pd.to_numeric(self.runs["consistency"], errors="coerce").fillna(1.0).nunique() > 1

    @property
    def extra_methods(self) -> list[str]:
        """Its methods beyond the paper's (catalog.PAPER_METHODS), in catalogue order: shown, in no claim."""
        present = set(self.runs.method.dropna())
        return [m for m in [*METHODS, *sorted(present - set(METHODS))] if m in present and m not in PAPER_METHODS]

    @property
    def paper_runs(self) -> pd.DataFrame:
        """The runs the paper's figures use: for a dial study those at the highest consistency level."""
        return highest_consistency(self.runs) if self.is_dial else self.runs

    @property
    def paper_curves(self) -> pd.DataFrame:
        return self.curves[self.curves.run_dir.isin(self.paper_runs.run_dir)]

    @classmethod
    def load(cls, where: str | Path, run_ids: set[str] | None = None, name: str | None = None) -> "Study":
        """From `runs/<study>` (its run folders), from a report folder (its runs.csv and curves.csv), or from a
        bare study name: `runs/<name>` when it holds runs, else the committed `reports/<name>`. `run_ids`: keep
        only the runs of these ids (the last part of a run folder's path; a part of a grid, `vlpeft study
        --draws 1`), as the study `name`."""
        where = Path(where)
        candidates = [where] if where.exists() or len(where.parts) > 1 else [Path("runs") / where,
                                                                            Path("reports") / where]
        for folder in candidates:
            if (folder / "runs.csv").is_file():
                runs, curves = _read_report(folder)
            elif folder.is_dir() and any(folder.rglob("config.json")):
                runs, curves = load_runs(folder), load_curves(folder)
            else:
                continue
            if run_ids is not None:
                runs, curves = (t[t.run_dir.map(lambda d: Path(str(d)).name).isin(run_ids)] for t in (runs, curves))
            return cls(name or folder.name, str(folder), runs.reset_index(drop=True), curves.reset_index(drop=True),
                       wiring_check=_wiring_check(folder))
        raise StudyError(f"no runs of study {where.name!r} in {' or '.join(map(str, candidates))}. "
                         + _how_to_fill(where if where.exists() or len(where.parts) > 1 else Path("runs") / where))

    @property
    def unit(self) -> str:
        """What its claims' units are: "draw" (several pre-training draws) or "seed" (`claims.stats`)."""
        return str(self.claims.unit.iloc[0]) if len(self.claims) else "seed"

    def claim_row(self, claim) -> dict:
        if claim == "dial":
            return self.dial | {"claim": "dial"}
        return self.claims[self.claims.claim == claim].iloc[0].to_dict()


def _how_to_fill(folder: Path) -> str:
    """The command that fills `folder` with runs: a preset of that name, or any preset with `--study`."""
    name, root = folder.name, str(folder.parent)
    where = "" if root == "runs" else f" --runs-root {root}"
    if name in PRESET_WORLD:
        return (f"Fill it with `vlpeft study --preset {name}{where}` or `vlpeft sweep --preset {name}{where}` "
                f"(`make study` runs the tiny preset).")
    return (f"Fill it with `vlpeft study --preset PRESET --study {name}{where}` (PRESET: one of "
            f"{', '.join(PRESET_WORLD)}; `make study` runs tiny), or point --study at a folder of runs.")


def _wiring_check(folder: Path) -> bool:
    """Whether the sweep marked the study's runs a wiring check (its study.json; a report folder carries it too)."""
    return bool((read_json(folder / "study.json", StudyError, "study record", missing_ok=True) or {})
                .get("wiring_check"))


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
