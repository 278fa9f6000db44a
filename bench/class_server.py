"""A lecture hall on one laptop: 150 students rating and 30 chatting at once, against the class
server (`make rate`, rlhf_lab/class_server.py) on this machine's cores.

Two phases, each on a fresh server and class folder:

- `http`: the students are plain HTTP clients (tornado's, in this process): what the server
  itself takes, with no browser in the way.
- `chromium`: every student is a page in one headless Chromium on the same machine, clicking
  the real page: what a student sees, plus the cost of drawing 180 pages on the server's own
  cores (students' laptops do that for themselves in class). The browser's CPU seconds are
  reported beside the server's, so the share of the page times that is the test's own browser
  can be read off.

Each rater opens the page, types a name, starts and rates `--per-rater` pairs (a click is timed
from the press to the next pair on screen); each chatter asks one question at temperature 1
and presses a thumb (a chat answer is timed from Ask to the answers on screen). "usable" is
the time from the phase's start until the student's page shows its first pair. Then every
rating file is read back: ratings lost, doubled or misfiled are counted. The server's memory
is sampled every 0.2 s (peak resident set).

The chat models are the full-mode 'sft' and 'ppo' artifacts where saved (else quick-mode
'sft', built if missing). Prints a table and writes bench/results/class_server.csv.
Needs Chromium for the second phase (`make browser`); without it only `http` runs.

    .venv/bin/python bench/class_server.py [--raters 150] [--chatters 30] [--per-rater 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-class-token"
CHROMIUM = os.environ.get("RLHF_LAB_CHROMIUM", "/usr/bin/chromium")
N_PAIRS = 40
RENDERERS = 12     # Chromium renderer processes the pages share (one each costs ~0.4 CPU s a page)


def chat_models() -> tuple[list[str], dict]:
    """The --chat argument and the environment that finds those artifacts."""
    from rlhf_lab import artifacts

    full = artifacts.artifacts_dir().parent / "full"
    if (full / "sft").exists():
        names = [n for n in ("sft", "ppo") if (full / n / "COMPLETE").exists()]
        return names, {"RLHF_LAB_QUICK": "0"}
    os.environ["RLHF_LAB_QUICK"] = "1"
    print("No full-mode 'sft' artifact: using (building if missing) the quick-mode one.")
    artifacts.load_model("sft", build_if_missing=True)
    return ["sft"], {"RLHF_LAB_QUICK": "1"}


def write_pairs(path: Path) -> None:
    """N_PAIRS pairs of the world's training questions with answers of realistic length."""
    from rlhf_lab.world import World

    pairs = [{"prompt": q.text, "answer_a": f"Hi! {q.text.capitalize()} Let me think. "
              "I believe the answer is the one you would expect.",
              "answer_b": "I am not sure, but it could be so.", "model": "bench"}
             for q in World().split("train")[:N_PAIRS]]
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))


class Server:
    """The class server in its own process, its memory sampled until stopped."""

    def __init__(self, folder: Path, chat: list[str], env: dict):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        write_pairs(folder / "pairs.jsonl")
        self.log = open(folder / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlhf_lab.class_server", "serve", "--pairs",
             str(folder / "pairs.jsonl"), "--folder", str(folder / "ratings"), "--host",
             "127.0.0.1", "--port", str(self.port), "--chat", ",".join(chat) or "none"],
            cwd=ROOT, env={**os.environ, **env, "RLHF_LAB_CLASS_TOKEN": TOKEN},
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/?token={TOKEN}", timeout=2)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "server.log").read_text())
                time.sleep(0.3)
        import psutil

        self.process = psutil.Process(self.proc.pid)
        self.peak_mb, self.cpu_start = 0.0, sum(self.process.cpu_times()[:2])
        self.sampling = True
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self):
        while self.sampling:
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        return sum(self.process.cpu_times()[:2]) - self.cpu_start

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/status?token={TOKEN}", timeout=10) as response:
            return json.loads(response.read())

    def stop(self):
        self.sampling = False
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


# --- phase 1: plain HTTP clients ----------------------------------------------------------------

async def http_class(url: str, raters: int, chatters: int, per_rater: int) -> dict:
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(max_clients=raters + chatters)
    times = {"usable": [], "click": [], "chat": []}
    started = time.monotonic()

    async def call(action: str, body: dict) -> dict:
        response = await client.fetch(f"{url}/api/{action}", method="POST", request_timeout=300,
                                      body=json.dumps({"token": TOKEN, **body}))
        return json.loads(response.body)

    async def rater(r: int):
        await client.fetch(f"{url}/?token={TOKEN}", request_timeout=300)
        state = await call("start", {"name": f"rater{r:03d}"})
        session = state["session"]
        times["usable"].append(time.monotonic() - started)
        for k in range(per_rater):
            t0 = time.monotonic()
            state = await call("rate", {"session": session, "choice": "ab"[k % 2],
                                        "pair_id": state["pair"]["pair_id"]})
            times["click"].append(time.monotonic() - t0)
        await call("bye", {"session": session})

    async def chatter(c: int):
        await client.fetch(f"{url}/?token={TOKEN}", request_timeout=300)
        session = (await call("start", {"name": f"chat{c:02d}"}))["session"]
        times["usable"].append(time.monotonic() - started)
        t0 = time.monotonic()
        reply = await call("chat", {"session": session, "temperature": 1.0,
                                    "question": f"what colour is a {['cat', 'dog', 'cow'][c % 3]}?"})
        times["chat"].append(time.monotonic() - t0)
        await call("thumb", {"session": session, "choice": "up",
                             "answer_id": reply["answers"][0]["answer_id"]})
        await call("bye", {"session": session})

    await asyncio.gather(*[rater(r) for r in range(raters)], *[chatter(c) for c in range(chatters)])
    client.close()
    return times


# --- phase 2: a page per student in headless Chromium -------------------------------------------

# Timed inside the page, from the click to the DOM showing the answer (Playwright's own waiting
# polls at up to 1 s intervals, which would blur sub-second times). One call runs a student's
# clicks in turn, so the driver adds no round trip between them.
CLICKS = """async (steps) => {
  const clickUntil = (button, target, prefix) => new Promise((resolve) => {
    const node = document.querySelector(target);
    const t0 = performance.now();
    const watch = new MutationObserver(() => {
      if (node.textContent.startsWith(prefix)) {
        watch.disconnect();
        resolve((performance.now() - t0) / 1000);
      }
    });
    watch.observe(node, {childList: true, characterData: true, subtree: true});
    document.querySelector(button).click();
  });
  const seconds = [];
  for (const [button, target, prefix] of steps) seconds.push(await clickUntil(button, target, prefix));
  return seconds;
}"""


async def clicks(page, steps: list[tuple[str, str, str]]) -> list[float]:
    """Click each (button, target, prefix) in turn; the seconds until `target`'s text starts
    with `prefix`, for each."""
    return await page.evaluate(CLICKS, [list(step) for step in steps])


async def chromium_class(url: str, raters: int, chatters: int, per_rater: int) -> tuple[dict, float]:
    """The same class as pages of one headless Chromium; returns the times and the browser's
    CPU seconds."""
    import psutil
    from playwright.async_api import async_playwright

    times = {"usable": [], "click": [], "chat": []}
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
            f"--renderer-process-limit={RENDERERS}"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        # The browser's cost: Chromium's processes and Playwright's driver (node).
        children = lambda: psutil.Process().children(recursive=True)  # noqa: E731
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in children())
        started = time.monotonic()

        # One context for every page: contexts of their own (as students' own browsers) cost
        # this machine a renderer each, and pages were usable later (33 s against 15 s).
        context = await browser.new_context(viewport={"width": 1000, "height": 800})

        async def open_page(k: int, name: str):
            page = await context.new_page()
            page.set_default_timeout(600_000)
            await page.goto(f"{url}/?token={TOKEN}")
            await page.fill("#name", name)
            await clicks(page, [("#go", "#count", f"rated 0 / {N_PAIRS}")])
            times["usable"].append(time.monotonic() - started)
            return page

        async def rater(page, r: int):
            times["click"] += await clicks(page, [
                (f"[data-choice={'ab'[k % 2]}]", "#count", f"rated {k + 1} / {N_PAIRS}")
                for k in range(per_rater)])
            await page.close(run_before_unload=True)     # as a student closes the tab

        async def chatter(page, c: int):
            await page.click("#tab-chat")
            await page.fill("#question", f"what colour is a {['cat', 'dog', 'cow'][c % 3]}?")
            times["chat"] += await clicks(page, [("#ask", "#message", "Answers sampled")])
            first = page.locator(".answer").first
            await first.locator("button").first.click()                      # thumbs up
            await first.locator(".ok").wait_for()                            # "Saved"
            await page.close(run_before_unload=True)     # as a student closes the tab

        # Every student opens the page at once; once all are open, all rate and chat at once
        # (in class, each page is drawn by its student's own laptop, not by the server's cores).
        names = [f"rater{r:03d}" for r in range(raters)] + [f"chat{c:02d}" for c in range(chatters)]
        pages = await asyncio.gather(*[open_page(k, name) for k, name in enumerate(names)])
        await asyncio.gather(*[rater(pages[r], r) for r in range(raters)],
                             *[chatter(pages[raters + c], c) for c in range(chatters)])
        cpu = sum(sum(p.cpu_times()[:2]) for p in children()) - cpu_before
        await browser.close()
    return times, cpu


# --- checks and figures --------------------------------------------------------------------------

def records_check(folder: Path, raters: int, chatters: int, per_rater: int) -> dict:
    """Ratings lost, doubled or misfiled, read back from the class folder."""
    from rlhf_lab import feedback

    lost = doubled = misfiled = 0
    ids = []
    for name, expected in ([(f"rater{r:03d}", per_rater) for r in range(raters)]
                           + [(f"chat{c:02d}", 1) for c in range(chatters)]):
        path = folder / f"{name}.jsonl"
        records = feedback.read_records(path) if path.exists() else []
        misfiled += sum(r["rater"] != name for r in records)
        lost += max(0, expected - len(records))
        doubled += max(0, len(records) - expected)
        ids += [r["id"] for r in records]
    doubled += len(ids) - len(set(ids))
    extra = {p.stem for p in folder.glob("*.jsonl")} - {
        *(f"rater{r:03d}" for r in range(raters)), *(f"chat{c:02d}" for c in range(chatters))}
    return {"lost": lost, "doubled": doubled, "misfiled": misfiled + len(extra)}


def run_phase(phase: str, args, chat: list[str], env: dict) -> dict:
    from rlhf_lab.class_server import quantile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = Server(folder, chat, env)
        try:
            t0 = time.monotonic()
            if phase == "http":
                times, browser_cpu = asyncio.run(http_class(
                    server.url, args.raters, args.chatters, args.per_rater)), 0.0
            else:
                times, browser_cpu = asyncio.run(chromium_class(
                    server.url, args.raters, args.chatters, args.per_rater))
            seconds = time.monotonic() - t0
            deadline = time.monotonic() + 20     # the pages' goodbyes arrive
            while server.status()["sessions"] and time.monotonic() < deadline:
                time.sleep(0.5)
            status, server_cpu = server.status(), server.cpu_seconds()
        finally:
            server.stop()
        checks = records_check(folder / "ratings", args.raters, args.chatters, args.per_rater)
    return {"phase": phase, "raters": args.raters, "chatters": args.chatters,
            "ratings": len(times["click"]), **checks,
            "usable_p50_s": quantile(times["usable"], 0.5),
            "usable_max_s": max(times["usable"]),
            "click_p50_s": quantile(times["click"], 0.5),
            "click_p95_s": quantile(times["click"], 0.95),
            "chat_p50_s": quantile(times["chat"], 0.5),
            "chat_p95_s": quantile(times["chat"], 0.95),
            "server_rate_p50_s": status.get("rate_p50_s"), "server_rate_p95_s": status.get("rate_p95_s"),
            "server_chat_p50_s": status.get("chat_p50_s"), "server_chat_p95_s": status.get("chat_p95_s"),
            "server_peak_mb": server.peak_mb, "sessions_left": status["sessions"],
            "chat_batches": status["chat_batches"], "largest_batch": status["largest_chat_batch"],
            "seconds": seconds, "server_cpu_s": server_cpu, "browser_cpu_s": browser_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=150)
    parser.add_argument("--chatters", type=int, default=30)
    parser.add_argument("--per-rater", type=int, default=5, help="pairs each rater rates")
    parser.add_argument("--phases", default="http,chromium")
    args = parser.parse_args()
    chat, env = chat_models()
    print(f"chat models: {', '.join(chat)} ({'full' if env['RLHF_LAB_QUICK'] == '0' else 'quick'} mode); "
          f"{os.cpu_count()} cores")
    rows = []
    for phase in args.phases.split(","):
        if phase == "chromium" and not Path(CHROMIUM).exists():
            print(f"No Chromium at {CHROMIUM}: skipping the chromium phase (make browser).")
            continue
        rows.append(run_phase(phase, args, chat, env))
        print(pd.DataFrame(rows[-1:]).round(3).T.to_string(header=False), flush=True)
    table = pd.DataFrame(rows).round(3)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "class_server.csv", index=False)
    print(table.T.to_string(header=False))


if __name__ == "__main__":
    main()
