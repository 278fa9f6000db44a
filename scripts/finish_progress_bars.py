"""Show finished progress bars in notebooks executed headless (`make course`).

A tqdm bar in a notebook is an ipywidget. When nbconvert executes a notebook it stores the
widgets' final state in the notebook's metadata (JupyterLab draws the finished bar from it),
but the plain-text copy of each bar, which GitHub and other viewers show, is the text the bar
had when it first appeared: "0%". This script rewrites that text from the stored final state,
e.g. "PPO: 100% 100/100 [05:18<00:00, 3.18s/it]", so that every viewer sees how the loop
ended. Nothing else in the notebook changes.

    python scripts/finish_progress_bars.py notebooks/06_ppo.ipynb [more notebooks ...]
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _text(state: dict) -> str:
    """The visible text of an HTML widget's value."""
    return html.unescape(re.sub(r"<[^>]+>", "", state.get("value", ""))).replace("\xa0", " ").strip()


def finished_text(model_id: str, states: dict) -> str | None:
    """'description pct% right-hand text' of the tqdm bar whose box is `model_id`, or None."""
    box = states.get(model_id, {}).get("state", {})
    children = [c.removeprefix("IPY_MODEL_") for c in box.get("children", [])]
    if len(children) != 3:
        return None
    left, bar, right = (states.get(c, {}).get("state", {}) for c in children)
    if "max" not in bar:
        return None
    total = bar.get("max") or 0
    description = _text(left)
    percent = f"{100 * bar.get('value', 0) / total:.0f}%" if total else ""
    if description.endswith("%"):              # tqdm puts the percentage in the left text
        percent = ""
    return " ".join(part for part in (description, percent, _text(right)) if part)


def finish(path: Path) -> int:
    """Rewrite the plain-text copy of every stored bar in `path`; returns how many."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    states = notebook.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    changed = 0
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            text = view and finished_text(view.get("model_id", ""), states)
            if text and output["data"].get("text/plain") != text:
                output["data"]["text/plain"] = text
                changed += 1
    if changed:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {finish(Path(name))} progress bars finished")
