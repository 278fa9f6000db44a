"""bench/chapter_times.py reads each chapter's time from the notebook's own cell metadata."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("chapter_times", ROOT / "bench" / "chapter_times.py")
chapter_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chapter_times)


def code_cell(source, start=None, end=None):
    metadata = {"execution": {"iopub.execute_input": start, "shell.execute_reply": end}} if start else {}
    return {"cell_type": "code", "source": source, "metadata": metadata, "outputs": []}


def test_adds_up_the_cells_and_names_the_longest(tmp_path):
    cells = [{"cell_type": "markdown", "source": "# 06", "metadata": {}},
             code_cell("import torch\n", "2026-12-02T09:00:00.000000Z", "2026-12-02T09:00:02.500000Z"),
             code_cell("run_ppo()\nmore()\n", "2026-12-02T09:00:03Z", "2026-12-02T09:04:13Z"),
             code_cell("never_run()\n")]
    path = tmp_path / "06_ppo.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    row = chapter_times.chapter_time(path)
    assert row["seconds"] == 252.5                  # 2.5 s + 4 min 10 s; the unrun cell adds 0
    assert not row["within_budget"]                 # over 240 s
    assert (row["longest_cell"], row["longest_cell_s"]) == (2, 250.0)
    assert row["longest_cell_starts"] == "run_ppo()"


def test_an_empty_cell_can_be_the_longest(tmp_path):
    path = tmp_path / "05_kl.ipynb"
    path.write_text(json.dumps({"cells": [code_cell("", "2026-12-02T09:00:00Z", "2026-12-02T09:00:01Z")]}))
    row = chapter_times.chapter_time(path)
    assert (row["seconds"], row["longest_cell"], row["longest_cell_starts"]) == (1.0, 0, "")


def test_a_notebook_without_times_says_how_to_get_them(tmp_path):
    path = tmp_path / "01_pretraining.ipynb"
    path.write_text(json.dumps({"cells": [code_cell("x = 1\n")]}))
    with pytest.raises(SystemExit, match="make course"):
        chapter_times.chapter_time(path)


def test_the_committed_notebooks_all_carry_their_times():
    rows = [chapter_times.chapter_time(p) for p in chapter_times.notebooks_in([])]
    assert [r["chapter"][:2] for r in rows] == [f"{n:02d}" for n in range(len(rows))]
    assert all(r["seconds"] > 0 for r in rows)
