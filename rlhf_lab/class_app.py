"""The class rating app: a whole class rates the same model's answers at once, each student
from their own browser, through chapter 03's widget served by Voilà (`make rate`).
Chapter 09 pools the ratings.

The instructor's flow (README, "For instructors"):

1. `make class-pairs` (`python -m rlhf_lab.class_app make-pairs`) writes the pairs file
   from the current policy, beforehand; so the app's kernel needs no model and no torch
   and starts in about a second, which matters when thirty start at once.
2. `make rate` (`python -m rlhf_lab.class_app serve`) checks the pairs file (a clear error
   now, never a broken page later), makes a class token, prints the address to give the
   class, and serves `class_app.ipynb` with Voilà, one kernel per student.
3. A student opens the address, types a name and rates. Every click is appended and
   fsynced to `<class folder>/<name>.jsonl` in chapter 03's schema (`feedback`), so
   chapter 09 reads the folder as it is (`feedback.ratings_frame(folder)`).

Safety: Voilà serves nothing without the token, lets the page send its kernel widget
messages only (no code runs from a browser) and, here, serves no files. A name becomes a
file name only through `feedback.check_rater_name`. The first student to use a name is
shown a resume code, needed to rate under that name again (after reloading the page, say),
so nobody can add to another student's file; the app shows a student only their own progress.
"""
from __future__ import annotations

import argparse
import hmac
import html
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

import ipywidgets as widgets

from . import feedback
from .config import CLASS_PAIRS, CLASS_RATINGS
from .widget import RatingWidget

APP_NOTEBOOK = Path(__file__).with_name("class_app.ipynb")
ENV_PAIRS, ENV_FOLDER = "RLHF_LAB_CLASS_PAIRS", "RLHF_LAB_CLASS_FOLDER"   # serve -> kernels
ENV_CULL = "RLHF_LAB_CLASS_CULL_SECONDS"
CULL_SECONDS = 120          # a kernel whose page closed is shut down after this long idle
CLAIMS = ".claims"                               # <folder>/.claims/<name>: that name's resume code
WRONG = ".wrong"                                 # <folder>/.claims/.wrong/<name>: failed codes
WRONG_CODES_ALLOWED = 5    # wrong resume codes for one name within LOCKOUT_SECONDS lock it ...
LOCKOUT_SECONDS = 600      # ... until LOCKOUT_SECONDS after the last one: ~1 guess a minute
PAIR_FIELDS = {"prompt": True, "answer_a": True, "answer_b": True, "model": False, "model_b": False}


class PairsFileError(ValueError):
    """A missing or malformed pairs file; the message names the file, the line and the fix."""


class NameTakenError(ValueError):
    """Another student rates under this name (or the resume code is wrong)."""


# --- the pairs file -----------------------------------------------------------------------

def read_pairs_file(path: str | Path) -> list[dict]:
    """The pairs of a class pairs file: one JSON object a line, {prompt, answer_a, answer_b}
    as non-empty strings, optionally "model" and "model_b". Raises PairsFileError."""
    path = Path(path)
    make_it = f"make it with: make class-pairs PAIRS={path}"
    if not path.is_file():
        raise PairsFileError(f"The pairs file {path} does not exist; {make_it}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise PairsFileError(f"The pairs file {path} is not UTF-8 text; {make_it}") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except ValueError as error:
            raise PairsFileError(f"{path}, line {number}: not valid JSON ({error}); "
                                 f"each line must be one pair; {make_it}") from None
        problem = _pair_problem(pair)
        if problem:
            raise PairsFileError(f"{path}, line {number}: {problem}; {make_it}")
        pairs.append(pair)
    if not pairs:
        raise PairsFileError(f"The pairs file {path} holds no pairs; {make_it}")
    return pairs


def _pair_problem(pair: object) -> str | None:
    if not isinstance(pair, dict):
        return f"expected a JSON object {{prompt, answer_a, answer_b}}, found {type(pair).__name__}"
    for name, required in PAIR_FIELDS.items():
        value = pair.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value.strip():
            return f"field {name!r} must be a non-empty string, not {value!r}"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return (f"field {name!r} holds {value[error.start:error.end]!r}, half of a "
                    "character (a lone surrogate) that no ratings file can store")
    unknown = sorted(set(pair) - set(PAIR_FIELDS))
    return f"unknown fields {unknown} (a pair has only {list(PAIR_FIELDS)})" if unknown else None


POLICIES = ("iterated", "ppo", "dpo", "sft")    # artifacts whose answers a class may rate


def newest_policy() -> str:
    """The policy artifact saved most recently (of POLICIES): the current policy, whose
    answers the class should rate. Raises FileNotFoundError naming notebook 02 when none is."""
    from .artifacts import artifact_path, exists   # imported here: the app's kernel needs no torch

    saved = [name for name in POLICIES if exists(name)]
    if not saved:
        raise FileNotFoundError("No policy has been trained yet (looked for "
                                f"{', '.join(POLICIES)}). Run notebooks/02_sft.ipynb first.")
    return max(saved, key=lambda name: (artifact_path(name) / "COMPLETE").stat().st_mtime)


def write_pairs_file(out: str | Path, n_pairs: int, policies: list[str], seed: int = 0,
                     force: bool = False) -> Path:
    """Write `n_pairs` comparisons of answers by `policies` (artifact names, e.g. "sft" or "ppo")
    to questions of the training split, as a class pairs file. Refuses to replace an
    existing file unless `force` (ratings already made stay valid: each holds its pair)."""
    from .artifacts import load_model  # imported here: the app's kernel needs no torch
    from .comparisons import sample_comparisons
    from .world import World

    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force (make class-pairs FORCE=1) to replace it.")
    models = {name: load_model(name) for name in policies}
    pairs = sample_comparisons(models, World().split("train"), n_pairs, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), "utf-8")
    os.replace(tmp, out)
    return out


# --- names ---------------------------------------------------------------------------------

def claim_name(folder: str | Path, name: str, code: str = "", now: float | None = None) -> str:
    """Let `name` rate in `folder` and return its resume code.

    The first claim of a name creates `<folder>/.claims/<name>` (atomically: of two students
    typing the same new name at once, one gets it) holding a new six-digit code. Later
    claims must give that code. Guessing is locked out: after WRONG_CODES_ALLOWED wrong
    codes for one name within LOCKOUT_SECONDS, every claim of that name (the right code
    included) is refused until LOCKOUT_SECONDS after the last wrong one, so guessing one
    of the million codes takes years, not minutes. An empty code is not a guess. A ratings
    file that no claim covers (not written by the app) is never handed out. Raises
    ValueError (bad name) or NameTakenError. `now`: the time (seconds), for tests.
    """
    feedback.check_rater_name(name)
    claims = Path(folder) / CLAIMS
    (claims / WRONG).mkdir(parents=True, exist_ok=True)
    claim = claims / name
    taken = (f"The name {name!r} is taken in this class. If it is yours, type the resume code "
             "you were shown when you started; otherwise choose another name.")
    if claim.exists():
        now = time.time() if now is None else now
        wrong = _recent_wrong_codes(claims / WRONG / name, now)
        if len(wrong) >= WRONG_CODES_ALLOWED:
            wait = max(1, round((wrong[-1] + LOCKOUT_SECONDS - now) / 60))
            raise NameTakenError(f"Too many wrong resume codes for {name!r}: try again in about "
                                 f"{wait} minute{'s' if wait != 1 else ''}, or ask your "
                                 "instructor, who can read the code in the class folder.")
        if code and hmac.compare_digest(claim.read_bytes().strip(), code.strip().encode()):
            return code.strip()
        if code.strip():
            with open(claims / WRONG / name, "a", encoding="utf-8") as file:
                file.write(f"{now}\n")
        raise NameTakenError(taken)
    if feedback.ratings_path(name, folder).exists():
        raise NameTakenError(taken)
    new_code = f"{secrets.randbelow(10**6):06d}"
    try:
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise NameTakenError(taken) from None
    with os.fdopen(fd, "w") as file:
        file.write(new_code)
        file.flush()
        os.fsync(file.fileno())
    return new_code


def _recent_wrong_codes(path: Path, now: float) -> list[float]:
    """The times of the wrong codes for one name within LOCKOUT_SECONDS of the last one, if
    that last one is within LOCKOUT_SECONDS of `now` (else none: the lockout is over)."""
    if not path.exists():
        return []
    times = sorted(float(t) for t in path.read_text(encoding="utf-8").split())
    if not times or now - times[-1] >= LOCKOUT_SECONDS:
        return []
    return [t for t in times if times[-1] - t < LOCKOUT_SECONDS]


# --- the app --------------------------------------------------------------------------------

class ClassRatingApp(widgets.VBox):
    """What a student sees: a name box, then chapter 03's RatingWidget on the class pairs,
    writing `<folder>/<name>.jsonl`."""

    def __init__(self, pairs: list[dict], folder: str | Path, model: str = "unknown"):
        super().__init__()
        self.pairs, self.folder, self.model = pairs, Path(folder), model
        self.rating: RatingWidget | None = None
        wide = {"description_width": "initial"}
        self.name = widgets.Text(description="Your name:", placeholder="e.g. ann or team3-bo",
                                 style=wide)
        self.code = widgets.Text(description="Resume code:", style=wide,
                                 placeholder="only if you rated here before")
        self.start = widgets.Button(description="Start rating", button_style="primary")
        self.start.on_click(self._start)
        self.message = widgets.HTML()
        self.children = [
            widgets.HTML(f"<h3>Rate {len(pairs)} pairs of answers</h3><p>Type your name "
                         f"({html.escape(feedback.RATER_NAME_RULE)}) and press Start. Each "
                         "click is saved at once to your own file.</p>"),
            widgets.HBox([self.name, self.code, self.start]), self.message]

    def _start(self, _=None) -> None:
        if self.rating is not None:        # a second click of Start
            return
        name = self.name.value.strip()
        try:
            code = claim_name(self.folder, name, self.code.value)
            rating = RatingWidget(self.pairs, rater=name, model=self.model, folder=self.folder)
        except ValueError as error:        # a bad name, a name not yours, a broken file
            self.message.value = f"<b style='color:#b00'>{html.escape(str(error))}</b>"
            return
        self.rating = rating
        self.children = [widgets.HTML(
            f"<p>Rating as <b>{html.escape(name)}</b>. Your resume code is <b>{code}</b>: "
            "keep it, to go on under this name after reloading the page.</p>"), self.rating]


def app_from_environment() -> widgets.Widget:
    """What class_app.ipynb shows: the app on the pairs file and folder that `serve` set,
    or a message saying what is wrong (never a traceback in a student's page)."""
    pairs_path, folder = os.environ.get(ENV_PAIRS), os.environ.get(ENV_FOLDER)
    if not pairs_path or not folder:
        return widgets.HTML("<b>This notebook is the class rating app: start it with "
                            "<code>make rate</code> (see the README, For instructors).</b>")
    try:
        pairs = read_pairs_file(pairs_path)
    except PairsFileError as error:
        return widgets.HTML("<b style='color:#b00'>The rating app cannot start: "
                            f"{html.escape(str(error))}</b> Tell your instructor.")
    return ClassRatingApp(pairs, folder)


# --- the commands ---------------------------------------------------------------------------

def serve(pairs: str | Path, folder: str | Path, host: str, port: int,
          token: str | None = None) -> None:
    """Check the pairs file, then serve the app with Voilà until Ctrl+C (or SIGTERM)."""
    n_pairs = len(read_pairs_file(pairs))
    token = token or os.environ.get("RLHF_LAB_CLASS_TOKEN") or secrets.token_urlsafe(9)
    if len(token) < 8:
        raise ValueError("The class token must be at least 8 characters long.")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_PAIRS], os.environ[ENV_FOLDER] = str(Path(pairs).resolve()), str(folder)
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    print(f"Class rating app: {n_pairs} pairs from {pairs}; ratings go to {folder}/<name>.jsonl\n"
          f"Class token: {token}\n"
          f"Give the class this address: http://{shown}:{port}/?token={token}\n"
          "Stop with Ctrl+C.", flush=True)

    from traitlets.config import Config
    from voila.app import Voila

    config = Config()
    config.Voila.update(ip=host, port=port, port_retries=0, open_browser=False, token=token,
                        config_file_paths=[])     # no stray voila.json can change these
    config.VoilaConfiguration.file_allowlist = []  # serve the app, not a single file
    # A closed page leaves its kernel idle and unconnected: shut it down after CULL_SECONDS,
    # so page loads cannot fill the machine's memory. Open pages are never culled.
    cull = int(os.environ.get(ENV_CULL) or CULL_SECONDS)
    config.MappingKernelManager.update(cull_idle_timeout=cull, cull_connected=False,
                                       cull_interval=max(1, min(30, cull // 2)))
    if os.name == "posix":   # kernels on Unix sockets: thirty starting at once race for TCP ports
        config.KernelManager.transport = "ipc"
        config.Voila.connection_dir_root = "/tmp"  # short paths: a socket path has ~100 bytes
    Voila.launch_instance(argv=[str(APP_NOTEBOOK)], config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_lab.class_app", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-pairs", help="write the class pairs file from a policy")
    make.add_argument("--out", default=str(CLASS_PAIRS))
    make.add_argument("--n", type=int, default=40, help="how many pairs (default 40)")
    make.add_argument("--policy", default="",
                      help="artifact(s) that write the answers, comma-separated (default: the "
                           f"newest policy artifact of {', '.join(POLICIES)})")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--force", action="store_true", help="replace an existing pairs file")
    run = commands.add_parser("serve", help="serve the rating app to the class with Voilà")
    run.add_argument("--pairs", default=str(CLASS_PAIRS))
    run.add_argument("--folder", default=str(CLASS_RATINGS), help="the class folder")
    run.add_argument("--host", default="0.0.0.0",
                     help="0.0.0.0: every network of this machine; 127.0.0.1: this machine only")
    run.add_argument("--port", type=int, default=8866)
    run.add_argument("--token", help="the class token (default: RLHF_LAB_CLASS_TOKEN or a new one)")
    args = parser.parse_args(argv)
    try:
        if args.command == "make-pairs":
            policies = args.policy.split(",") if args.policy else [newest_policy()]
            path = write_pairs_file(args.out, args.n, policies, args.seed, args.force)
            print(f"{len(read_pairs_file(path))} pairs of answers by {', '.join(policies)} "
                  f"written to {path}")
        else:
            serve(args.pairs, args.folder, args.host, args.port, args.token)
    except (ValueError, OSError) as error:    # bad pairs file or token, missing model, ...
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
