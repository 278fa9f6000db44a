"""How long each chapter took in full mode, read from the notebooks themselves, against the
course's budget: every chapter within 4 minutes on a 2-core CPU, chapters 00-09 within 20.

An executed notebook keeps, for every code cell, when its execution started and when the
kernel replied (the `execution` metadata that nbconvert and JupyterLab write). This adds up
those times, chapter by chapter, and names each chapter's longest cell, where cutting pays.
It runs nothing: the committed notebooks hold the times of the full-mode runs their outputs
come from (docs/instructors.md says on which machine), so it reads in a second.

    .venv/bin/python bench/chapter_times.py                   # the committed notebooks
    .venv/bin/python bench/chapter_times.py DIR_OR_NOTEBOOKS  # notebooks executed elsewhere

Writes bench/results/chapter_times.csv (chapter, seconds, within_budget, longest cell and
its seconds). Kernel start-up and the first import are not in a cell's time, so a chapter's
wall time is a few seconds more.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CHAPTER_BUDGET_S = 240          # each chapter, full mode, 2-core CPU
FIRST_HALF_BUDGET_S = 1200      # chapters 00-09 together
FIRST_HALF = tuple(f"{n:02d}" for n in range(10))


def cell_seconds(cell: dict) -> float | None:
    """Seconds between a code cell's execution start and the kernel's reply; None if the
    notebook kept no times for it (never run, or run by a tool that does not record them)."""
    times = cell.get("metadata", {}).get("execution", {})
    start, end = times.get("iopub.execute_input"), times.get("shell.execute_reply")
    if not (start and end):
        return None
    return (_instant(end) - _instant(start)).total_seconds()


def _instant(stamp: str) -> datetime:
    """An ISO time stamp as Jupyter writes it (UTC, ending in Z)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def chapter_time(path: Path) -> dict:
    """One notebook's row: its cells' seconds added up, and its longest cell."""
    cells = json.loads(path.read_text())["cells"]
    timed = []                                   # (seconds, index, cell) of each timed cell
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code" and (seconds := cell_seconds(cell)) is not None:
            timed.append((seconds, index, cell))
    if not timed:
        raise SystemExit(f"{path}: no cell execution times in it. Run it with `make course` "
                         "(or nbconvert --execute) first; those record them.")
    seconds, index, cell = max(timed, key=lambda t: t[0])
    first_line = next(iter("".join(cell["source"]).strip().splitlines()), "")[:60]
    total = sum(s for s, _, _ in timed)
    return {"chapter": path.stem, "seconds": round(total, 1),
            "within_budget": total <= CHAPTER_BUDGET_S, "longest_cell": index,
            "longest_cell_s": round(seconds, 1), "longest_cell_starts": first_line}


def notebooks_in(paths: list[str]) -> list[Path]:
    """The numbered notebooks named, or found in the folders named (default: notebooks/)."""
    found = []
    for p in map(Path, paths or [ROOT / "notebooks"]):
        found += sorted(p.glob("[0-9][0-9]_*.ipynb")) if p.is_dir() else [p]
    if not found:
        sys.exit(f"no numbered notebooks (NN_name.ipynb) in {paths}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/)")
    args = parser.parse_args()
    table = pd.DataFrame([chapter_time(p) for p in notebooks_in(args.paths)])
    print(table.to_string(index=False))
    first_half = table[table.chapter.str[:2].isin(FIRST_HALF)]
    over = table[~table.within_budget]
    print(f"\nchapters over {CHAPTER_BUDGET_S} s: {len(over)} of {len(table)} "
          f"({', '.join(over.chapter.str[:2]) or 'none'}); all chapters {table.seconds.sum():,.0f} s")
    if len(first_half) == len(FIRST_HALF):
        print(f"chapters 00-09: {first_half.seconds.sum():,.0f} s "
              f"(budget {FIRST_HALF_BUDGET_S} s)")
    if not args.paths:
        RESULTS.mkdir(exist_ok=True)
        table.to_csv(RESULTS / "chapter_times.csv", index=False)
        print(f"wrote {RESULTS / 'chapter_times.csv'}")


if __name__ == "__main__":
    main()
