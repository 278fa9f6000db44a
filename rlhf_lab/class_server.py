"""The class server: a whole lecture hall rates pairs of answers and chats with the course's
models at once, each student from their own browser, all served by one process (`make rate`).

Chapter 09 pools the ratings; chapter 12 teaches what the chat's thumbs are worth.

One process, one event loop (tornado, which Jupyter already runs on), one plain page:

- Rating: chapter 03's rating queue (`rating_queue.RatingQueue`) per student, drawn by a page
  of plain HTML and a little JavaScript; every click is appended and fsynced to
  `<class folder>/<name>.jsonl` in chapter 03's schema before the page shows the next pair.
- Chatting: each chat model is loaded once. Questions that arrive together are answered
  together: one batched `generation.generate` per model and temperature, in one worker thread,
  so the event loop keeps answering rating clicks while the models write.
- Memory: a student's session is a few kilobytes (their queue and their last answers); it is
  released when the page closes (the page says goodbye) or after SESSION_IDLE_SECONDS idle.
- Safety: nothing is served without the class token; a browser can only call the handful of
  JSON requests below, each checked (a clear message for anything malformed, never a dead
  page); names follow `feedback.check_rater_name`; a name is its first student's, who gets a
  resume code (`class_app.claim_name`, locked after 5 wrong codes in 10 minutes); a save that
  fails is told to the student, never swallowed. The README says why this design and not one
  Voilà kernel per student (measured: memory and page times).

Requests (POST, JSON body with "token"; all but "start" also with "session"):
  /api/start {name, code}              -> session, resume code, progress, the pair to rate
  /api/rate  {pair_id, choice}         -> the next pair   (choice: a, b, tie or skip)
  /api/undo  {}                        -> the pair undone, to rate again
  /api/state {}                        -> progress and the pair to rate now
  /api/chat  {question, temperature}   -> one answer per chat model, with its gold score
  /api/thumb {answer, choice}          -> the thumb saved (choice: up or down)
  /api/bye   {}                        -> the session released (the page is closing)
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tornado.web

from . import class_app, feedback
from .chat import MAX_NEW_TOKENS, TEMPERATURES, answer_gold, question_problem
from .config import CLASS_PAIRS, CLASS_RATINGS
from .gold import RUBRIC
from .rating_queue import RatingQueue
from .world import World

PAGE = Path(__file__).with_name("class_page.html")
SESSION_IDLE_SECONDS = 20 * 60   # a session unused this long is released (its page restarts it)
MAX_SESSIONS = 2000              # open pages at most: more are told the class is full
MAX_BODY_BYTES = 16 * 1024       # a request body larger than this is refused
ANSWERS_KEPT = 30                # a session's latest chat answers that can still get a thumb
MAX_CHAT_BATCH = 64              # questions answered in one batch
PAIR_CHOICES = ("a", "b", "tie", "skip")
THUMB_CHOICES = ("up", "down")
ACTIONS = ("start", "rate", "undo", "state", "chat", "thumb", "bye")   # the page's requests


class RequestError(Exception):
    """A request the server refuses; `message` is shown to the student as it is."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# --- the chat models -------------------------------------------------------------------------

class ChatEngine:
    """The chat models, each loaded once, answering every student's questions in batches.

    models: {name: (model, tokenizer)}. Questions that arrive while a batch is being written
    wait for the next batch; each batch is answered in one worker thread (torch releases the
    GIL, so the event loop goes on serving clicks), with one `generate` call per model and
    temperature, and a new seed per batch."""

    def __init__(self, models: dict[str, tuple]):
        self.models = dict(models)
        self.pending: list[tuple[str, float, asyncio.Future]] = []
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat")
        self.busy = False
        self.task: asyncio.Task | None = None    # the batch loop (held: a bare task may be collected)
        self.seed = 0
        self.batches: list[int] = []       # the size of each batch answered (for the benchmark)

    async def answer(self, question: str, temperature: float) -> dict[str, str]:
        """{model name: answer} for one question, from the next batch."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((question, temperature, future))
        if not self.busy:
            self.busy = True
            self.task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch = self.pending[:MAX_CHAT_BATCH]
                del self.pending[:MAX_CHAT_BATCH]
                self.seed += 1
                try:
                    answers = await loop.run_in_executor(self.worker, self._write, batch, self.seed)
                except Exception as error:     # a model that fails fails its batch, not the server
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                self.batches.append(len(batch))
                for (*_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self.busy = False

    def _write(self, batch: list[tuple], seed: int) -> list[dict[str, str]]:
        from .generation import generate   # here: the rating path needs no torch

        answers: list[dict[str, str]] = [{} for _ in batch]
        for temperature in sorted({t for _, t, _ in batch}):
            rows = [i for i, (_, t, _) in enumerate(batch) if t == temperature]
            questions = [batch[i][0] for i in rows]
            for name, (model, tokenizer) in self.models.items():
                written = generate(model, tokenizer, questions, temperature=temperature,
                                   max_new_tokens=MAX_NEW_TOKENS, seed=seed)
                for i, text in zip(rows, written):
                    answers[i][name] = text
        return answers


def chat_engine(names: list[str]) -> ChatEngine | None:
    """A ChatEngine for artifacts or model folders `names` (none: no chat). The models share
    the machine with the event loop: torch gets all cores but one."""
    if not names:
        return None
    import torch

    from .chat import load_chat_models

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return ChatEngine(load_chat_models(names))


def default_chat_models() -> list[str]:
    """SFT and the newest policy, where saved (chapter 02 and later); else none."""
    from .artifacts import exists

    names = [name for name in ("sft",) if exists(name)]
    try:
        newest = class_app.newest_policy()
    except FileNotFoundError:
        return names
    return names + ([newest] if newest not in names else [])


# --- the class: sessions --------------------------------------------------------------------

@dataclass
class Session:
    """One open page of one student."""
    name: str
    ratings: RatingQueue
    last_seen: float = field(default_factory=time.monotonic)
    answers: OrderedDict = field(default_factory=OrderedDict)   # answer id -> (question, answer, model)


class ClassRoom:
    """What the server knows: the pairs, the class folder, the chat, and the open sessions."""

    def __init__(self, pairs: list[dict], folder: str | Path, token: str,
                 chat: ChatEngine | None = None, idle_seconds: float = SESSION_IDLE_SECONDS,
                 max_sessions: int = MAX_SESSIONS):
        self.pairs, self.folder, self.token, self.chat = pairs, Path(folder), token, chat
        self.idle_seconds, self.max_sessions = idle_seconds, max_sessions
        self.sessions: dict[str, Session] = {}
        self.locks: dict[str, asyncio.Lock] = {}      # one per name: its file has one writer
        self.files = ThreadPoolExecutor(max_workers=8, thread_name_prefix="files")
        self.served: dict[str, deque] = {}           # request -> its latest times (seconds)
        self.world = World()
        self.folder.mkdir(parents=True, exist_ok=True)

    def check_token(self, token: object) -> None:
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise RequestError(403, "This page needs the class token: open the address your "
                                    "instructor gave, with ?token=... at the end.")

    def session(self, key: object) -> Session:
        session = self.sessions.get(key) if isinstance(key, str) else None
        if session is None:
            raise RequestError(410, "Your session has ended (the page sat idle, or you started "
                                    "again in another page): press Start again, with your "
                                    "name and resume code.")
        session.last_seen = time.monotonic()
        return session

    def bye(self, key: object) -> None:
        """Release the session `key` at once (its page is closing)."""
        if isinstance(key, str):
            self.sessions.pop(key, None)

    def release_idle(self, now: float | None = None) -> int:
        """Release the sessions idle for `idle_seconds`; return how many."""
        now = time.monotonic() if now is None else now
        idle = [key for key, s in self.sessions.items() if now - s.last_seen > self.idle_seconds]
        for key in idle:
            del self.sessions[key]
        return len(idle)

    async def in_files(self, name: str, work, *args):
        """Run `work(*args)` (file reads, appends and fsyncs) off the event loop, one at a time
        per name, so a slow disk delays only that student."""
        lock = self.locks.setdefault(name, asyncio.Lock())
        async with lock:
            return await asyncio.get_running_loop().run_in_executor(self.files, work, *args)

    # --- what the requests do ---------------------------------------------------------------
    async def start(self, name: object, code: object) -> dict:
        if not isinstance(name, str) or not isinstance(code, str):
            raise RequestError(400, "Type your name (and your resume code if you have one).")
        name, code = name.strip(), code.strip()
        if len(self.sessions) >= self.max_sessions:
            raise RequestError(503, f"The class is full ({self.max_sessions} pages are open). "
                                    "Close a page you no longer use, or ask your instructor.")

        def claim_and_resume():
            code_ = class_app.claim_name(self.folder, name, code)
            queue = RatingQueue(self.pairs, "pair", name, self.folder)
            return code_, queue
        try:
            feedback.check_rater_name(name)
            code, queue = await self.in_files(name, claim_and_resume)
        except class_app.NameTakenError as error:
            raise RequestError(409, str(error)) from None
        except ValueError as error:             # a bad name; a ratings file that cannot be read
            raise RequestError(400, str(error)) from None
        except OSError as error:                # a full disk, a folder made read-only, ...
            raise RequestError(500, f"NOT STARTED: your file could not be made ({error}); "
                                    "tell your instructor.") from None
        for key in [k for k, s in self.sessions.items() if s.name == name]:
            del self.sessions[key]               # the same student's older page: one writer a file
        key = secrets.token_urlsafe(18)
        self.sessions[key] = Session(name, queue)
        return {"session": key, "name": name, "code": code, "rubric": RUBRIC,
                "chat_models": list(self.chat.models) if self.chat else [],
                **self.progress(self.sessions[key])}

    def progress(self, session: Session) -> dict:
        queue, pair = session.ratings, session.ratings.current
        shown = None if pair is None else {
            "pair_id": queue.current_id, "prompt": pair["prompt"],
            "answer_a": pair["answer_a"], "answer_b": pair["answer_b"]}
        return {"rated": queue.rated, "total": len(queue.items), "pair": shown,
                "can_undo": bool(queue.history)}

    async def rate(self, session: Session, pair_id: object, choice: object) -> dict:
        if choice not in PAIR_CHOICES:
            raise RequestError(400, f"choice must be one of {', '.join(PAIR_CHOICES)}.")
        pair = session.ratings.current
        if pair is None or pair_id != session.ratings.current_id:
            raise RequestError(409, "That pair is no longer on screen (rated already?); "
                                    "here is the pair to rate now.")
        record = feedback.pair_record(session.name, pair["prompt"], pair["answer_a"],
                                      pair["answer_b"], choice, *feedback.item_models(pair, "unknown"))
        try:
            await self.in_files(session.name, session.ratings.rate, record)
        except (OSError, ValueError) as error:
            raise RequestError(500, f"NOT SAVED: {error}. Your click was not recorded; try "
                                    "again, or tell your instructor.") from None
        return {"saved": choice, **self.progress(session)}

    async def undo(self, session: Session) -> dict:
        try:
            record = await self.in_files(session.name, session.ratings.undo)
        except (OSError, ValueError) as error:
            raise RequestError(500, f"NOT UNDONE: {error}. The rating stands; try again, or "
                                    "tell your instructor.") from None
        return {"undone": None if record is None else record["choice"], **self.progress(session)}

    async def ask(self, session: Session, question: object, temperature: object) -> dict:
        if self.chat is None:
            raise RequestError(404, "This class has no chat: the instructor started the "
                                    "server without chat models.")
        problem = question_problem(question)
        if problem:
            raise RequestError(400, problem)
        low, high = TEMPERATURES
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not low <= temperature <= high:
            raise RequestError(400, f"temperature must be a number from {low} to {high}, "
                                    f"not {temperature!r}.")
        question = question.strip()
        try:
            answers = await self.chat.answer(question, round(float(temperature), 2))
        except Exception as error:      # noqa: BLE001 - a model that fails is told, not hidden
            raise RequestError(500, f"The chat models failed on this question ({error!r}); "
                                    "tell your instructor.") from None
        shown = []
        for model, answer in answers.items():
            key = secrets.token_urlsafe(9)
            session.answers[key] = (question, answer, model)
            shown.append({"answer_id": key, "model": model, "answer": answer,
                          "gold": answer_gold(self.world, question, answer)})
        while len(session.answers) > ANSWERS_KEPT:
            session.answers.popitem(last=False)
        return {"question": question, "temperature": temperature, "answers": shown}

    async def thumb(self, session: Session, answer_id: object, choice: object) -> dict:
        if choice not in THUMB_CHOICES:
            raise RequestError(400, f"choice must be one of {', '.join(THUMB_CHOICES)}.")
        if not isinstance(answer_id, str) or answer_id not in session.answers:
            raise RequestError(409, "That answer is no longer on screen (thumbed already, or "
                                    "too old); ask again.")
        question, answer, model = session.answers[answer_id]
        record = feedback.single_record(session.name, question, answer, choice, model)
        try:
            await self.in_files(session.name, session.ratings.writer.append, record)
        except (OSError, ValueError) as error:
            raise RequestError(500, f"NOT SAVED: {error}. Try again, or tell your "
                                    "instructor.") from None
        del session.answers[answer_id]          # one thumb per answer
        return {"saved": choice, "model": model}


# --- the web app ------------------------------------------------------------------------------

class _Handler(tornado.web.RequestHandler):
    def initialize(self, room: ClassRoom):
        self.room = room

    def set_default_headers(self):
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs):      # tornado's own errors, as JSON
        self.finish({"error": f"The server could not answer this request ({status_code} "
                              f"{self._reason}). Reload the page; if it happens again, tell "
                              "your instructor."})


class PageHandler(_Handler):
    def initialize(self, room: ClassRoom, page: bytes):
        self.room, self.page = room, page

    def get(self):
        try:
            self.room.check_token(self.get_query_argument("token", ""))
        except RequestError as error:
            self.set_status(error.status)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(error.message)
            return
        self.set_header("Content-Security-Policy",
                        "default-src 'none'; script-src 'unsafe-inline'; style-src "
                        "'unsafe-inline'; connect-src 'self'; img-src data:")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.page)


class ApiHandler(_Handler):
    async def post(self, action: str):
        try:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            body = self._body()
            self.room.check_token(body.get("token"))
            reply = await self._do(action, body)
        except RequestError as error:
            self.set_status(error.status)
            reply = {"error": error.message}
        self.finish(json.dumps(reply, ensure_ascii=False))

    def _body(self) -> dict:
        if len(self.request.body) > MAX_BODY_BYTES:
            raise RequestError(413, f"That request is too large (over {MAX_BODY_BYTES // 1024} KB).")
        try:
            body = json.loads(self.request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RequestError(400, "That request is not JSON; reload the page.") from None
        if not isinstance(body, dict):
            raise RequestError(400, "That request is not a JSON object; reload the page.")
        return body

    def on_finish(self):
        """Keep how long the server took over this request (for /status)."""
        action = self.path_args[0] if self.path_args else ""
        if action in ACTIONS:
            times = self.room.served.setdefault(action, deque(maxlen=5000))
            times.append(self.request.request_time())

    async def _do(self, action: str, body: dict) -> dict:
        room = self.room
        if action not in ACTIONS:
            raise RequestError(404, f"There is no request {action[:40]!r}; reload the page.")
        if action == "start":
            return await room.start(body.get("name"), body.get("code", ""))
        if action == "bye":
            room.bye(body.get("session"))
            return {"bye": True}
        session = room.session(body.get("session"))
        if action == "rate":
            return await room.rate(session, body.get("pair_id"), body.get("choice"))
        if action == "undo":
            return await room.undo(session)
        if action == "state":
            return room.progress(session)
        if action == "chat":
            return await room.ask(session, body.get("question"), body.get("temperature", 1.0))
        return await room.thumb(session, body.get("answer_id"), body.get("choice"))


class StatusHandler(_Handler):
    """GET /status?token=...: open sessions, the chat's batches, the server's memory, and how
    long the server took over each kind of request (p50, p95 of the latest 5,000), for the
    instructor and the load test."""

    def get(self):
        try:
            self.room.check_token(self.get_query_argument("token", ""))
        except RequestError as error:
            self.set_status(error.status)
            self.finish({"error": error.message})
            return
        batches = self.room.chat.batches if self.room.chat else []
        served = {f"{action}_{name}_s": round(quantile(times, q), 4)
                  for action, times in self.room.served.items()
                  for name, q in (("p50", 0.5), ("p95", 0.95))}
        self.finish({"sessions": len(self.room.sessions), "rss_mb": round(_rss_mb(), 1),
                     "chat_batches": len(batches),
                     "largest_chat_batch": max(batches, default=0), **served})


def quantile(values, q: float) -> float:
    """The `q` quantile of `values` by nearest rank (one of the values); NaN for none. The
    server's /status, its load test and bench/class_server.py all report with this."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def make_app(room: ClassRoom) -> tornado.web.Application:
    args = {"room": room}
    return tornado.web.Application([
        (r"/", PageHandler, {**args, "page": PAGE.read_bytes()}),   # read once
        (r"/api/(.*)", ApiHandler, args),
        (r"/status", StatusHandler, args),
    ])


async def run_server(room: ClassRoom, host: str, port: int) -> None:
    """Serve `room` until SIGINT or SIGTERM; release idle sessions every half minute."""
    # Bodies up to 1 MiB are read and refused with a message (413); larger ones are cut off.
    server = make_app(room).listen(port, address=host, max_body_size=2**20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):    # Windows: Ctrl+C raises instead
            pass

    async def sweep():
        while True:
            await asyncio.sleep(min(30, room.idle_seconds / 2))
            room.release_idle()
    sweeper = asyncio.ensure_future(sweep())
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        server.stop()


def serve(pairs: str | Path, folder: str | Path, host: str, port: int, token: str | None = None,
          chat: list[str] | None = None) -> None:
    """Check the pairs file, load the chat models, then serve the class until Ctrl+C."""
    pair_list = class_app.read_pairs_file(pairs)
    token = token or os.environ.get("RLHF_LAB_CLASS_TOKEN") or secrets.token_urlsafe(9)
    if len(token) < 8:
        raise ValueError("The class token must be at least 8 characters long.")
    engine = chat_engine(default_chat_models() if chat is None else chat)
    folder = Path(folder).resolve()
    room = ClassRoom(pair_list, folder, token, engine)
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    models = ", ".join(engine.models) if engine else "none (no chat)"
    print(f"Class server: {len(pair_list)} pairs from {pairs}; ratings go to {folder}/<name>.jsonl\n"
          f"Chat models: {models}\n"
          f"Class token: {token}\n"
          f"Give the class this address: http://{shown}:{port}/?token={token}\n"
          "Stop with Ctrl+C.", flush=True)
    try:
        asyncio.run(run_server(room, host, port))
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_lab.class_server",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-pairs", help="write the class pairs file from a policy")
    make.add_argument("--out", default=str(CLASS_PAIRS))
    make.add_argument("--n", type=int, default=40, help="how many pairs (default 40)")
    make.add_argument("--policy", default="",
                      help="artifact(s) that write the answers, comma-separated (default: the "
                           f"newest policy artifact of {', '.join(class_app.POLICIES)})")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--force", action="store_true", help="replace an existing pairs file")
    run = commands.add_parser("serve", help="serve the rating and chat page to the class")
    run.add_argument("--pairs", default=str(CLASS_PAIRS))
    run.add_argument("--folder", default=str(CLASS_RATINGS), help="the class folder")
    run.add_argument("--host", default="0.0.0.0",
                     help="0.0.0.0: every network of this machine; 127.0.0.1: this machine only")
    run.add_argument("--port", type=int, default=8866)
    run.add_argument("--token", help="the class token (default: RLHF_LAB_CLASS_TOKEN or a new one)")
    run.add_argument("--chat", default=None,
                     help="chat models, comma-separated artifacts or model folders; 'none' for "
                          "no chat (default: sft and the newest policy, where saved)")
    args = parser.parse_args(argv)
    try:
        if args.command == "make-pairs":
            policies = args.policy.split(",") if args.policy else [class_app.newest_policy()]
            path = class_app.write_pairs_file(args.out, args.n, policies, args.seed, args.force)
            print(f"{len(class_app.read_pairs_file(path))} pairs of answers by "
                  f"{', '.join(policies)} written to {path}")
        else:
            chat = None if args.chat is None else [
                name for name in args.chat.split(",") if name and name != "none"]
            serve(args.pairs, args.folder, args.host, args.port, args.token, chat)
    except (ValueError, OSError) as error:    # bad pairs file or token, missing model, ...
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
