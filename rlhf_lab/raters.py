"""Simulated raters: the gold scorer plus Bradley-Terry noise and optional biases.

Taught in notebooks/03_human_feedback.ipynb. A simulated rater lets the course run with no
clicks at all, and makes rater noise and bias something to measure rather than imagine.

A rater perceives the score of an answer as its gold total plus a length bias:

    perceived(x) = gold_score(question, x).total + length_bias * words(x)

For a pair it computes d = perceived(a) - perceived(b) + position_bias (a pull towards
whichever answer is shown as A), then
- tie rule: if |d| < tie_margin it says "tie" (no coin is flipped);
- otherwise it says "a" with the Bradley-Terry probability sigmoid(d / temperature), else "b".
For one answer it says "up" with probability sigmoid((perceived(x) - thumbs_threshold) /
temperature), else "down". Temperature 0 means no noise: always the better side.

A simulated class (`class_of`, `simulate_class`, for chapter 09) is a mix of such raters with
the habits of real students, writing one ratings file each, as the class app does.
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import feedback
from .gold import gold_score, words
from .world import World

_WORLD = World()


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), computed without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def noisy_probability(difference: float, temperature: float) -> float:
    """sigmoid(difference / temperature); at temperature 0: 1, 0, or 0.5 when difference is 0."""
    if temperature == 0:
        return 1.0 if difference > 0 else 0.0 if difference < 0 else 0.5
    return sigmoid(difference / temperature)


def _check_number(name: str, value: float, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}.")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, not {value!r}.")
    return float(value)


class SimulatedRater:
    """A scripted rater that follows the rubric (the gold scorer) with noise and bias.

    temperature  >= 0: how noisy the choices are (0: always the gold choice).
    length_bias  any number: score added per word (> 0 prefers long answers, < 0 short ones).
    tie_margin   >= 0: a pair whose perceived scores differ by less is a tie.
    thumbs_threshold: a single answer perceived at or above it gets "up" (at temperature 0).
    seed         fixes the coin flips, so the same rater rates the same way twice.
    position_bias any number: added to the difference in favour of the answer shown as A
                 (> 0 prefers whatever is on the left, < 0 whatever is on the right).
    """

    def __init__(self, name: str, temperature: float = 0.5, length_bias: float = 0.0,
                 tie_margin: float = 0.05, thumbs_threshold: float = 3.75, seed: int = 0,
                 position_bias: float = 0.0):
        self.name = feedback.check_rater_name(name)
        self.temperature = _check_number("temperature", temperature, low=0.0)
        self.length_bias = _check_number("length_bias", length_bias)
        self.tie_margin = _check_number("tie_margin", tie_margin, low=0.0)
        self.thumbs_threshold = _check_number("thumbs_threshold", thumbs_threshold)
        self.position_bias = _check_number("position_bias", position_bias)
        self.rng = random.Random(seed)

    def __repr__(self) -> str:
        return (f"SimulatedRater({self.name!r}, temperature={self.temperature}, "
                f"length_bias={self.length_bias}, tie_margin={self.tie_margin}, "
                f"position_bias={self.position_bias})")

    def perceived_score(self, prompt: str, answer: str) -> float:
        """Gold total of the answer plus length_bias per word: what this rater sees."""
        question = _WORLD.lookup(prompt)
        return gold_score(question, answer).total + self.length_bias * len(words(answer))

    def difference(self, prompt: str, answer_a: str, answer_b: str) -> float:
        """perceived(a) - perceived(b) + position_bias: > 0 means this rater leans towards A."""
        return (self.perceived_score(prompt, answer_a) - self.perceived_score(prompt, answer_b)
                + self.position_bias)

    def is_tie(self, prompt: str, answer_a: str, answer_b: str) -> bool:
        """The tie rule: |difference| < tie_margin (position bias included)."""
        return abs(self.difference(prompt, answer_a, answer_b)) < self.tie_margin

    def prob_a_preferred(self, prompt: str, answer_a: str, answer_b: str) -> float:
        """Bradley-Terry probability of choosing A on a pair that is not a tie."""
        return noisy_probability(self.difference(prompt, answer_a, answer_b), self.temperature)

    def prob_up(self, prompt: str, answer: str) -> float:
        """Probability of a thumbs up for one answer."""
        margin = self.perceived_score(prompt, answer) - self.thumbs_threshold
        if self.temperature == 0 and margin == 0:
            return 1.0   # "up when perceived >= threshold"
        return noisy_probability(margin, self.temperature)

    def choose_pair(self, prompt: str, answer_a: str, answer_b: str) -> str:
        """'a', 'b' or 'tie' for one pair (a tie flips no coin)."""
        if self.is_tie(prompt, answer_a, answer_b):
            return "tie"
        return "a" if self.rng.random() < self.prob_a_preferred(prompt, answer_a, answer_b) else "b"

    def choose_single(self, prompt: str, answer: str) -> str:
        """'up' or 'down' for one answer."""
        return "up" if self.rng.random() < self.prob_up(prompt, answer) else "down"

    def rate_pair(self, pair: dict, model: str | None = None) -> dict:
        """A pair record by this rater, ready for `feedback.RatingsWriter.append`."""
        prompt, answer_a, answer_b = pair["prompt"], pair["answer_a"], pair["answer_b"]
        choice = self.choose_pair(prompt, answer_a, answer_b)
        return feedback.pair_record(self.name, prompt, answer_a, answer_b, choice,
                                    *feedback.item_models(pair, model))

    def rate_single(self, item: dict, model: str | None = None) -> dict:
        """A single-answer record by this rater for item {prompt, answer}."""
        choice = self.choose_single(item["prompt"], item["answer"])
        return feedback.single_record(self.name, item["prompt"], item["answer"], choice,
                                      feedback.item_models(item, model)[0])


def fill_ratings(pairs: Iterable[dict], human_records: Iterable[dict], needed: int,
                 rater: SimulatedRater, model: str | None = None):
    """Pairwise ratings for training: the learner's own first, the simulated rater fills up.

    Every human pair rating with choice a/b/tie is used (skips are not ratings; the
    duplicate rule of `feedback.latest_per_item` applies). If there are fewer than `needed`,
    `rater` rates pairs from `pairs` that no human rated, in order, until there are `needed`.
    Raises ValueError if `pairs` has too few unrated pairs.

    Returns (records, report): the records, humans' first, and a DataFrame with one row per
    rater (source "human" or "simulated", number of ratings) and a total row.
    """
    import pandas as pd

    if isinstance(needed, bool) or not isinstance(needed, int) or needed < 0:
        raise ValueError(f"needed must be a whole number >= 0, not {needed!r}.")
    human = [r for r in feedback.latest_per_item(human_records)
             if r["kind"] == "pair" and r["choice"] in ("a", "b", "tie")]
    rated = {r["pair_id"] for r in human}
    todo = []
    for pair in pairs:
        key = feedback.pair_id(pair["prompt"], pair["answer_a"], pair["answer_b"])
        if len(human) + len(todo) < needed and key not in rated:
            rated.add(key)
            todo.append(pair)
    missing = needed - len(human) - len(todo)
    if missing > 0:
        raise ValueError(f"{needed} ratings needed, {len(human)} from people and only "
                         f"{len(todo)} unrated pairs left: make {missing} more pairs.")
    simulated = [rater.rate_pair(pair, model) for pair in todo]
    rows = [{"rater": name, "source": "human", "ratings": count}
            for name, count in Counter(r["rater"] for r in human).items()]
    rows.append({"rater": rater.name, "source": "simulated", "ratings": len(simulated)})
    rows.append({"rater": "total", "source": "", "ratings": len(human) + len(simulated)})
    return human + simulated, pd.DataFrame(rows)


# --- a simulated class ----------------------------------------------------------------------

# What kinds of student a simulated class holds (keyword arguments of SimulatedRater).
CLASS_PROFILES = {
    "careful": {"temperature": 0.2},
    "typical": {"temperature": 0.5},
    "hasty": {"temperature": 2.0},
    "unsure": {"temperature": 0.5, "tie_margin": 1.0},
    "likes-long": {"temperature": 0.5, "length_bias": 0.15},
    "likes-a": {"temperature": 0.5, "position_bias": 1.25},
}
# The order in which `class_of` hands out profiles: any ten raters hold every kind.
CLASS_MIX = ("typical", "careful", "hasty", "likes-long", "likes-a", "typical", "unsure",
             "careful", "typical", "hasty")


def class_of(n: int, seed: int = 0) -> list[SimulatedRater]:
    """`n` simulated students, profiles in the order of CLASS_MIX, each named for its profile
    and number (e.g. "likes-a-05", so a notebook can check what `rater_bias` finds) and
    seeded from `seed` and its number."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, not {n!r}.")
    return [SimulatedRater(f"{profile}-{i:02d}", seed=seed * 1000 + i, **CLASS_PROFILES[profile])
            for i, profile in zip(range(1, n + 1), itertools.cycle(CLASS_MIX))]


def simulate_class(folder: str | Path, pairs: Iterable[dict], raters: Sequence[SimulatedRater],
                   per_rater: int, seed: int = 0, model: str = "unknown") -> list[Path]:
    """Write one `<rater>.jsonl` per simulated rater into `folder`, as the class app would.

    Each rater gets the pairs (each pair once, by `feedback.pair_id`) in an order of its own,
    seeded by `seed` and its name, and rates the first `per_rater` of them, each answer on
    the side the pairs give it, as the app shows it. (The app shows every student the pairs
    file's order; an order of one's own spreads a simulated class unevenly over the pairs,
    as students who skip and stop at different points do, which `class_fleiss_kappa` and
    `rater_bias` must handle.)
    Records are appended with `feedback.RatingsWriter`, "model" from each pair, else
    `model` ("unknown", as the app does). Refuses to add to an existing file.
    Returns the files written.
    """
    unique: dict[str, dict] = {}
    for pair in pairs:
        unique.setdefault(feedback.pair_id(pair["prompt"], pair["answer_a"], pair["answer_b"]),
                          pair)
    if isinstance(per_rater, bool) or not isinstance(per_rater, int) or not (
            1 <= per_rater <= len(unique)):
        raise ValueError(f"per_rater must be a whole number from 1 to the number of different "
                         f"pairs, {len(unique)}; not {per_rater!r}.")
    names = [rater.name for rater in raters]
    if len(set(names)) != len(names):
        raise ValueError(f"Two simulated raters share a name: {sorted(names)}; names must differ.")
    existing = [str(p) for p in (feedback.ratings_path(n, folder) for n in names) if p.exists()]
    if existing:
        raise FileExistsError(f"{existing} exist: simulate a class into an empty folder "
                              "(e.g. tempfile.mkdtemp()), never into a real class's folder.")
    written = []
    for rater in raters:
        order = random.Random(f"{seed}:{rater.name}").sample(list(unique.values()), len(unique))
        writer = feedback.RatingsWriter(folder, rater.name)
        for pair in order[:per_rater]:
            writer.append(rater.rate_pair(pair, model))
        written.append(writer.path)
    return written
