"""The class server (rlhf_lab.class_server): what each request does (names, resume codes, rating,
undo, saves that fail, chat batches and thumbs, sessions released), what it refuses over HTTP
(no token, malformed requests), and a whole class at once: 150 students rating and 30 chatting,
every click in its student's file exactly once."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_tools import free_port, log_tail, output_dir, running_server
from class_pairs import PAIRS, write_pairs

from rlhf_lab import feedback
from rlhf_lab.chat import MAX_QUESTION_CHARS
from rlhf_lab.class_server import ChatEngine, ClassRoom, RequestError, quantile

TOKEN = "class-token-123"


def run(scenario):
    """Run the coroutine function `scenario` in a fresh event loop (as the server runs it)."""
    return asyncio.run(scenario())


def refused(status: int, match: str):
    """pytest.raises for a RequestError with this status and message."""
    class Check:
        def __enter__(self):
            self.raises = pytest.raises(RequestError, match=match)
            self.info = self.raises.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.raises.__exit__(*exc)
            assert self.info.value.status == status, self.info.value.message
            return handled
    return Check()


async def student(room: ClassRoom, name: str, code: str = ""):
    """A student starts under `name`: (what the page is sent, their session)."""
    state = await room.start(name, code)
    return state, room.session(state["session"])


# --- names and resume codes ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../ann", "a b", "", "Zoë", "a" * 65, 7, None])
def test_a_bad_name_is_refused_with_the_rule_and_nothing_is_written(tmp_path, name):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        with refused(400, "name"):
            await room.start(name, "")
        assert room.sessions == {}
    run(scenario)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("name", ["ann", "Team-3_b.v2", "a" * 64, "7up"])
def test_good_names_rate_into_their_own_file(tmp_path, name):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        state = await room.start(f"  {name} ", "")     # spaces around a typed name are dropped
        assert (state["name"], state["rated"], state["total"]) == (name, 0, 12)
        assert re.fullmatch(r"\d{6}", state["code"])
        session = room.session(state["session"])
        after = await room.rate(session, state["pair"]["pair_id"], "b")
        assert after["rated"] == 1 and after["pair"]["prompt"] == PAIRS[1]["prompt"]
    run(scenario)
    [record] = feedback.load_ratings(tmp_path / f"{name}.jsonl")
    assert (record["rater"], record["choice"], record["prompt"]) == (name, "b", PAIRS[0]["prompt"])
    assert (record["model"], record["model_b"]) == ("sft@T0.7", "sft@T1.3")
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [f"{name}.jsonl"]


def test_a_name_is_its_first_students_the_resume_code_lets_them_back(tmp_path):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        first = await room.start("ann", "")
        await room.rate(room.session(first["session"]), first["pair"]["pair_id"], "a")
        before = (tmp_path / "ann.jsonl").read_bytes()
        for wrong in ["", "000000" if first["code"] != "000000" else "111111",
                      first["code"] + "0", "é"]:
            with refused(409, "taken"):
                await room.start("ann", wrong)
        assert (tmp_path / "ann.jsonl").read_bytes() == before
        again = await room.start("ann", first["code"])     # ann reloads the page
        assert again["rated"] == 1 and again["pair"]["prompt"] == PAIRS[1]["prompt"]
        with refused(410, "started again in another page"):   # her old page: one writer a file
            room.session(first["session"])
        assert list(room.sessions) == [again["session"]]
    run(scenario)


def test_guessing_a_resume_code_through_the_server_is_locked_out(tmp_path):
    """Five wrong codes for a name lock it, the right code included, for 10 minutes: one guess
    in two minutes at most, so finding one of the million codes takes years, not minutes."""
    from rlhf_lab.class_app import WRONG_CODES_ALLOWED

    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        code = (await room.start("kim", ""))["code"]
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(WRONG_CODES_ALLOWED):
            with refused(409, "taken"):
                await room.start("kim", wrong)
        with refused(409, "Too many wrong resume codes for 'kim': try again in about 10 minutes"):
            await room.start("kim", code)
    run(scenario)


# --- rating and undo ----------------------------------------------------------------------------

def test_a_click_on_a_pair_no_longer_on_screen_or_a_bad_choice_saves_nothing(tmp_path):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        state, session = await student(room, "bo")
        first = state["pair"]["pair_id"]
        await room.rate(session, first, "tie")
        with refused(409, "no longer on screen"):      # a double click on the first pair
            await room.rate(session, first, "a")
        for choice in ["A", "", None, ["a"], "up"]:
            with refused(400, "choice must be one of a, b, tie, skip"):
                await room.rate(session, room.progress(session)["pair"]["pair_id"], choice)
        return session
    run(scenario)
    assert [r["choice"] for r in feedback.read_records(tmp_path / "bo.jsonl")] == ["tie"]


def test_undo_appends_an_undo_record_and_asks_the_pair_again(tmp_path):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        state, session = await student(room, "cy")
        assert (await room.undo(session))["undone"] is None          # nothing to undo
        await room.rate(session, state["pair"]["pair_id"], "a")
        after = await room.undo(session)
        assert after["undone"] == "a" and after["rated"] == 0
        assert after["pair"]["pair_id"] == state["pair"]["pair_id"] and not after["can_undo"]
        await room.rate(session, after["pair"]["pair_id"], "b")
    run(scenario)
    records = feedback.read_records(tmp_path / "cy.jsonl")
    assert [r["kind"] for r in records] == ["pair", "undo", "pair"]
    assert records[1]["undoes"] == records[0]["id"]
    [kept] = feedback.load_ratings(tmp_path / "cy.jsonl")
    assert kept["choice"] == "b"


def test_a_save_that_fails_is_told_and_the_pair_stays(tmp_path, monkeypatch):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        state, session = await student(room, "dee")

        def disk_full(record):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(session.ratings.writer, "append", disk_full)
        with refused(500, "NOT SAVED: .*No space left on device"):
            await room.rate(session, state["pair"]["pair_id"], "a")
        assert room.progress(session) == {k: state[k] for k in ("rated", "total", "pair", "can_undo")}
        monkeypatch.undo()
        await room.rate(session, state["pair"]["pair_id"], "a")       # the click again: saved
    run(scenario)
    assert [r["choice"] for r in feedback.read_records(tmp_path / "dee.jsonl")] == ["a"]


def test_a_class_folder_that_cannot_be_written_is_told_at_start(tmp_path, monkeypatch):
    from rlhf_lab import class_app

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".claims" / "fred"))
    monkeypatch.setattr(class_app.os, "open", read_only)

    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        with refused(500, "NOT STARTED: .*Permission denied"):
            await room.start("fred", "")
        assert room.sessions == {}
    run(scenario)


def test_a_ratings_file_that_cannot_be_read_is_named_not_a_dead_page(tmp_path):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN)
        state = await room.start("eve", "")
        with open(tmp_path / "eve.jsonl", "a") as file:
            file.write('{"kind": []}\n')
        with refused(400, r"eve\.jsonl.*line 1"):
            await room.start("eve", state["code"])
    run(scenario)


# --- sessions: released when the page closes or sits idle; bounded ------------------------------

def test_sessions_are_released_on_goodbye_and_after_sitting_idle(tmp_path):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN, idle_seconds=60)
        one = await room.start("fay", "")
        two = await room.start("gil", "")
        room.bye(one["session"])
        room.bye("no such session")
        room.bye(["not", "a", "key"])
        assert list(room.sessions) == [two["session"]]
        assert room.release_idle(now=time.monotonic() + 30) == 0
        assert room.release_idle(now=time.monotonic() + 61) == 1 and room.sessions == {}
        with refused(410, "session has ended"):
            room.session(two["session"])
        again = await room.start("gil", two["code"])                   # and comes back
        assert again["rated"] == 0
    run(scenario)


def test_a_full_class_is_told_so_instead_of_filling_memory(tmp_path):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN, max_sessions=3)
        for k in range(3):
            await room.start(f"s{k}", "")
        with refused(503, "The class is full"):
            await room.start("s3", "")
    run(scenario)


# --- chat ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    from tiny_models import chat_models
    return ChatEngine(chat_models())


def test_questions_asked_together_are_answered_in_batches_with_thumbs_saved(tmp_path, engine):
    questions = [f"what colour is a {animal}?" for animal in
                 ("cat", "dog", "cow", "pig", "hen", "owl", "fox")]

    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN, chat=engine)
        state, session = await student(room, "hal")
        engine.batches.clear()
        replies = await asyncio.gather(*[room.ask(session, q, 0.7) for q in questions])
        for question, reply in zip(questions, replies):
            assert reply["question"] == question
            assert [a["model"] for a in reply["answers"]] == ["one", "two"]
        assert sum(engine.batches) == 7 and len(engine.batches) < 7     # batched, none lost
        up, down = replies[0]["answers"]
        assert (await room.thumb(session, up["answer_id"], "up"))["model"] == "one"
        await room.thumb(session, down["answer_id"], "down")
        with refused(409, "no longer on screen"):                    # one thumb per answer
            await room.thumb(session, up["answer_id"], "down")
        with refused(409, "no longer on screen"):
            await room.thumb(session, "made-up", "up")
        with refused(400, "choice must be one of up, down"):
            await room.thumb(session, replies[1]["answers"][0]["answer_id"], "a")
        return up, down
    up, down = run(scenario)
    records = feedback.read_records(tmp_path / "hal.jsonl")
    assert [(r["kind"], r["model"], r["choice"], r["answer"]) for r in records] == [
        ("single", "one", "up", up["answer"]), ("single", "two", "down", down["answer"])]
    assert all(r["prompt"] == questions[0] for r in records)


@pytest.mark.parametrize("question, temperature, message", [
    ("", 1.0, "Type a question first"),
    ("x" * (MAX_QUESTION_CHARS + 1), 1.0, f"at most {MAX_QUESTION_CHARS}"),
    (["a list"], 1.0, "A question is text, not list"),
    ("what colour is a cat?", 5, "temperature must be a number from 0.1 to 2.0"),
    ("what colour is a cat?", "hot", "temperature must be a number"),
    ("what colour is a cat?", True, "temperature must be a number"),
])
def test_a_question_the_models_cannot_take_gets_a_message(tmp_path, engine, question,
                                                          temperature, message):
    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN, chat=engine)
        session = room.session((await room.start("ida", ""))["session"])
        with refused(400, re.escape(message)):
            await room.ask(session, question, temperature)
    run(scenario)


def test_a_known_question_shows_its_gold_score_a_failing_model_is_told(tmp_path, engine):
    from rlhf_lab.world import World

    known = World().split("heldout")[0].text

    class Broken:
        def __call__(self, *args, **kwargs):
            raise RuntimeError("out of memory")

    async def scenario():
        room = ClassRoom(PAIRS, tmp_path, TOKEN, chat=engine)
        session = room.session((await room.start("jo", ""))["session"])
        reply = await room.ask(session, known, 1.0)
        assert all(0 <= a["gold"] <= 4 for a in reply["answers"])
        assert all(a["gold"] is None for a in (await room.ask(session, "who am i?", 1.0))["answers"])
        broken = ChatEngine({"broken": (Broken(), None)})
        room.chat = broken
        with refused(500, "The chat models failed"):
            await room.ask(session, known, 1.0)
        room.chat = None
        with refused(404, "no chat"):
            await room.ask(session, known, 1.0)
    run(scenario)


# --- over HTTP: the real server in its own process ------------------------------------------------

def save_chat_models(folder: Path) -> str:
    """The two tiny chat models saved as model folders; returns the --chat argument."""
    from tiny_models import chat_models

    paths = []
    for name, (model, tokenizer) in chat_models().items():
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
        paths.append(str(folder / name))
    return ",".join(paths)


@contextmanager
def class_server(tmp: Path, log: Path, chat: str = "none"):
    """`python -m rlhf_lab.class_server serve` on a free localhost port; yields (url, token,
    server process). Stopped whatever happens."""
    port = free_port()
    cmd = [sys.executable, "-m", "rlhf_lab.class_server", "serve", "--pairs",
           str(write_pairs(tmp / "pairs.jsonl")), "--folder", str(tmp / "ratings"),
           "--host", "127.0.0.1", "--port", str(port), "--chat", chat]
    env = {**os.environ, "RLHF_LAB_CLASS_TOKEN": TOKEN}
    url = f"http://127.0.0.1:{port}"
    with running_server(cmd, env, f"{url}/?token={TOKEN}", log) as proc:
        yield url, TOKEN, proc


def post(url: str, body: bytes | dict, timeout: float = 30) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class_server")
    with class_server(tmp, output_dir("class_server") / "server.log") as (url, token, _):
        yield url, token, tmp / "ratings"


def test_without_the_class_token_nothing_is_served(server):
    from browser_tools import http_get

    url, token, folder = server
    status, body, headers = http_get(f"{url}/?token={token}")
    assert status == 200 and "Rate pairs" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for path in ["/", "/?token=wrong", f"/?token={token[:-1]}", "/status",
                 "/rlhf_lab/class_server.py", "/ratings/ann.jsonl"]:
        status, body, _ = http_get(url + path)
        assert status in (403, 404), (path, status)
        assert "Rate pairs" not in body
    for token_sent in [None, "wrong", 12345, ""]:
        status, reply = post(f"{url}/api/start", {"token": token_sent, "name": "ann"})
        assert status == 403 and "class token" in reply["error"]
    assert not folder.exists() or list(folder.glob("*.jsonl")) == []


@pytest.mark.parametrize("path, body, status, message", [
    ("start", b"not json", 400, "not JSON"),
    ("start", b"\xff\xfe", 400, "not JSON"),
    ("start", b"[1, 2]", 400, "not a JSON object"),
    ("start", b"[" * 100_000 + b"]" * 100_000, 413, "too large"),
    ("start", b"[" * 5_000 + b"]" * 5_000, 400, "not JSON"),          # nested deep
    ("start", {"token": TOKEN, "name": "../etc"}, 400, "Bad rater name"),
    ("start", {"token": TOKEN, "name": "ann", "code": 123456}, 400, "Type your name"),
    ("rate", {"token": TOKEN, "session": "guess", "pair_id": "x", "choice": "a"}, 410, "ended"),
    ("thumb", {"token": TOKEN, "session": ["x"], "answer_id": "x"}, 410, "ended"),
    ("chat", {"token": TOKEN, "session": None, "question": "hi"}, 410, "ended"),
    ("shutdown", {"token": TOKEN}, 404, "no request 'shutdown'"),
])
def test_a_malformed_request_gets_a_clear_message(server, path, body, status, message):
    url, token, _ = server
    got, reply = post(f"{url}/api/{path}", body)
    assert got == status and message in reply["error"], (got, reply)


@pytest.mark.parametrize("chat, message", [
    ("sft", "Run notebooks/02_sft.ipynb first"),
    ("/no/such/model", "No model folder at /no/such/model"),
])
def test_a_chat_model_that_is_not_there_stops_the_server_with_a_message(tmp_path, monkeypatch,
                                                                         capsys, chat, message):
    from rlhf_lab import class_server

    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path / "no_artifacts"))
    pairs = str(write_pairs(tmp_path / "pairs.jsonl"))
    assert class_server.main(["serve", "--pairs", pairs, "--chat", chat, "--port", "1"]) == 2
    assert message in capsys.readouterr().err


def test_the_server_answers_every_other_mistake_in_json(server):
    from browser_tools import http_get

    url, token, _ = server
    status, body, _ = http_get(f"{url}/api/start")                     # GET, not POST
    assert status == 405 and "Reload the page" in json.loads(body)["error"]


# --- a lecture hall at once ------------------------------------------------------------------------

RATERS, CHATTERS, PER_RATER = 150, 30, 5
CHOICES = ("a", "b", "tie", "skip")


def pattern(rater: int) -> list[str]:
    """Rater `rater`'s own choices for the first PER_RATER pairs."""
    return [CHOICES[(rater * 3 + k * (1 + rater % 3)) % 4] for k in range(PER_RATER)]


async def a_class(url: str) -> dict:
    """RATERS students rating PER_RATER pairs and CHATTERS asking a question and thumbing an
    answer, all at once; returns what each saw and how long each request took."""
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(max_clients=RATERS + CHATTERS)
    timings = {"page": [], "start": [], "rate": [], "chat": [], "thumb": []}

    async def call(kind: str, action: str, body: dict) -> dict:
        t0 = time.monotonic()
        response = await client.fetch(f"{url}/api/{action}", method="POST", raise_error=False,
                                      body=json.dumps({"token": TOKEN, **body}),
                                      request_timeout=120)
        timings[kind].append(time.monotonic() - t0)
        reply = json.loads(response.body)
        assert response.code == 200, (action, response.code, reply)
        return reply

    async def page() -> None:
        t0 = time.monotonic()
        response = await client.fetch(f"{url}/?token={TOKEN}", request_timeout=120)
        assert b"Rate pairs" in response.body
        timings["page"].append(time.monotonic() - t0)

    async def rater(r: int) -> list[str]:
        await page()
        state = await call("start", "start", {"name": f"rater{r:03d}"})
        session = state["session"]
        for choice in pattern(r):
            state = await call("rate", "rate", {"session": session, "choice": choice,
                                                "pair_id": state["pair"]["pair_id"]})
        await client.fetch(f"{url}/api/bye", method="POST",
                           body=json.dumps({"token": TOKEN, "session": session}))
        return pattern(r)

    async def chatter(c: int) -> dict:
        await page()
        session = (await call("start", "start", {"name": f"chat{c:02d}"}))["session"]
        reply = await call("chat", "chat", {"session": session, "temperature": 1.0,
                                            "question": f"what colour is animal {c}?"})
        answer = reply["answers"][c % 2]
        await call("thumb", "thumb", {"session": session, "answer_id": answer["answer_id"],
                                      "choice": "up"})
        await client.fetch(f"{url}/api/bye", method="POST",
                           body=json.dumps({"token": TOKEN, "session": session}))
        return answer

    started = time.monotonic()
    results = await asyncio.gather(*[rater(r) for r in range(RATERS)],
                                   *[chatter(c) for c in range(CHATTERS)])
    client.close()
    return {"answers": results[RATERS:], "timings": timings,
            "seconds": time.monotonic() - started}


def test_150_students_rating_and_30_chatting_at_once_lose_nothing(tmp_path):
    """Every click lands in its student's file exactly once; the server releases every
    session when the pages say goodbye and stays under 2 GB. (The times are printed and
    written to tests/output/class_server_load/, not asserted: bench/class_server.py
    measures them with real browsers.)"""
    import urllib.request

    out = output_dir("class_server_load")
    chat = save_chat_models(tmp_path / "models")
    with class_server(tmp_path, out / "server.log", chat=chat) as (url, token, proc):
        try:
            seen = asyncio.run(a_class(url))
        except BaseException:
            print(log_tail(out / "server.log"))
            raise
        with urllib.request.urlopen(f"{url}/status?token={token}") as response:
            status = json.loads(response.read())

    folder = tmp_path / "ratings"
    assert len(list(folder.glob("*.jsonl"))) == RATERS + CHATTERS        # none misfiled
    ids = []
    for r in range(RATERS):
        records = feedback.read_records(folder / f"rater{r:03d}.jsonl")
        assert [(x["rater"], x["prompt"], x["choice"]) for x in records] == [
            (f"rater{r:03d}", p["prompt"], c) for p, c in zip(PAIRS, pattern(r))]  # none lost
        ids += [x["id"] for x in records]
    for c, answer in enumerate(seen["answers"]):
        [record] = feedback.read_records(folder / f"chat{c:02d}.jsonl")
        assert (record["kind"], record["model"], record["answer"], record["choice"]) == (
            "single", answer["model"], answer["answer"], "up")
        ids.append(record["id"])
    assert len(set(ids)) == RATERS * PER_RATER + CHATTERS                # none doubled
    assert status["sessions"] == 0                                       # all released
    assert status["rss_mb"] < 2048
    assert status["chat_batches"] < CHATTERS                             # chats were batched

    t = seen["timings"]
    figures = {"students": RATERS + CHATTERS, "seconds": round(seen["seconds"], 2),
               "ratings": len(t["rate"]),
               "rate_p50_s": round(quantile(t["rate"], 0.5), 3),
               "rate_p95_s": round(quantile(t["rate"], 0.95), 3),
               "chat_p50_s": round(quantile(t["chat"], 0.5), 3),
               "chat_p95_s": round(quantile(t["chat"], 0.95), 3),
               "page_p95_s": round(quantile(t["page"], 0.95), 3),
               "server_rss_mb": status["rss_mb"], "chat_batches": status["chat_batches"]}
    (out / "load.json").write_text(json.dumps(figures, indent=1))
    print("\nclass server load test:", ", ".join(f"{k}={v}" for k, v in figures.items()))


# --- in a real browser -------------------------------------------------------------------------------

@pytest.mark.browser
def test_chromium_rates_undoes_chats_and_thumbs_and_the_file_holds_exactly_those(tmp_path):
    from browser_tools import chromium_browser, require_chromium

    require_chromium()
    out = output_dir("class_server_browser")
    chat = save_chat_models(tmp_path / "models")
    with class_server(tmp_path, out / "server.log", chat=chat) as (url, token, _), \
            chromium_browser() as browser:
        page = browser.new_page()
        page.goto(f"{url}/?token={token}")
        page.fill("#name", "ann/..")                                      # a bad name: the rule
        page.click("#go")
        page.get_by_text("Bad rater name").wait_for(timeout=30_000)
        page.fill("#name", "ann")
        page.click("#go")
        page.get_by_text("rated 0 / 12").wait_for(timeout=30_000)
        code = page.input_value("#code")
        page.click("text=A better")                                       # pair 0: a button
        page.get_by_text("rated 1 / 12").wait_for(timeout=30_000)
        page.keyboard.press("b")                                          # pair 1: a key
        page.get_by_text("rated 2 / 12").wait_for(timeout=30_000)
        page.click("#undo")                                               # pair 1 again
        page.get_by_text("Undone: B better.").wait_for(timeout=30_000)
        assert page.text_content("#prompt") == PAIRS[1]["prompt"]
        page.keyboard.press("t")
        page.get_by_text("rated 2 / 12").wait_for(timeout=30_000)

        page.click("#tab-chat")
        page.click("#ask")                                                # nothing typed
        page.get_by_text("Type a question first.").wait_for(timeout=30_000)
        page.fill("#question", "what colour is a cat?")
        page.press("#question", "Enter")
        page.get_by_text("Answers sampled at temperature 1.0").wait_for(timeout=60_000)
        answers = page.locator(".answer")
        assert answers.count() == 2
        answers.nth(0).get_by_text("👍 Good").click()
        answers.nth(0).get_by_text("Saved 👍").wait_for(timeout=30_000)
        answers.nth(1).get_by_text("👎 Bad").click()
        answers.nth(1).get_by_text("Saved 👎").wait_for(timeout=30_000)
        shown = [answers.nth(k).locator("div").first.text_content() for k in range(2)]
        page.screenshot(path=out / "chat.png")

        again = browser.new_page()                                        # a reload elsewhere
        again.goto(f"{url}/?token={token}")
        again.fill("#name", "ann")
        again.click("#go")
        again.get_by_text("is taken").wait_for(timeout=30_000)
        again.fill("#code", code)
        again.click("#go")
        again.get_by_text("rated 2 / 12").wait_for(timeout=30_000)
        assert again.text_content("#prompt") == PAIRS[2]["prompt"]
        page.click("#tab-rate")
        page.keyboard.press("a")                                          # the old page: ended
        page.get_by_text("Your session has ended").wait_for(timeout=30_000)
        again.screenshot(path=out / "rate.png")

    records = feedback.read_records(tmp_path / "ratings" / "ann.jsonl")
    assert [(r["kind"], r.get("choice")) for r in records] == [
        ("pair", "a"), ("pair", "b"), ("undo", None), ("pair", "tie"),
        ("single", "up"), ("single", "down")]
    assert [r["prompt"] for r in records if r["kind"] == "pair"] == [
        PAIRS[0]["prompt"], PAIRS[1]["prompt"], PAIRS[1]["prompt"]]
    assert [(r["model"], r["answer"]) for r in records if r["kind"] == "single"] == [
        ("one", shown[0]), ("two", shown[1])]
