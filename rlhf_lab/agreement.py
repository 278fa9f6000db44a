"""Agreement between raters: how often two raters make the same choice, beyond chance.

Taught in notebooks/03_human_feedback.ipynb (and used again in chapter 09, where a whole
class rates the same pairs).

- percent agreement p_o: the share of items on which two raters chose the same label.
- Cohen's kappa corrects it for chance: p_e = sum over labels k of p_A(k) * p_B(k), the
  agreement expected if both chose at random with their own label frequencies, and
  kappa = (p_o - p_e) / (1 - p_e): 1 is perfect agreement, 0 is chance, < 0 worse.
- Fleiss' kappa does the same for many raters who each rated every item.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence

PAIR_LABELS = ("a", "b", "tie")


def _check_same_items(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"Both raters must label the same items: got {len(a)} and {len(b)} "
                         "labels.")
    if len(a) == 0:
        raise ValueError("Agreement needs at least one item rated by both raters.")


def percent_agreement(a: Sequence, b: Sequence) -> float:
    """p_o: the share of items (a[i], b[i]) on which the two raters chose the same label."""
    _check_same_items(a, b)
    return sum(x == y for x, y in zip(a, b)) / len(a)


def cohens_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two raters' labels over the same items, (p_o - p_e) / (1 - p_e).

    NaN when p_e is 1 (both raters gave one and the same label to every item): then
    agreement beyond chance is not defined.
    """
    _check_same_items(a, b)
    n = len(a)
    count_a, count_b = Counter(a), Counter(b)
    p_o = percent_agreement(a, b)
    p_e = sum(count_a[k] * count_b[k] for k in count_a) / n**2
    if p_e == 1:
        return math.nan
    return (p_o - p_e) / (1 - p_e)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from a table: one row per item, one column per label, each cell the
    number of raters who gave that label; every row sums to the same number of raters n.

    P_i = (sum_j n_ij^2 - n) / (n (n - 1)) is the agreement on item i, P = mean of P_i;
    p_j = share of all labels that are j, P_e = sum_j p_j^2; kappa = (P - P_e) / (1 - P_e).
    NaN when P_e is 1 (every rater gave every item the same label).
    """
    rows = [list(row) for row in counts]
    if not rows:
        raise ValueError("Fleiss' kappa needs at least one item.")
    n = sum(rows[0])
    if n < 2 or any(sum(row) != n for row in rows):
        raise ValueError("Every item (row) must have the same number of raters, at least 2; "
                         f"row sums are {[sum(row) for row in rows]}.")
    agreement = sum((sum(c * c for c in row) - n) / (n * (n - 1)) for row in rows) / len(rows)
    shares = [sum(column) / (n * len(rows)) for column in zip(*rows)]
    p_e = sum(p * p for p in shares)
    if p_e == 1:
        return math.nan
    return (agreement - p_e) / (1 - p_e)


def oriented_choice(answer_a: str, answer_b: str, choice: str) -> str:
    """The choice as if the two answers had been shown in sorted order.

    Two raters may see the same pair as (x, y) and as (y, x); "a" for one is "b" for the
    other. Agreement compares choices in one fixed order, the order of `feedback.pair_id`.
    """
    if answer_a <= answer_b or choice == "tie":
        return choice
    return {"a": "b", "b": "a"}[choice]


def agreement_table(frame):
    """For every two raters, on the pairs both rated: n, percent agreement and Cohen's kappa.

    `frame` is `feedback.ratings_frame(...)`. Only pairwise ratings with choice a, b or tie
    count (skips and thumbs are left out); if a rater rated a pair twice, the latest counts.
    Returns a DataFrame with columns rater_1, rater_2, n, agreement, kappa (NaN when n is 0).
    """
    import pandas as pd

    pairs = frame[(frame["kind"] == "pair") & frame["choice"].isin(PAIR_LABELS)]
    pairs = pairs.sort_values("time", kind="stable").drop_duplicates(
        ["rater", "pair_id"], keep="last")
    labels = {
        rater: {row.pair_id: oriented_choice(row.answer_a, row.answer_b, row.choice)
                for row in group.itertuples()}
        for rater, group in pairs.groupby("rater")}
    rows = []
    for first, second in itertools.combinations(sorted(labels), 2):
        shared = sorted(labels[first].keys() & labels[second].keys())
        a = [labels[first][p] for p in shared]
        b = [labels[second][p] for p in shared]
        rows.append({"rater_1": first, "rater_2": second, "n": len(shared),
                     "agreement": percent_agreement(a, b) if shared else math.nan,
                     "kappa": cohens_kappa(a, b) if shared else math.nan})
    return pd.DataFrame(rows, columns=["rater_1", "rater_2", "n", "agreement", "kappa"])
