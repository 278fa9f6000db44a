"""Chapters 01 and 03 in JupyterLab, in headless Chromium, as a learner meets them: run the
notebook from the Run menu, watch chapter 01's live training plot redraw, click chapter 03's
rating widget (buttons, Undo and the Keys box), then read the ratings file back.

Marker `browser`: needs Debian's Chromium (`make browser`); skipped, saying so, without it.
The server runs on copies of the notebooks, in quick mode, with artifacts and ratings in
temporary folders: a learner's notebooks, artifacts and data/feedback/ are never touched.
In the copy of chapter 01, pretraining stops after PRETRAIN_STEPS steps (quick mode: 400)
and the live plot redraws at every held-out evaluation (every 25 steps) instead of at most
every 5 s, so it redraws the same number of times on a fast machine as on a slow one: this
test is about the lab, the plot and the widget, not the model. The notebooks' own run
(`pytest notebooks`) and the unit tests train the quick model in full, and
tests/test_ppo_stage.py checks the redraw schedule itself.
Screenshots go to tests/output/lab/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from browser_tools import (chromium_browser, free_port, http_get, log_tail, output_dir,
                           require_chromium, running_server)

from rlhf_lab import artifacts, config, feedback
from rlhf_lab.config import DATA_DIR, PROJECT_ROOT

pytestmark = pytest.mark.browser

NOTEBOOKS = ["01_pretraining", "03_human_feedback"]
PRETRAIN_STEPS = 150       # 6 held-out evaluations, and a redraw at each
SHORTER = {"01_pretraining": ("cfg = PretrainConfig.for_mode()",
                              f"cfg = PretrainConfig.for_mode(max_steps={PRETRAIN_STEPS})\n"
                              "from rlhf_lab import plots\n"
                              "plots.LIVE_PLOT_SECONDS = 0.0   # the test redraws at every evaluation")}
SETTINGS = {   # JupyterLab user settings for the test server: no news, no update checks,
    # and every cell in the page (the default attaches cells out of view lazily)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class Lab:
    url: str
    token: str
    notebooks: Path
    artifacts: Path
    feedback: Path
    env: dict
    out: Path      # tests/output/lab/: the server's log, screenshots

    def open(self, page, notebook: str) -> None:
        """Open notebooks/<notebook>.ipynb alone in a fresh workspace."""
        page.goto(f"{self.url}/lab/tree/{notebook}.ipynb?reset&token={self.token}")
        cells = nbformat.read(self.notebooks / f"{notebook}.ipynb", as_version=4).cells
        count = sum(c.cell_type == "code" for c in cells)
        page.wait_for_function(f"document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')"
                               f".length === {count}", timeout=60_000)
        # Run All before the kernel is ready would be lost: wait for the status bar's "Idle"
        page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(
            timeout=60_000)


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free localhost port with a token, serving copies of the notebooks
    (outputs cleared) in quick mode; artifacts and ratings in tmp_path. Always stopped."""
    require_chromium()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in NOTEBOOKS:
        nb = nbformat.read(PROJECT_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        if name in SHORTER:
            old, new = SHORTER[name]
            cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
            assert len(cells) == 1, f"{name}: expected one code cell with {old!r}"
            cells[0].source = cells[0].source.replace(old, new)
        nbformat.write(nb, notebooks / f"{name}.ipynb")
    settings = tmp_path / "lab-settings"
    for path, values in SETTINGS.items():
        (settings / path).parent.mkdir(parents=True, exist_ok=True)
        (settings / path).write_text(json.dumps(values))
    env = os.environ | {
        "RLHF_LAB_QUICK": "1",
        "RLHF_LAB_LIVE_PLOTS": "1",          # a learner's lab redraws while training
        "RLHF_LAB_ARTIFACTS": str(tmp_path / "artifacts"),
        "RLHF_LAB_FEEDBACK": str(tmp_path / "feedback"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={notebooks}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    url = f"http://127.0.0.1:{port}"
    out = output_dir("lab")
    with running_server(cmd, env, f"{url}/api/status?token={token}", out / "jupyterlab.log"):
        yield Lab(url, token, notebooks, tmp_path / "artifacts", tmp_path / "feedback", env, out)


# --- reading the page ---------------------------------------------------------------------

CELLS_JS = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')).map(c => {
    const img = c.querySelector('.jp-OutputArea-output img');
    return {prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
            img: img ? {src: img.src.length + ':' + img.src.slice(-48), width: img.naturalWidth,
                        png: img.src.startsWith('data:image/png')} : null,
            output: (c.querySelector('.jp-Cell-outputArea') || {}).innerText || ''};
})"""


def code_cell_index(notebook: Path, fragment: str) -> int:
    """Index, among code cells, of the first cell whose source contains `fragment`."""
    code = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    return next(i for i, c in enumerate(code) if fragment in c.source)


def run_all(page, lab: Lab, timeout: float, watch: int | None = None) -> list[dict]:
    """Run > Run All Cells, then wait until no cell is queued or running.

    Returns the snapshots of code cell `watch` taken while it was running (its output
    then). Fails with the failing cell's output if a cell raised.
    """
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    started, seen, deadline = False, [], time.monotonic() + timeout
    while True:
        cells = page.evaluate(CELLS_JS)
        prompts = [c["prompt"] for c in cells]
        busy = any("*" in p for p in prompts)
        started = started or busy
        if watch is not None and "*" in prompts[watch] and cells[watch]["img"]:
            seen.append(cells[watch])
        if started and not busy:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the notebook was still running after {timeout:.0f} s; prompts: {prompts}")
        time.sleep(0.25)
    unrun = [i for i, p in enumerate(prompts) if not any(ch.isdigit() for ch in p)]
    if unrun:
        failed = max(unrun[0] - 1, 0)
        pytest.fail(f"code cell {failed} raised and cells {unrun} never ran; its output:\n"
                    f"{cells[failed]['output'][-3000:]}\nserver log:\n{log_tail(lab.out / 'jupyterlab.log')}")
    return seen


def shown_pair(cell) -> tuple[str, str, str] | None:
    """(prompt, answer A, answer B) as the rating widget shows them; None when none is shown."""
    texts = {}
    for text in cell.locator(".widget-html-content").all_inner_texts():
        title, _, body = text.partition("\n")
        texts[title.strip()] = body.strip()
    if "Answer A" not in texts or not texts["Answer A"]:
        return None
    return texts["Prompt"], texts["Answer A"], texts["Answer B"]


def same_text(pair: dict) -> tuple[str, str, str]:
    return pair["prompt"].strip(), pair["answer_a"].strip(), pair["answer_b"].strip()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)


# --- the test -----------------------------------------------------------------------------

# What the learner does in chapter 03: (how, what) with how = click a button or type a key.
ACTIONS = [("click", "A better"), ("click", "B better"), ("click", "Undo"), ("key", "t"),
           ("click", "Skip"), ("click", "B better"), ("key", "a")]
KEY_CHOICES = {"a": "a", "b": "b", "t": "tie", "s": "skip"}
BUTTON_CHOICES = {"A better": "a", "B better": "b", "Tie": "tie", "Skip": "skip"}


def test_a_learner_runs_chapters_01_and_03_in_jupyterlab_and_rates_pairs(lab):
    out = lab.out
    learner_files = sorted((DATA_DIR / "feedback").iterdir())
    status, _, _ = http_get(f"{lab.url}/api/contents")
    assert status == 403, "JupyterLab must refuse requests without its token"

    with chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            # Chapter 01: the live training plot is an image that redraws while training runs.
            lab.open(page, "01_pretraining")
            plot_cell = code_cell_index(lab.notebooks / "01_pretraining.ipynb", "LivePlot(")
            live = run_all(page, lab, timeout=420, watch=plot_cell)
            pictures = {snap["img"]["src"] for snap in live}
            assert live and all(s["img"]["png"] and s["img"]["width"] > 100 for s in live)
            assert len(pictures) >= 3, f"the plot redrew {len(pictures)} times while training"
            print(f"chapter 01: the live plot showed {len(pictures)} different pictures while training")
            final = page.locator(".jp-NotebookPanel .jp-CodeCell").nth(plot_cell)
            assert final.locator(".jp-OutputArea-output img").evaluate("i => i.naturalWidth") > 100
            final.locator(".jp-OutputArea-output img").screenshot(path=out / "01_live_plot.png")

            # Chapter 02's model, built in quick mode, as chapter 03's missing-artifact message
            # offers; here, where torch is imported already, rather than in a fresh interpreter.
            with config.environment(quick=True, artifacts=str(lab.artifacts)):
                artifacts.require("sft", build_if_missing=True)

            # Chapter 03: run it, then rate.
            lab.open(page, "03_human_feedback")
            run_all(page, lab, timeout=300)
            cell = page.locator(".jp-NotebookPanel .jp-CodeCell").nth(
                code_cell_index(lab.notebooks / "03_human_feedback.ipynb", "RatingWidget(pairs"))
            pairs = [json.loads(line) for line in
                     (lab.artifacts / "quick" / "pairs" / "pairs.jsonl").read_text().splitlines()]
            queue = list({feedback.pair_id(*same_text(p)): same_text(p) for p in pairs}.values())
            ratings_file = lab.feedback / "me.jsonl"
            history, records = [], 0
            assert shown_pair(cell) == queue[0]
            for how, what in ACTIONS:
                if how == "click":
                    cell.locator(".widget-button", has_text=what).click()
                else:
                    cell.locator(".widget-text input").press_sequentially(what)
                # the rule the widget follows: a rating moves on, Undo brings the pair back
                choice = BUTTON_CHOICES.get(what) or KEY_CHOICES.get(what)
                if choice:
                    history.append((queue.pop(0), choice))
                else:
                    queue.insert(0, history.pop()[0])
                records += 1
                wait_for(lambda: ratings_file.exists()
                         and len(feedback.read_records(ratings_file)) == records,
                         20, f"record {records} in {ratings_file}")
                wait_for(lambda: shown_pair(cell) == queue[0], 20,
                         f"the widget to show the next pair after {how} {what!r}")
            rated = sum(choice != "skip" for _, choice in history)
            assert cell.locator(".widget-label", has_text="rated").inner_text() == f"rated {rated} / 20"
            cell.locator(".jp-OutputArea-output").first.screenshot(path=out / "03_rating_widget.png")
        except BaseException:
            page.screenshot(path=out / "failure.png", full_page=True)
            raise

    saved = feedback.load_ratings(ratings_file)
    assert [(r["prompt"].strip(), r["answer_a"].strip(), r["answer_b"].strip(), r["choice"])
            for r in saved] == [(*pair, choice) for pair, choice in history]
    assert [r["kind"] for r in feedback.read_records(ratings_file)] == \
        ["pair", "pair", "undo", "pair", "pair", "pair", "pair"]
    assert {r["rater"] for r in saved} == {"me"}
    assert sorted((DATA_DIR / "feedback").iterdir()) == learner_files
