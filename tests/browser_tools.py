"""What the browser tests share (tests/test_lab_browser.py, tests/test_class_server.py, tests/test_chat_browser.py): a server
on a free localhost port that is stopped whatever happens, and Debian's headless Chromium
driven by Playwright (no browser download: `make browser` installs Chromium with apt)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RLHF_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
OUTPUT_DIR = Path(__file__).resolve().parent / "output"   # git-ignored: screenshots, logs


def output_dir(name: str) -> Path:
    """tests/output/<name>/, emptied: where a browser test leaves its screenshots and logs."""
    folder = OUTPUT_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    return folder


def require_chromium() -> str:
    """The Chromium executable; skips the test, saying how to install it, when it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser test skipped: Chromium is not installed at {CHROMIUM}; "
                    "`make browser` installs Debian's chromium (needs root or sudo)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("Chromium is installed but the playwright package is not: run `make install`")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> tuple[int, str, dict]:
    """(status, body, headers) of a GET that does not follow redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace"), dict(error.headers)


@contextmanager
def running_server(cmd: list[str], env: dict, ready_url: str, log_path: Path,
                   timeout: float = 120):
    """Start `cmd` in a process group of its own, wait until `ready_url` answers 200, and
    stop the server and everything it started (kernels included) on the way out."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with code {proc.returncode} before "
                                       f"it answered; its log:\n{log_tail(log_path)}")
                try:
                    if http_get(ready_url, timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer {ready_url} within "
                                       f"{timeout:.0f} s; its log:\n{log_tail(log_path)}")
                time.sleep(0.3)
            yield proc
        finally:
            stop_process_tree(proc)


def stop_process_tree(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it shuts its kernels down), SIGKILL after 20 s;
    then kill any child left over (kernels run in sessions of their own)."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def log_tail(path: Path, chars: int = 4000) -> str:
    text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
    return text[-chars:]


@contextmanager
def chromium_browser():
    """Headless Debian Chromium under Playwright (sync API); closed whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(),
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
