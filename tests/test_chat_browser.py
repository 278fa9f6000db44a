"""The chat in a real browser: headless Chromium types a question into the chat widget (served
by Voilà, as the class app is), sees one answer per model, presses thumbs, and the rater's file
holds exactly those clicks, each naming its model."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from browser_tools import chromium_browser, free_port, output_dir, require_chromium, running_server

from rlhf_lab import feedback
from rlhf_lab.chat import MAX_QUESTION_CHARS

SETUP = '''
import os
import sys
sys.path.insert(0, os.environ["TESTS_DIR"])
from tiny_models import chat_models
from rlhf_lab.chat import ChatWidget
chat = ChatWidget(chat_models(), rater="ann", folder=os.environ["CHAT_FOLDER"])
chat
'''


@pytest.mark.browser
def test_chromium_asks_a_question_presses_thumbs_and_the_file_holds_exactly_those(tmp_path):
    require_chromium()
    out = output_dir("chat_browser")
    notebook = tmp_path / "chat.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)]), notebook)
    port, token = free_port(), "chat-test-token"
    cmd = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", f"--Voila.token={token}"]
    env = {**os.environ, "CHAT_FOLDER": str(tmp_path / "feedback"),
           "TESTS_DIR": str(Path(__file__).parent),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ip")}
    url = f"http://127.0.0.1:{port}"
    question = "what colour is a cat?"
    with running_server(cmd, env, f"{url}/login", out / "voila.log"), chromium_browser() as browser:
        page = browser.new_page()
        page.goto(f"{url}/?token={token}")
        box = page.locator(".widget-text input").first
        box.wait_for(timeout=120_000)
        box.fill("x" * (MAX_QUESTION_CHARS + 1))               # too long: a message, no answers
        page.locator(".widget-button", has_text="Ask").click()
        page.get_by_text(f"at most {MAX_QUESTION_CHARS}").wait_for(timeout=60_000)
        box.fill(question)
        page.locator(".widget-button", has_text="Ask").click()
        page.get_by_text("Answers sampled at temperature").wait_for(timeout=60_000)
        page.locator(".widget-button", has_text="👍").first.click()       # model "one"
        page.get_by_text("Saved 👍").wait_for(timeout=60_000)
        page.locator(".widget-button", has_text="👎").nth(1).click()      # model "two"
        page.get_by_text("Saved 👎").wait_for(timeout=60_000)
        page.screenshot(path=out / "chat.png")
    lines = (tmp_path / "feedback" / "ann.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["kind"], r["model"], r["choice"], r["prompt"]) for r in records] == [
        ("single", "one", "up", question), ("single", "two", "down", question)]
    assert feedback.load_ratings(Path(tmp_path / "feedback" / "ann.jsonl")) == records
