"""Class mode: a folder of many raters' files, validated, merged and measured.

Taught in notebooks/09_iterate.ipynb (class mode). The class server (`make rate`,
`rlhf_lab/class_server.py`) appends each student's clicks to `<folder>/<name>.jsonl` in chapter
03's schema (`feedback`). This module reads that folder as it is and never changes a file:

- `load_class_folder`: every `*.jsonl` is checked; a broken file is refused and reported,
  the others are merged (one student's broken file must not stop a class of thirty).
- `consensus`: what the class as a whole prefers on every pair.
- `class_fleiss_kappa`: how much the class agrees beyond chance.
- `leave_one_out` and `rater_bias`: each rater against the majority of the *other* raters:
  agreement, position bias, ties and length bias.
- `simulate_class` and `class_of`: a simulated class, for self-study and tests.

Two raters may see the same pair as (x, y) and (y, x). Everything that compares raters uses
`oriented_choice`, the choice as if the answers had been shown in sorted order (the order
of `feedback.pair_id`, see `agreement.oriented_choice`); `choice` is what the rater clicked
on the screen, which is what position bias is about.
"""
from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import agreement, feedback
from .config import CLASS_RATINGS
from .gold import words
from .raters import SimulatedRater

LABELS = agreement.PAIR_LABELS          # ("a", "b", "tie"): the choices that are ratings
FRAME_COLUMNS = ["rater", "kind", "prompt", "answer_a", "answer_b", "choice", "oriented_choice",
                 "model", "model_b", "pair_id", "time", "id"]
FILE_COLUMNS = ["file", "rater", "ratings", "status", "problem"]


class ClassFolderError(ValueError):
    """A class folder with no usable ratings; the message names the folder and what to do."""


@dataclass
class ClassRatings:
    """What `load_class_folder` found.

    frame: the merged pairwise ratings (a, b or tie; skips left out), one row per rater and
           pair (the latest rating wins), columns FRAME_COLUMNS.
    files: one row per file: file, rater, ratings (how many rows of `frame` came from it),
           status ("ok" or "refused") and problem ("" when there is none).
    """

    folder: Path
    frame: pd.DataFrame
    files: pd.DataFrame

    @property
    def problems(self) -> list[str]:
        """One line per file with a problem: refused files, and notes on files that were used."""
        return [f"{self.folder / row.file} ({row.status}): {row.problem}"
                for row in self.files.itertuples() if row.problem]


# --- reading a class folder ------------------------------------------------------------------

def check_rater_file(path: str | Path) -> tuple[list[dict] | None, str]:
    """The ratings in force in one rater's file, and a note ("" if none); None if refused.

    Refused, with the reason: a file name that is not a rater name (`feedback.check_rater_name`),
    a bad line (`feedback.load_ratings` names the line), a record by another rater than the
    one the file is named after, or a file that cannot be read. A last line cut short by a
    crash is left out with a note, as `feedback.load_ratings` does; the file is still used.
    """
    path = Path(path)
    rater = path.stem
    try:
        feedback.check_rater_name(rater)
    except ValueError:
        return None, (f"{rater!r} is not a rater name ({feedback.RATER_NAME_RULE}); rename "
                      "the file to <rater>.jsonl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raters = {record["rater"] for record in feedback.read_records(path)}
            ratings = feedback.load_ratings(path)
        except feedback.RatingsFileError as error:
            return None, _without_path(str(error), path)
        except OSError as error:
            return None, f"cannot be read ({error.strerror or error}); check its permissions"
    others = sorted(raters - {rater})
    if others:
        return None, (f"holds records by {others}, but a rater's file holds only that "
                      "rater's own ratings; move those lines to <rater>.jsonl files of "
                      "their own or delete them")
    notes = dict.fromkeys(_without_path(str(w.message), path) for w in caught)
    return ratings, "; ".join(notes)


def _without_path(message: str, path: Path) -> str:
    """A message about `path` without its leading path: the files table names the file."""
    return message.removeprefix(f"{path}, ").removeprefix(f"{path}: ")


def load_class_folder(folder: str | Path) -> ClassRatings:
    """Check every `<rater>.jsonl` directly in `folder`, refuse the broken ones (see
    `check_rater_file`), merge the rest. Never modifies a file.

    The merged frame holds pairwise ratings with choice a, b or tie (skips and thumbs are
    left out) after undos and the duplicate rule of `feedback.latest_per_item` (for the
    same rater and pair the latest rating wins), plus `oriented_choice`.
    Raises FileNotFoundError if the folder does not exist, ClassFolderError if it holds no
    usable ratings.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The class folder {folder} does not exist (or is not a folder). Point at the "
            f"folder the class app writes to ({CLASS_RATINGS} unless `make rate` was given "
            "CLASS=...).")
    rows, records = [], []
    for path in sorted(p for p in folder.glob("*.jsonl") if p.is_file()):
        ratings, problem = check_rater_file(path)
        rows.append({"file": path.name, "rater": path.stem, "ratings": 0,
                     "status": "refused" if ratings is None else "ok", "problem": problem})
        records += ratings or []
    files = pd.DataFrame(rows, columns=FILE_COLUMNS)
    frame = pairwise_frame(records)
    files["ratings"] = files["rater"].map(frame["rater"].value_counts()).fillna(0).astype(int)
    result = ClassRatings(folder, frame, files)
    if frame.empty:
        raise ClassFolderError(_nothing_to_use(result))
    return result


def _nothing_to_use(result: ClassRatings) -> str:
    todo = ("Run `make rate` and have students rate, or point at the folder the class app "
            f"writes to ({CLASS_RATINGS} unless `make rate` was given CLASS=...).")
    if result.files.empty:
        return f"The class folder {result.folder} holds no ratings files (*.jsonl). {todo}"
    if (result.files["status"] == "refused").all():
        return (f"Every ratings file in {result.folder} was refused:\n  "
                + "\n  ".join(result.problems) + f"\nFix or remove those files. {todo}")
    return (f"The ratings files in {result.folder} hold no pairwise ratings yet (a, b or tie; "
            f"skips do not count). {todo}")


def pairwise_frame(records: Iterable[dict]) -> pd.DataFrame:
    """Pair ratings with choice a, b or tie, the latest per rater and pair, as FRAME_COLUMNS."""
    rows = [record | {"oriented_choice": agreement.oriented_choice(
                record["answer_a"], record["answer_b"], record["choice"])}
            for record in feedback.latest_per_item(records)
            if record["kind"] == "pair" and record["choice"] in LABELS]
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def _check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in ("rater", "pair_id", "answer_a", "answer_b", "choice",
                           "oriented_choice") if c not in frame.columns]
    if missing:
        raise ValueError(f"The frame lacks the columns {missing}: pass "
                         "load_class_folder(folder).frame.")
    if frame.duplicated(["rater", "pair_id"]).any():
        raise ValueError("The frame holds two ratings of one pair by the same rater: pass "
                         "load_class_folder(folder).frame, which keeps the latest.")


# --- what the class prefers ------------------------------------------------------------------

def majority_label(n_a: int, n_b: int, n_tie: int) -> str:
    """The label most raters gave. A draw between the top labels is "tie": the raters do not
    agree which answer is better, which is what a tie says (and a reward model learns 0.5)."""
    counts = {"a": n_a, "b": n_b, "tie": n_tie}
    top = max(counts.values())
    winners = [label for label, n in counts.items() if n == top]
    return winners[0] if len(winners) == 1 else "tie"


def consensus(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: what the class prefers.

    Columns: pair_id, prompt, answer_a and answer_b in canonical (sorted) order, which may
    differ from the order some raters saw; n_raters; n_a, n_b, n_tie, the counts of each
    `oriented_choice`; majority, the most frequent label (a draw between the top labels
    counts as "tie", see `majority_label`); majority_share, the share of the pair's raters
    who gave the majority label (after a draw of a and b with no tie votes it is 0).
    """
    _check_frame(frame)
    rows = []
    for pair_id, group in frame.groupby("pair_id", sort=True):
        answer_a, answer_b = sorted([group["answer_a"].iloc[0], group["answer_b"].iloc[0]])
        counts = group["oriented_choice"].value_counts()
        n = {label: int(counts.get(label, 0)) for label in LABELS}
        majority = majority_label(n["a"], n["b"], n["tie"])
        rows.append({"pair_id": pair_id, "prompt": group["prompt"].iloc[0],
                     "answer_a": answer_a, "answer_b": answer_b, "n_raters": len(group),
                     "n_a": n["a"], "n_b": n["b"], "n_tie": n["tie"], "majority": majority,
                     "majority_share": n[majority] / len(group)})
    return pd.DataFrame(rows, columns=["pair_id", "prompt", "answer_a", "answer_b", "n_raters",
                                       "n_a", "n_b", "n_tie", "majority", "majority_share"])


def round_ratings(frame: pd.DataFrame, pairs: Iterable[dict]) -> pd.DataFrame:
    """The rows of `frame` that rate one of `pairs` (matched by `feedback.pair_id`).

    A class folder set for several rounds of chapter 09 holds every round's ratings; each
    round keeps only the ratings of its own pairs, so no rating is ever counted twice."""
    wanted = {feedback.pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs}
    return frame[frame["pair_id"].isin(wanted)].reset_index(drop=True)


# A simulated rater without noise or bias chooses exactly as the gold scorer does.
GOLD_RATER = SimulatedRater("gold", temperature=0.0)


def gold_choice(prompt: str, answer_a: str, answer_b: str) -> str:
    """The gold scorer's own choice between two answers, in the order they were shown: the
    higher gold total wins; totals within the rater's tie margin (0.05) are a tie, as in
    chapter 03. It is `GOLD_RATER`'s choice: a simulated rater at temperature 0."""
    return GOLD_RATER.choose_pair(prompt, answer_a, answer_b)


def agreement_with_gold(frame: pd.DataFrame) -> pd.DataFrame:
    """How good the raters were: for every rater, and for the class's consensus, the share
    of pairs on which the choice equals the gold scorer's (`gold_choice`), and Cohen's
    kappa with it. Columns: rater, ratings, agreement, kappa; the consensus row is named
    "class consensus" (its majority label against gold, per pair)."""
    _check_frame(frame)
    gold = {row.pair_id: agreement.oriented_choice(
        row.answer_a, row.answer_b, gold_choice(row.prompt, row.answer_a, row.answer_b))
        for row in frame.drop_duplicates("pair_id").itertuples()}

    def row(name: str, pair_ids, labels) -> dict:
        truth = [gold[p] for p in pair_ids]
        labels = list(labels)
        return {"rater": name, "ratings": len(labels),
                "agreement": agreement.percent_agreement(labels, truth),
                "kappa": agreement.cohens_kappa(labels, truth)}

    rows = [row(name, group["pair_id"], group["oriented_choice"])
            for name, group in frame.groupby("rater", sort=True)]
    agreed = consensus(frame)
    rows.append(row("class consensus", agreed["pair_id"], agreed["majority"]))
    return pd.DataFrame(rows, columns=["rater", "ratings", "agreement", "kappa"])


def class_fleiss_kappa(frame: pd.DataFrame, seed: int = 0) -> tuple[float, int, int]:
    """Fleiss' kappa of the class: (kappa, items, raters_per_item).

    `agreement.fleiss_kappa` needs the same number k of raters on every item, but in class
    some pairs get more ratings than others. So: choose k >= 2 that maximises k x (number
    of pairs rated by at least k raters), the number of ratings used (on a draw, the
    smaller k, which keeps more pairs); keep those pairs, and of each a random k of its
    ratings (seeded: the same seed, the same answer). Labels are `oriented_choice`.
    kappa is NaN when every kept rating is the same label (see `agreement.fleiss_kappa`).
    """
    _check_frame(frame)
    labels = frame.groupby("pair_id", sort=True)["oriented_choice"].agg(sorted)
    sizes = labels.map(len)
    if sizes.max() < 2:
        raise ValueError("Fleiss' kappa needs pairs rated by at least two raters; every pair "
                         "has one rating. Have more students rate the same pairs.")
    k = max(range(2, sizes.max() + 1), key=lambda size: size * int((sizes >= size).sum()))
    rng = random.Random(seed)
    table = []
    for pair_labels in labels[sizes >= k]:
        kept = rng.sample(pair_labels, k)
        table.append([kept.count(label) for label in LABELS])
    return agreement.fleiss_kappa(table), len(table), k


# --- each rater against the others ---------------------------------------------------------

def leave_one_out(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus, on every rating, what the OTHER raters of the same pair prefer.

    n_others: how many other raters rated the pair; others_oriented: their majority label
    (`majority_label`) in canonical order, comparable with `oriented_choice`; others_choice:
    the same as the rater saw the pair, comparable with `choice`. Both are NaN where
    nobody else rated the pair. The rater's own rating never counts: comparing a rater with
    a majority that includes them would flatter everyone, most of all on small pairs.
    """
    _check_frame(frame)
    counts = consensus(frame).set_index("pair_id")[["n_a", "n_b", "n_tie"]]
    out = frame.copy()
    n_others, oriented, shown = [], [], []
    for row in frame.itertuples():
        n = counts.loc[row.pair_id].to_dict()
        n[f"n_{row.oriented_choice}"] -= 1
        others = sum(n.values())
        label = majority_label(**n) if others else None
        n_others.append(others)
        oriented.append(label)
        # oriented_choice turns canonical order back into the rater's (it is its own inverse)
        shown.append(None if label is None else
                     agreement.oriented_choice(row.answer_a, row.answer_b, label))
    out["n_others"], out["others_oriented"], out["others_choice"] = n_others, oriented, shown
    return out


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if len(flags) else math.nan


def rater_bias(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per rater, measured against the leave-one-out consensus (`leave_one_out`).

    How to read each column:
    - ratings: how many pairs the rater rated.
    - compared: of those, how many someone else rated too; agreement, kappa, position_bias
      and length_bias use only these.
    - agreement: share of compared pairs where the rater chose what the other raters' majority
      chose. Low: a hasty or careless rater, or one who reads the rubric differently.
    - kappa: Cohen's kappa between the rater and that majority (0: chance, 1: always agrees).
    - share_a: share of the rater's A-or-B choices that were A as shown on screen. About 0.5
      for an unbiased rater when the better answer is on either side at random (as in pairs
      from `pairs.make_pairs`); well above: prefers the left answer, below: the right one.
    - tie_share: share of the rater's ratings that were ties. High: unsure, or avoids choosing.
    - position_bias: share_a minus the share of the same pairs where the other raters'
      majority picked the side this rater saw as A; pairs where either said tie are left
      out. Unlike share_a it does not depend on which side the better answers were shown.
      About 0 for an unbiased rater.
    - length_bias: on pairs whose answers differ in length (words) and where neither the rater
      nor the others' majority said tie: the share where the rater picked the longer answer
      minus the share where the majority did. > 0: the rater favours long answers.
    NaN where a column has no pair to measure on.
    """
    measured = leave_one_out(frame)
    measured["longer"] = [_longer_side(a, b) for a, b in zip(measured["answer_a"],
                                                              measured["answer_b"])]
    rows = []
    for rater, ratings in measured.groupby("rater", sort=True):
        compared = ratings[ratings["n_others"] > 0]
        mine, theirs = compared["oriented_choice"].tolist(), compared["others_oriented"].tolist()
        picked = ratings[ratings["choice"] != "tie"]
        decided = compared[(compared["choice"] != "tie") & (compared["others_choice"] != "tie")]
        by_length = decided[decided["longer"].notna()]
        rows.append({
            "rater": rater, "ratings": len(ratings), "compared": len(compared),
            "agreement": agreement.percent_agreement(mine, theirs) if mine else math.nan,
            "kappa": agreement.cohens_kappa(mine, theirs) if mine else math.nan,
            "share_a": _share(picked["choice"] == "a"),
            "tie_share": _share(ratings["choice"] == "tie"),
            "position_bias": (_share(decided["choice"] == "a")
                              - _share(decided["others_choice"] == "a")),
            "length_bias": (_share(by_length["choice"] == by_length["longer"])
                            - _share(by_length["others_choice"] == by_length["longer"]))})
    return pd.DataFrame(rows, columns=["rater", "ratings", "compared", "agreement", "kappa",
                                       "share_a", "tie_share", "position_bias", "length_bias"])


def _longer_side(answer_a: str, answer_b: str) -> str | None:
    """"a" or "b", the side with more words; None when both have as many."""
    length_a, length_b = len(words(answer_a)), len(words(answer_b))
    return None if length_a == length_b else "a" if length_a > length_b else "b"
