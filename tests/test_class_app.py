"""The class rating app (rlhf_lab.class_app): the name rule, name claims, the pairs file,
the token of the Voilà server, and (marker `browser`) thirty raters at once in Chromium."""
from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_tools import (CHROMIUM_ARGS, chromium_browser, free_port, http_get, log_tail,
                           output_dir, require_chromium, running_server)

from rlhf_lab import class_app, feedback
from rlhf_lab.class_app import (ClassRatingApp, NameTakenError, PairsFileError,
                                app_from_environment, claim_name, read_pairs_file)

PAIRS = [{"prompt": f"what colour is animal {i}?", "answer_a": f"Animal {i} is green.",
          "answer_b": f"Ugh. Animal {i} is blue, obviously.", "model": "sft@T0.7",
          "model_b": "sft@T1.3"} for i in range(12)]


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


# --- the name rule -------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../ann", "..", ".", ".hidden", "a/b", "a\\b", "/etc/passwd", "ann/../../x",   # paths
    "", " ", "a b", "a\nb", "-rf", "_x", "ann;rm", "a*",                           # empty, odd
    "a" * 65, "x" * 10_000,                                                        # too long
    "Zoë", "名前", "ann\u200b", "аnn",                        # unicode (the last: Cyrillic а)
])
def test_the_name_rule_refuses_paths_empty_long_and_unicode_names(tmp_path, name):
    with pytest.raises(ValueError, match="1 to 64 characters"):
        feedback.check_rater_name(name)
    app = ClassRatingApp(PAIRS, tmp_path)
    app.name.value = name
    app.start.click()
    assert app.rating is None and "Bad rater name" in app.message.value
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []    # nothing written anywhere


def test_a_trailing_newline_does_not_slip_through_the_rule():
    with pytest.raises(ValueError, match="1 to 64 characters"):
        feedback.check_rater_name("ann\n")


@pytest.mark.parametrize("name", ["ann", "Team-3_b.v2", "a" * 64, "7up"])
def test_good_names_rate_into_their_own_file(tmp_path, name):
    app = ClassRatingApp(PAIRS, tmp_path)
    app.name.value = f"  {name} "                   # spaces around a typed name are dropped
    app.start.click()
    app.rating.buttons["b"].click()
    [record] = feedback.load_ratings(tmp_path / f"{name}.jsonl")
    assert (record["rater"], record["choice"], record["prompt"]) == (name, "b", PAIRS[0]["prompt"])
    assert (record["model"], record["model_b"]) == ("sft@T0.7", "sft@T1.3")
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [f"{name}.jsonl"]


def test_a_name_is_its_first_raters_only_the_resume_code_lets_them_back(tmp_path):
    first = ClassRatingApp(PAIRS, tmp_path)
    first.name.value = "ann"
    first.start.click()
    code = re.search(r"resume code is <b>(\d{6})</b>", first.children[0].value).group(1)
    first.rating.buttons["a"].click()
    before = (tmp_path / "ann.jsonl").read_bytes()

    for wrong in ["", "000000" if code != "000000" else "111111", code + "0", "é"]:
        other = ClassRatingApp(PAIRS, tmp_path)
        other.name.value, other.code.value = "ann", wrong
        other.start.click()
        assert other.rating is None and "taken" in other.message.value
    assert (tmp_path / "ann.jsonl").read_bytes() == before

    again = ClassRatingApp(PAIRS, tmp_path)      # ann reloads the page and gives her code
    again.name.value, again.code.value = "ann", code
    again.start.click()
    assert again.rating.progress_label.value == "rated 1 / 12"
    assert again.rating.current["prompt"] == PAIRS[1]["prompt"]   # resumes, never repeats


def test_a_ratings_file_the_app_did_not_write_is_never_handed_out(tmp_path):
    feedback.RatingsWriter(tmp_path, "bob").append(
        feedback.pair_record("bob", "q?", "x", "y", "a", "sft"))
    with pytest.raises(NameTakenError):
        claim_name(tmp_path, "bob")
    assert len(feedback.load_ratings(tmp_path / "bob.jsonl")) == 1


def test_two_claims_of_one_new_name_give_it_to_one_rater(tmp_path):
    code = claim_name(tmp_path, "cy")
    with pytest.raises(NameTakenError):
        claim_name(tmp_path, "cy")
    assert claim_name(tmp_path, "cy", code) == code
    assert (tmp_path / ".claims" / "cy").read_text() == code
    assert feedback.ratings_frame(tmp_path).empty      # chapter 09 reads the folder as it is


def test_guessing_a_resume_code_is_locked_out_after_a_few_tries(tmp_path):
    from rlhf_lab.class_app import LOCKOUT_SECONDS, WRONG_CODES_ALLOWED

    code = claim_name(tmp_path, "dee", now=1000.0)
    wrong = "000000" if code != "000000" else "111111"
    for i in range(WRONG_CODES_ALLOWED):
        with pytest.raises(NameTakenError, match="is taken"):
            claim_name(tmp_path, "dee", wrong, now=1000.0 + i)
    # locked: even the right code is refused, with the time to wait, until the lockout ends
    with pytest.raises(NameTakenError, match="Too many wrong resume codes .* about 10 minutes"):
        claim_name(tmp_path, "dee", code, now=1010.0)
    last = 1000.0 + WRONG_CODES_ALLOWED - 1
    assert claim_name(tmp_path, "dee", code, now=last + LOCKOUT_SECONDS) == code
    # an empty code (someone else who chose the same name) is not a guess
    for _ in range(3 * WRONG_CODES_ALLOWED):
        with pytest.raises(NameTakenError, match="is taken"):
            claim_name(tmp_path, "dee", "", now=5000.0)
    assert claim_name(tmp_path, "dee", code, now=5000.0) == code
    # at most WRONG_CODES_ALLOWED guesses per LOCKOUT_SECONDS: the expected time to find one
    # of the million codes is over a year
    assert 10**6 / 2 / WRONG_CODES_ALLOWED * LOCKOUT_SECONDS / (365 * 24 * 3600) > 1


def test_one_student_locked_out_leaves_the_others_alone(tmp_path):
    from rlhf_lab.class_app import WRONG_CODES_ALLOWED

    claim_name(tmp_path, "eve", now=0.0)
    code = claim_name(tmp_path, "fay", now=0.0)
    for _ in range(WRONG_CODES_ALLOWED + 1):
        with pytest.raises(NameTakenError):
            claim_name(tmp_path, "eve", "123456x", now=1.0)
    assert claim_name(tmp_path, "fay", code, now=2.0) == code


# --- the pairs file --------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("", "holds no pairs"),
    ('{"prompt": "q?", "answer_a": "x", "answer_b": "y"}\n{"prompt": "q?", "answer_a": \n',
     "line 2: not valid JSON"),
    ('["q?", "x", "y"]\n', "line 1: expected a JSON object"),
    ('{"prompt": "q?", "answer_a": "x"}\n', "field 'answer_b' must be a non-empty string"),
    ('{"prompt": "q?", "answer_a": "x", "answer_b": ""}\n', "'answer_b' must be a non-empty"),
    ('{"prompt": "q?", "answer_a": "x", "answer_b": "y", "score": 1}\n', "unknown fields ['score']"),
    ('{"prompt": "q?", "answer_a": "x\\ud800", "answer_b": "y"}\n',
     "field 'answer_a' holds '\\ud800', half of a character (a lone surrogate)"),
])
def test_a_missing_or_malformed_pairs_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "pairs.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PairsFileError, match=re.escape(message)) as error:
        read_pairs_file(path)
    assert str(path) in str(error.value) and "make class-pairs" in str(error.value)


def test_make_pairs_writes_a_pairs_file_from_a_policy_and_never_replaces_one(sft_trained, tmp_path):
    path = class_app.write_pairs_file(tmp_path / "class" / "pairs.jsonl", 6, ["sft"])
    pairs = read_pairs_file(path)
    assert 1 <= len(pairs) <= 6 and all(p["model"].startswith("sft@T") for p in pairs)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        class_app.write_pairs_file(path, 6, ["sft"])
    assert path.read_bytes() == before


def test_make_pairs_without_the_policy_says_which_notebook_makes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    assert class_app.main(["make-pairs", "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "Run notebooks/02_sft.ipynb first" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_class_pairs_come_from_the_newest_policy_by_default(tmp_path, monkeypatch):
    """`make class-pairs` rates the current policy: the policy artifact saved last."""
    import os

    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    for age, name in enumerate(["ppo", "sft", "iterated"]):       # ppo saved last, iterated first
        folder = tmp_path / "quick" / name
        folder.mkdir(parents=True)
        (folder / "COMPLETE").write_text("")
        os.utime(folder / "COMPLETE", (1000 - age, 1000 - age))
    (tmp_path / "quick" / "dpo").mkdir()                           # incomplete: not a policy yet
    assert class_app.newest_policy() == "ppo"
    os.utime(tmp_path / "quick" / "iterated" / "COMPLETE", (2000, 2000))
    assert class_app.newest_policy() == "iterated"


def test_serve_refuses_a_bad_pairs_file_at_start_and_serves_nothing(tmp_path):
    port = free_port()
    bad = tmp_path / "pairs.jsonl"
    bad.write_text("not json\n")
    for pairs in [tmp_path / "missing.jsonl", bad]:
        done = subprocess.run([sys.executable, "-m", "rlhf_lab.class_app", "serve", "--pairs",
                               str(pairs), "--folder", str(tmp_path / "class"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith("error: ") and str(pairs) in done.stderr
        assert "make class-pairs" in done.stderr and "Traceback" not in done.stderr
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{port}/", timeout=2)


def test_serve_refuses_a_short_class_token(tmp_path, capsys):
    pairs = str(write_pairs(tmp_path / "p.jsonl"))
    assert class_app.main(["serve", "--pairs", pairs, "--token", "abc"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_the_page_explains_a_pairs_file_broken_after_start(tmp_path, monkeypatch):
    monkeypatch.setenv(class_app.ENV_PAIRS, str(tmp_path / "gone.jsonl"))
    monkeypatch.setenv(class_app.ENV_FOLDER, str(tmp_path))
    shown = app_from_environment()
    assert "cannot start" in shown.value and "does not exist" in shown.value
    monkeypatch.setenv(class_app.ENV_PAIRS, str(write_pairs(tmp_path / "p.jsonl")))
    assert isinstance(app_from_environment(), ClassRatingApp)


def test_the_app_path_imports_no_torch():
    code = "import sys, rlhf_lab.class_app; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- the server ------------------------------------------------------------------------------

@contextmanager
def class_server(folder: Path, pairs: Path, tmp: Path, log: Path):
    """`python -m rlhf_lab.class_app serve` on a free localhost port, with the token it makes
    and shows; yields (base url, token). Stopped, kernels and all, whatever happens."""
    port = free_port()
    cmd = [sys.executable, "-m", "rlhf_lab.class_app", "serve", "--pairs", str(pairs),
           "--folder", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "IPYTHONDIR": str(tmp / "ipython")}
    env.pop("RLHF_LAB_CLASS_TOKEN", None)
    url = f"http://127.0.0.1:{port}"
    with running_server(cmd, env, f"{url}/login", log):
        token = re.search(r"Class token: (\S+)", log.read_text()).group(1)
        yield url, token


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    folder, log = tmp / "ratings", output_dir("class_app") / "voila.log"
    with class_server(folder, write_pairs(tmp / "pairs.jsonl"), tmp, log) as (url, token):
        yield url, token, folder, log


def test_without_the_class_token_nothing_is_served(server):
    url, token, folder, _ = server
    assert len(token) >= 12
    feedback.RatingsWriter(folder, "dee").append(
        feedback.pair_record("dee", "secret question?", "x", "y", "a", "sft"))
    for path in ["/", "/?token=wrong", f"/?token={token[:-1]}", f"/api/kernels/{uuid.uuid4()}",
                 "/voila/render/class_app.ipynb"]:
        status, body, headers = http_get(url + path)
        assert status in (302, 403), (path, status)
        assert status == 403 or "/login" in headers["Location"]
        assert "Which answer is better" not in body and "Start rating" not in body
    status, body, _ = http_get(f"{url}/?token={token}")
    assert status == 200 and "Which answer is better" in body
    for path in [f"/voila/files/{folder}/dee.jsonl", "/voila/files/class_app.py",
                 f"/voila/files/../../{folder.name}/dee.jsonl"]:
        status, body, _ = http_get(f"{url}{path}?token={token}")
        assert status in (403, 404) and "secret question" not in body, (path, status)


def test_the_page_cannot_run_code_in_its_kernel(server, tmp_path):
    """Voilà passes a page's widget messages to its kernel, never code to execute."""
    from tornado.httpclient import HTTPRequest
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    url, token, _, log = server
    status, body, _ = http_get(f"{url}/?token={token}")
    kernel = re.search(r'"kernelId": "([0-9a-f-]+)"', body).group(1)
    marker = tmp_path / "ran"

    def message(msg_type, content):
        return json.dumps({"channel": "shell", "content": content, "metadata": {},
                           "parent_header": {}, "buffers": [], "header": {
                               "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "",
                               "session": uuid.uuid4().hex, "version": "5.3"}})

    async def talk():
        ws = await websocket_connect(HTTPRequest(
            f"ws{url[4:]}/api/kernels/{kernel}/channels?token={token}"))
        ws.write_message(message("execute_request", {
            "code": f"open({str(marker)!r}, 'w').write('x')", "silent": False,
            "store_history": False, "user_expressions": {}, "allow_stdin": False}))
        ws.write_message(message("kernel_info_request", {}))
        replies = []
        while "kernel_info_reply" not in replies:       # the kernel answers what it may answer
            replies.append(json.loads(await ws.read_message())["header"]["msg_type"])
        ws.close()
        return replies

    replies = IOLoop.current().run_sync(talk, timeout=60)
    time.sleep(1)
    assert "execute_reply" not in replies and not marker.exists()
    assert 'message of type "execute_request", which is not allowed' in log.read_text()


# --- thirty raters at once, in one headless Chromium -------------------------------------------

RATERS, PER_RATER = 30, 5
CHOICE_BUTTONS = {"a": "A better", "b": "B better", "tie": "Tie", "skip": "Skip"}


def pattern(rater: int) -> list[str]:
    """Rater `rater`'s own choices for the first PER_RATER pairs."""
    choices = list(CHOICE_BUTTONS)
    return [choices[(rater * 3 + k * (1 + rater % 3)) % 4] for k in range(PER_RATER)]


async def one_rater(browser, url: str, rater: int, started: float, out: Path) -> dict:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = await context.new_page()
        response = await page.goto(url, wait_until="commit", timeout=240_000)
        await response.finished()          # Voilà has run this rater's kernel and sent the page
        served = time.monotonic() - started
        name_box = page.locator(".widget-text input").first
        reloads = 0
        try:
            await name_box.wait_for(timeout=150_000)
        except PlaywrightTimeout:
            # Seen once in ~10 runs on 2 busy cores: the page's kernel connection dropped
            # (Voila "Starting buffering") and the app never drew. A student reloads; so do we,
            # once, and the figures count it.
            reloads = 1
            await page.reload(wait_until="commit", timeout=240_000)
            await name_box.wait_for(timeout=240_000)
        loaded = time.monotonic() - started    # and the browser shows the app
        name = f"rater{rater:02d}"
        await name_box.fill(name)
        await page.locator(".widget-button", has_text="Start rating").click()
        progress = page.locator(".widget-label", has_text="rated")
        await expect(progress).to_have_text(f"rated 0 / {len(PAIRS)}", timeout=120_000)
        clicks = []
        for k, choice in enumerate(pattern(rater)):
            prompt = page.locator(".widget-html-content", has_text=re.compile(r"^Prompt"))
            await expect(prompt).to_contain_text(PAIRS[k]["prompt"], timeout=120_000)
            t0 = time.monotonic()
            await page.locator(".widget-button", has_text=CHOICE_BUTTONS[choice]).click()
            await expect(prompt).to_contain_text(PAIRS[k + 1]["prompt"], timeout=120_000)
            clicks.append((t0, time.monotonic()))
        if rater == RATERS - 1:
            await page.screenshot(path=out / f"{name}.png")
        return {"rater": name, "served_s": served, "loaded_s": loaded, "clicks": clicks,
                "reloads": reloads}
    finally:
        await context.close()


async def class_of_raters(url: str, out: Path) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=require_chromium(),
                                                   args=CHROMIUM_ARGS)
        try:
            started = time.monotonic()
            return await asyncio.gather(*[one_rater(browser, url, r, started, out)
                                          for r in range(RATERS)])
        finally:
            await browser.close()


@pytest.mark.browser
def test_thirty_raters_at_once_every_click_in_its_raters_file_once(tmp_path):
    require_chromium()
    out = output_dir("class_app_load")
    folder = tmp_path / "ratings"
    with class_server(folder, write_pairs(tmp_path / "pairs.jsonl"), tmp_path,
                      out / "voila.log") as (url, token):
        try:
            results = asyncio.run(class_of_raters(f"{url}/?token={token}", out))
        except BaseException:
            print(log_tail(out / "voila.log"))
            raise

    expected_files = sorted(f"rater{r:02d}.jsonl" for r in range(RATERS))
    assert sorted(p.name for p in folder.glob("*.jsonl")) == expected_files
    all_ids = []
    for r in range(RATERS):
        records = feedback.read_records(folder / f"rater{r:02d}.jsonl")
        assert {x["rater"] for x in records} == {f"rater{r:02d}"}          # none misfiled
        assert [(x["prompt"], x["answer_a"], x["answer_b"], x["choice"]) for x in records] == [
            (p["prompt"], p["answer_a"], p["answer_b"], c)                     # none lost,
            for p, c in zip(PAIRS, pattern(r))]                                # none doubled
        all_ids += [x["id"] for x in records]
    assert len(set(all_ids)) == RATERS * PER_RATER
    assert len(feedback.ratings_frame(folder)) == RATERS * PER_RATER     # chapter 09's view

    loads = sorted(r["loaded_s"] for r in results)
    served = sorted(r["served_s"] for r in results)
    clicks = [c for r in results for c in r["clicks"]]
    window = max(end for _, end in clicks) - min(start for start, _ in clicks)
    latencies = sorted(end - start for start, end in clicks)
    figures = {"raters": RATERS, "ratings_sent": len(clicks), "ratings_recorded": len(all_ids),
               "rater_30_page_served_s": round(served[-1], 2),
               "first_rater_app_s": round(loads[0], 2),
               "median_rater_app_s": round(loads[len(loads) // 2], 2),
               "rater_30_app_s": round(loads[-1], 2),
               "clicks_per_s": round(len(clicks) / window, 2),
               "median_click_s": round(latencies[len(latencies) // 2], 3),
               "slowest_click_s": round(latencies[-1], 3),
               "reloads": sum(r["reloads"] for r in results)}
    with open(out / "load.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(figures))
        writer.writeheader()
        writer.writerow(figures)
    print("\nclass app load test:", ", ".join(f"{k}={v}" for k, v in figures.items()))


def kernels_of(proc) -> int:
    """How many kernels the server process `proc` runs now (a kernel just shut down may
    linger a moment as a zombie, or be gone before it is read: neither runs)."""
    import psutil

    running = 0
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            running += "ipykernel" in " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return running


def wait_for_kernels(proc, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while kernels_of(proc) != n and time.monotonic() < deadline:
        time.sleep(0.5)
    return kernels_of(proc)


@pytest.mark.browser
def test_kernels_of_closed_pages_are_shut_down_and_open_pages_keep_theirs(tmp_path):
    """Every page load starts a kernel. Before culling they all stayed, so anyone with the
    class link could fill the machine's memory by reloading."""
    require_chromium()
    out = output_dir("class_app_cull")
    port = free_port()
    cmd = [sys.executable, "-m", "rlhf_lab.class_app", "serve", "--pairs",
           str(write_pairs(tmp_path / "pairs.jsonl")), "--folder", str(tmp_path / "ratings"),
           "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "IPYTHONDIR": str(tmp_path / "ipython"), class_app.ENV_CULL: "4"}
    url = f"http://127.0.0.1:{port}"
    with running_server(cmd, env, f"{url}/login", out / "voila.log") as proc:
        token = re.search(r"Class token: (\S+)", (out / "voila.log").read_text()).group(1)
        with chromium_browser() as browser:
            page = browser.new_page()
            page.goto(f"{url}/?token={token}")
            page.locator(".widget-text input").first.wait_for(timeout=120_000)
            for _ in range(2):                     # two loads whose pages are gone at once
                assert http_get(f"{url}/?token={token}", timeout=60)[0] == 200
            assert kernels_of(proc) == 3
            assert wait_for_kernels(proc, 1, timeout=30) == 1    # the open page keeps its own
            page.locator(".widget-text input").first.fill("gus")
            page.locator(".widget-button", has_text="Start rating").click()
            page.locator(".widget-button", has_text="A better").click()
            page.locator(".widget-label", has_text="rated 1").wait_for(timeout=60_000)
            page.close()
            assert wait_for_kernels(proc, 0, timeout=30) == 0    # and its page closed
    [record] = feedback.load_ratings(tmp_path / "ratings" / "gus.jsonl")
    assert record["choice"] == "a"
