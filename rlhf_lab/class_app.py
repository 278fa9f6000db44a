"""The class round's data: the pairs a whole class rates, and the names students rate under.
The class server (`class_server.py`, `make rate`) serves them; chapter 09 pools the ratings.

The instructor's flow (README, "For instructors"):

1. `make class-pairs` (`python -m rlhf_lab.class_server make-pairs`) writes the pairs file
   from the current policy, beforehand (`write_pairs_file`), so rating needs no model.
2. `make rate` checks the pairs file (`read_pairs_file`: a clear error now, never a broken
   page later), prints the address with the class token and serves the class.
3. A student opens the address, types a name and rates. Every click is appended and
   fsynced to `<class folder>/<name>.jsonl` in chapter 03's schema (`feedback`), so
   chapter 09 reads the folder as it is (`feedback.ratings_frame(folder)`).

A name becomes a file name only through `feedback.check_rater_name`. The first student to use
a name is shown a resume code (`claim_name`), needed to rate under that name again (after
reloading the page, say), so nobody can add to another student's file.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from pathlib import Path

from . import feedback

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
