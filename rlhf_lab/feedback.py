"""Storage of ratings: one JSON line per click, appended and flushed at once, never rewritten.

Taught in notebooks/03_human_feedback.ipynb. Ratings are learner data: every click is one
line in `data/feedback/<rater>.jsonl`, written with `flush()` and `os.fsync()` before the
widget shows the next pair, so a crash or a kernel restart loses nothing already clicked.

The schema (version `SCHEMA_VERSION`) has three kinds of record, all with `schema`, `id`
(uuid4 hex), `kind`, `rater` and `time` (ISO-8601, UTC):

- "pair":   `prompt`, `answer_a`, `answer_b`, `choice` ("a", "b", "tie" or "skip"), `model`
            (the policy that wrote the answers), optional `model_b` (when answer B came from
            another policy) and `pair_id` (see `pair_id`).
- "single": `prompt`, `answer`, `choice` ("up", "down" or "skip"), `model` and `answer_id`
            (see `answer_id`).
- "undo":   `undoes`, the id of an earlier rating in the same file.

Rules, applied by the loader, never by editing the file:

- Undo: an undo record cancels the rating it names; undoing a rating that is already
  undone changes nothing. The rating stays in the file, so the history is complete.
- Duplicates: for the same rater and the same pair (or single answer), the latest record
  wins; ratings of the same pair by different raters are all kept (they measure agreement).
- A crash mid-write can only cut the last line short. The loader warns about such a line
  and ignores it; the next `RatingsWriter` on the file moves it to `<rater>.jsonl.partial`
  so new records start on a fresh line. Every other problem raises `RatingsFileError`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from . import config

SCHEMA_VERSION = 1
# Where ratings go; RLHF_LAB_FEEDBACK moves the folder (the browser test of chapter 03 does, so
# that it never writes into a learner's data/feedback/).
FEEDBACK_DIR = Path(os.environ.get("RLHF_LAB_FEEDBACK") or config.DATA_DIR / "feedback")

PAIR_CHOICES = ("a", "b", "tie", "skip")
SINGLE_CHOICES = ("up", "down", "skip")
# A rater's name becomes a file name (and, in class, arrives from a browser): only this rule.
RATER_NAME_RULE = ("a rater name is 1 to 64 characters, each an ASCII letter, a digit, '-', "
                   "'_' or '.', the first a letter or a digit")
_RATER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Every field of every kind of record, with the type its value must have.
COMMON_FIELDS = {"schema": int, "id": str, "kind": str, "rater": str, "time": str}
KIND_FIELDS = {
    "pair": {"prompt": str, "answer_a": str, "answer_b": str, "choice": str, "model": str,
             "pair_id": str},
    "single": {"prompt": str, "answer": str, "choice": str, "model": str, "answer_id": str},
    "undo": {"undoes": str},
}
OPTIONAL_FIELDS = {"pair": {"model_b": str}, "single": {}, "undo": {}}
CHOICES = {"pair": PAIR_CHOICES, "single": SINGLE_CHOICES}


class RatingsFileError(ValueError):
    """A ratings file with a bad line; the message names the file, the line and the fix."""


# --- names, ids and records --------------------------------------------------------------

def check_rater_name(rater: str) -> str:
    """Return `rater` if it is a safe file name, else raise ValueError stating the rule."""
    if not isinstance(rater, str) or not _RATER_NAME.fullmatch(rater):
        raise ValueError(f"Bad rater name {rater!r}: {RATER_NAME_RULE} (no spaces, no '/').")
    return rater


def ratings_path(rater: str, folder: str | Path | None = None) -> Path:
    """The file of one rater: `<folder>/<rater>.jsonl` (folder: `FEEDBACK_DIR` by default)."""
    return Path(FEEDBACK_DIR if folder is None else folder) / f"{check_rater_name(rater)}.jsonl"


def _stable_hash(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:16]


def pair_id(prompt: str, answer_a: str, answer_b: str) -> str:
    """A stable id of a pair: the same for (a, b) and (b, a), on every machine."""
    first, second = sorted([answer_a, answer_b])
    return _stable_hash("pair", prompt, first, second)


def answer_id(prompt: str, answer: str) -> str:
    """A stable id of one answer to one prompt (the key of single-answer ratings)."""
    return _stable_hash("single", prompt, answer)


def item_key(record: dict) -> str:
    """What a rating is about: the pair_id of a pair, the answer_id of a single answer."""
    return record["pair_id"] if record["kind"] == "pair" else record["answer_id"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _header(kind: str, rater: str) -> dict:
    return {"schema": SCHEMA_VERSION, "id": uuid.uuid4().hex, "kind": kind,
            "rater": check_rater_name(rater), "time": _now()}


def pair_record(rater: str, prompt: str, answer_a: str, answer_b: str, choice: str,
                model: str, model_b: str | None = None) -> dict:
    """A new pairwise rating: which of two answers to `prompt` the rater prefers."""
    record = _header("pair", rater) | {
        "prompt": prompt, "answer_a": answer_a, "answer_b": answer_b, "choice": choice,
        "model": model, "pair_id": pair_id(prompt, answer_a, answer_b)}
    if model_b is not None and model_b != model:
        record["model_b"] = model_b
    return record


def single_record(rater: str, prompt: str, answer: str, choice: str, model: str) -> dict:
    """A new thumbs-up/down rating of one answer."""
    return _header("single", rater) | {
        "prompt": prompt, "answer": answer, "choice": choice, "model": model,
        "answer_id": answer_id(prompt, answer)}


def undo_record(rater: str, undoes: str) -> dict:
    """A new record that cancels the rating whose id is `undoes`."""
    return _header("undo", rater) | {"undoes": undoes}


def item_models(item: dict, model: str | None) -> tuple[str, str | None]:
    """The policy names of a pair or answer: its own "model"/"model_b" keys, else `model`."""
    name = item.get("model", model)
    if name is None:
        raise ValueError("Say which model wrote the answers: give the item a 'model' key "
                         "or pass model=...")
    return name, item.get("model_b")


def record_problem(record: object) -> str | None:
    """What is wrong with one record and how to fix it, or None if it is valid."""
    if not isinstance(record, dict):
        return f"expected a JSON object {{...}}, found {type(record).__name__}"
    schema = record.get("schema")
    if schema != SCHEMA_VERSION:
        newer = isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION
        hint = ("it was written by a newer rlhf_lab; update the package" if newer else
                f"this version of rlhf_lab reads schema {SCHEMA_VERSION} only")
        return f"schema version is {schema!r}, expected {SCHEMA_VERSION} ({hint})"
    kind = record.get("kind")
    if not isinstance(kind, str) or kind not in KIND_FIELDS:
        return f"kind is {kind!r}; it must be one of {sorted(KIND_FIELDS)}"
    required = COMMON_FIELDS | KIND_FIELDS[kind]
    allowed = required | OPTIONAL_FIELDS[kind]
    for name in required:
        if name not in record:
            return f"field {name!r} is missing (a {kind!r} record needs {sorted(required)})"
    for name, value in record.items():
        if name not in allowed:
            return f"unknown field {name!r} (a {kind!r} record has only {sorted(allowed)})"
        if type(value) is not allowed[name]:
            return (f"field {name!r} is {value!r}, a {type(value).__name__}; it must be a "
                    f"{allowed[name].__name__}")
    return _value_problem(record)


def _value_problem(record: dict) -> str | None:
    kind = record["kind"]
    if not re.fullmatch(r"[0-9a-f]{32}", record["id"]):
        return f"id {record['id']!r} is not 32 lower-case hex digits (a uuid4 hex)"
    if not _RATER_NAME.fullmatch(record["rater"]):
        return f"rater {record['rater']!r} is not valid: {RATER_NAME_RULE}"
    try:
        time = datetime.fromisoformat(record["time"])
    except ValueError:
        time = None
    if time is None or time.utcoffset() is None or time.utcoffset().total_seconds() != 0:
        return (f"time {record['time']!r} is not an ISO-8601 time in UTC, "
                "e.g. '2025-01-31T12:00:00.000000+00:00'")
    if kind in CHOICES and record["choice"] not in CHOICES[kind]:
        return f"choice is {record['choice']!r}; a {kind!r} record needs one of {CHOICES[kind]}"
    if kind == "pair":
        expected = pair_id(record["prompt"], record["answer_a"], record["answer_b"])
        if record["pair_id"] != expected:
            return (f"pair_id {record['pair_id']!r} does not match the prompt and answers; "
                    f"it must be {expected!r}")
    if kind == "single":
        expected = answer_id(record["prompt"], record["answer"])
        if record["answer_id"] != expected:
            return (f"answer_id {record['answer_id']!r} does not match the prompt and answer; "
                    f"it must be {expected!r}")
    return None


# --- writing -----------------------------------------------------------------------------

class RatingsWriter:
    """Appends one rater's records to `<folder>/<rater>.jsonl`, each flushed to disk at once.

    One line per record, written unbuffered and then `os.fsync`ed before `append` returns:
    once it returns, the click survives the kernel crashing, and the fsync makes it survive
    a power cut as well.
    Run one writer per rater file at a time (each rater rates in their own file).
    """

    def __init__(self, folder: str | Path | None, rater: str):
        self.rater = check_rater_name(rater)
        self.path = ratings_path(rater, folder)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _set_aside_partial_line(self.path)

    def append(self, record: dict) -> dict:
        """Validate `record`, write it as one line, flush and fsync; return the record."""
        problem = record_problem(record)
        if problem:
            raise ValueError(f"Not writing an invalid record to {self.path}: {problem}.")
        if record["rater"] != self.rater:
            raise ValueError(f"This writer writes {self.rater!r}'s file; the record is by "
                             f"{record['rater']!r}.")
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with open(self.path, "ab", buffering=0) as file:
            written = 0
            while written < len(line):
                written += file.write(line[written:])
            os.fsync(file.fileno())
        return record


def _set_aside_partial_line(path: Path) -> None:
    """If the file ends in a line cut short by a crash, move that line to `<path>.partial`.

    A cut line has no final newline and is not a valid record. A valid record that only
    lacks its newline (say, after a hand edit) is kept and given its newline instead.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    tail = data[start:]
    if _parse_line(tail) is not None:
        with open(path, "ab", buffering=0) as file:
            file.write(b"\n")
            os.fsync(file.fileno())
        return
    partial = path.with_name(path.name + ".partial")
    with open(partial, "ab", buffering=0) as file:
        file.write(tail + b"\n")
        os.fsync(file.fileno())
    with open(path, "r+b") as file:
        file.truncate(start)
        os.fsync(file.fileno())
    warnings.warn(f"{path}: the last line was cut short by a crash and never held a whole "
                  f"rating; it was moved to {partial}.", stacklevel=3)


def _parse_line(raw: bytes) -> dict | None:
    """The record on one line if it is valid, else None."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return record if record_problem(record) is None else None


# --- reading -----------------------------------------------------------------------------

def read_records(path: str | Path) -> list[dict]:
    """Every record of a ratings file, undo records included, in the order written.

    Raises RatingsFileError naming the file and the 1-based line of the first bad line.
    A last line cut short by a crash (no final newline, not a valid record) is the one
    exception: it is ignored with a warning.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    elif _parse_line(lines[-1]) is None:
        warnings.warn(f"{path}, line {len(lines)}: the last line has no newline and is not a "
                      "whole record (a crash while writing); it is ignored.", stacklevel=2)
        lines.pop()
    return [_record_on_line(path, number, raw) for number, raw in enumerate(lines, start=1)]


def _record_on_line(path: Path, number: int, raw: bytes) -> dict:
    where = f"{path}, line {number}"
    fix = "fix or delete this line (every line must be one rating record written by rlhf_lab)"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RatingsFileError(f"{where}: not UTF-8 text; {fix}.") from None
    except ValueError as error:
        raise RatingsFileError(f"{where}: not valid JSON ({error}); {fix}.") from None
    except RecursionError:
        raise RatingsFileError(f"{where}: JSON nested too deeply to be a rating; {fix}.") from None
    problem = record_problem(record)
    if problem:
        raise RatingsFileError(f"{where}: {problem}; {fix}.")
    return record


def load_ratings(path: str | Path) -> list[dict]:
    """The ratings in one rater's file that are still in force, in the order written.

    Validates every line (see `read_records`) and applies undo records: an undone rating
    is left out, and undo records themselves are not returned. An undo must name a rating
    written earlier in the same file, else RatingsFileError. Every record has its own id: a
    line that repeats an earlier one exactly (a copy pasted twice) is read once, and two
    different records with the same id are a RatingsFileError naming both lines.
    """
    path = Path(path)
    ratings: dict[str, dict] = {}
    seen: dict[str, tuple[int, dict]] = {}          # id -> (line, record) of every record
    for number, record in enumerate(read_records(path), start=1):
        if record["id"] in seen:
            first, earlier = seen[record["id"]]
            if record == earlier:
                continue
            raise RatingsFileError(
                f"{path}, line {number}: its id {record['id']!r} is also the id of the different "
                f"record on line {first}; every record needs its own id: delete the line that "
                "is wrong.")
        seen[record["id"]] = (number, record)
        if record["kind"] != "undo":
            ratings[record["id"]] = record
        elif record["undoes"] not in seen or seen[record["undoes"]][1]["kind"] == "undo":
            raise RatingsFileError(
                f"{path}, line {number}: undoes {record['undoes']!r}, which is not a rating "
                "on an earlier line of this file; delete this line.")
        else:
            ratings.pop(record["undoes"], None)
    return list(ratings.values())


def latest_per_item(records: Iterable[dict]) -> list[dict]:
    """The duplicate rule: for each rater and pair (or single answer), keep only the latest
    record (by time; at equal times, the one given later). Order of first appearance kept."""
    latest: dict[tuple[str, str, str], dict] = {}
    for record in records:
        key = (record["rater"], record["kind"], item_key(record))
        if key not in latest or record_time(record) >= record_time(latest[key]):
            latest[key] = record
    return list(latest.values())


def record_time(record: dict) -> datetime:
    """When a record was made (its `time`, ISO 8601 with time zone)."""
    return datetime.fromisoformat(record["time"])


FRAME_COLUMNS = ["rater", "kind", "prompt", "answer_a", "answer_b", "answer", "choice",
                 "model", "model_b", "pair_id", "answer_id", "time", "id"]


def ratings_frame(source: str | Path | Iterable[str | Path]):
    """All ratings from a folder of `<rater>.jsonl` files (or a list of files) as a DataFrame.

    Undos are applied per file. The duplicate rule: for the same rater and the same pair_id
    (or answer_id), the latest record wins; different raters' ratings of the same pair are
    all kept, since they are agreement data. Skips are kept, with choice "skip".
    Columns: FRAME_COLUMNS (NaN where a kind has no such field); `time` is a UTC datetime.
    """
    import pandas as pd

    records = [r for path in _ratings_files(source) for r in load_ratings(path)]
    frame = pd.DataFrame(latest_per_item(records), columns=FRAME_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def _ratings_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_dir():
            return sorted(source.glob("*.jsonl"))
        return [source]
    return [Path(p) for p in source]
