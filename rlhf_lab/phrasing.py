"""Phrasing: does the model know a fact, or only one way of asking it?

Taught in notebooks/13_feedback_limits.ipynb. In the world a *fact* is a question's
(kind, subject), e.g. ("colour", "cat") or ("plus", "3 plus 4"), and each fact is asked in
several phrasings (`Question.template`, e.g. "colour/0", "colour/1"). `World()` holds some
(fact, phrasing) pairs out of training (`Question.heldout`), so many facts were seen in
training in some phrasings and never in others. A model that knows the fact answers every
phrasing alike; a model that learned one way of asking does well on the phrasings it saw
(`seen`) and worse on the others.

This module asks every phrasing of such facts with the course's evaluation (k answers per
question, answer j sampled at temperature 1 with seed `evaluation.SEEDS[j]`, graded by the
gold rubric), then measures, paired over facts: the gap between seen and unseen phrasings
(`seen_unseen_gap`), the spread of a fact's gold across its phrasings (`phrasing_summary`),
and whether a later stage (PPO after SFT, say) narrows or widens that spread
(`spread_change`). The statistics need only pandas; torch is imported where a model is used.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .evaluation import MAX_NEW_TOKENS, SEEDS, answer_row, mean_ci, sample_answers
from .world import Question, World

# The columns a phrasing table needs for the statistics (`answer_phrasings` adds them).
TABLE_COLUMNS = ("fact", "template", "seen", "sample", "total")
SAME_FACT_COLUMNS = ("question", "template", "seen", "sample", "answer", "total")


def fact_name(question: Question) -> str:
    """The fact a question asks about, as the tables write it: "kind: subject"."""
    return f"{question.kind}: {question.subject}"


def _fact_label(fact: tuple[str, str] | str) -> str:
    """A fact given as (kind, subject) or already as "kind: subject", as a table writes it."""
    if isinstance(fact, str):
        return fact
    kind, subject = fact
    return f"{kind}: {subject}"


def _answerable_by_fact(world: World) -> dict[tuple[str, str], list[Question]]:
    """Every answerable question of the world, grouped by fact, in the world's order."""
    by_fact: dict[tuple[str, str], list[Question]] = {}
    for q in world.questions:
        if q.answerable:
            by_fact.setdefault((q.kind, q.subject), []).append(q)
    return by_fact


def facts_with_both(world: World | None = None, kinds: Iterable[str] | None = None,
                    min_phrasings: int = 2) -> list[tuple[str, str]]:
    """The facts (kind, subject) asked in at least one held-out phrasing and at least one
    training phrasing, and in at least `min_phrasings` phrasings in all; sorted, the same on
    every machine. Only answerable kinds: unknown_animal and big_sum (no factual answer) are
    left out. `kinds` keeps only facts of those kinds (default: every answerable kind).
    Taught in notebooks/13_feedback_limits.ipynb."""
    world = World() if world is None else world
    by_fact = _answerable_by_fact(world)
    if kinds is not None:
        kinds = set(kinds)
        known = {kind for kind, _ in by_fact}
        unknown = sorted(kinds - known)
        if unknown:
            raise ValueError(f"kinds {unknown} have no answerable questions; choose from "
                             f"{sorted(known)}.")
    out = []
    for fact, questions in by_fact.items():
        if kinds is not None and fact[0] not in kinds:
            continue
        heldout = sum(q.heldout for q in questions)
        if 0 < heldout < len(questions) and len(questions) >= min_phrasings:
            out.append(fact)
    return sorted(out)


def phrasing_questions(facts: Iterable[tuple[str, str]], world: World | None = None
                       ) -> list[Question]:
    """Every question (every phrasing) of `facts`: the facts in the order given, each fact's
    phrasings in the world's order (its template number). Held-out and training phrasings
    alike; `Question.heldout` says which is which. Taught in notebooks/13_feedback_limits.ipynb."""
    world = World() if world is None else world
    by_fact = _answerable_by_fact(world)
    out: list[Question] = []
    for fact in facts:
        fact = tuple(fact)
        if fact not in by_fact:
            raise ValueError(f"{fact!r} is not an answerable fact of this world; facts are "
                             "(kind, subject) pairs such as ('colour', 'cat'), e.g. from "
                             "facts_with_both().")
        out += by_fact[fact]
    return out


def answer_phrasings(policy, tokenizer, questions: list[Question], k: int,
                     progress: bool = True, *, max_new_tokens: int = MAX_NEW_TOKENS
                     ) -> pd.DataFrame:
    """k answers to every question, answer j sampled at temperature 1 with seed SEEDS[j]
    (`evaluation.sample_answers`: the course's pairing, so two models answer each phrasing
    with the same seeds), each graded like the course's evaluation (`evaluation.answer_row`).
    One row per (question, sample), samples in order, with `fact` ("kind: subject"),
    `template` (the phrasing) and `seen` (the phrasing of this fact was in the training
    split: not `Question.heldout`) before the usual columns.
    Taught in notebooks/13_feedback_limits.ipynb."""
    from tqdm.auto import tqdm

    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(SEEDS):
        raise ValueError(f"k = {k!r} answers per question; choose 1 to {len(SEEDS)} "
                         "(one fixed seed each, evaluation.SEEDS).")
    questions = list(questions)
    rows = []
    for j, seed in enumerate(tqdm(SEEDS[:k], desc="asking every phrasing",
                                  disable=not progress)):
        answers, _ = sample_answers(policy, tokenizer, questions, seed,
                                    max_new_tokens=max_new_tokens)
        for q, answer in zip(questions, answers, strict=True):
            rows.append({"fact": fact_name(q), "template": q.template, "seen": not q.heldout,
                         **answer_row(q, answer, j)})
    return pd.DataFrame(rows)


def _check_table(table: pd.DataFrame, columns=TABLE_COLUMNS) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the phrasing table lacks the columns {missing}; build it with "
                         "answer_phrasings.")


def phrasing_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per fact (in the table's order): `gold_seen` and `gold_unseen`, the mean gold
    (column 'total') over its seen and over its unseen phrasings (NaN where it has none),
    `gap` (seen minus unseen), `spread` (the standard deviation, ddof = 0, of the
    per-phrasing mean gold across all its phrasings: 0 when every phrasing scores alike),
    `n_phrasings`, `n_seen` and `n_unseen`. Each phrasing's gold is first averaged over its
    samples, so every phrasing weighs the same. Taught in notebooks/13_feedback_limits.ipynb."""
    _check_table(table)
    df = table.astype({"total": float, "seen": bool})
    per_phrasing = (df.groupby(["fact", "template"], sort=False)
                      .agg(seen=("seen", "first"), gold=("total", "mean"))
                      .reset_index())
    rows = []
    for fact, group in per_phrasing.groupby("fact", sort=False):
        seen, unseen = group[group["seen"]], group[~group["seen"]]
        gold_seen = float(seen["gold"].mean()) if len(seen) else float("nan")
        gold_unseen = float(unseen["gold"].mean()) if len(unseen) else float("nan")
        rows.append({"fact": fact, "gold_seen": gold_seen, "gold_unseen": gold_unseen,
                     "gap": gold_seen - gold_unseen,
                     "spread": float(group["gold"].std(ddof=0)),
                     "n_phrasings": len(group), "n_seen": len(seen), "n_unseen": len(unseen)})
    return pd.DataFrame(rows, columns=["fact", "gold_seen", "gold_unseen", "gap", "spread",
                                       "n_phrasings", "n_seen", "n_unseen"])


def seen_unseen_gap(table: pd.DataFrame, confidence: float = 0.95) -> dict:
    """Seen minus unseen phrasings, paired over facts: each fact's gap (`phrasing_summary`)
    averaged over the facts that have both, with its t-interval over facts (`mean_ci`).
    Also over those facts: the mean gold on seen and on unseen phrasings (their difference
    is the gap) and `mean_spread`, the average spread of a fact's gold across its phrasings.
    `within_noise`: the interval contains 0. Taught in notebooks/13_feedback_limits.ipynb."""
    summary = phrasing_summary(table)
    both = summary[(summary["n_seen"] > 0) & (summary["n_unseen"] > 0)]
    if both.empty:
        raise ValueError("no fact in the table has both seen and unseen phrasings; ask the "
                         "questions of facts_with_both() (phrasing_questions).")
    ci = mean_ci(both["gap"], confidence)
    return {"gap": ci.mean, "low": ci.low, "high": ci.high,
            "within_noise": bool(not ci.low > 0 and not ci.high < 0),
            "gold_seen": float(both["gold_seen"].mean()),
            "gold_unseen": float(both["gold_unseen"].mean()),
            "mean_spread": float(both["spread"].mean()),
            "n_facts": len(both)}


def spread_change(before: pd.DataFrame, after: pd.DataFrame, confidence: float = 0.95) -> dict:
    """How a later model changes the spread of a fact's gold across its phrasings, paired over
    facts: each fact's spread in `after` minus its spread in `before` (two tables of
    `answer_phrasings`, e.g. the SFT model then the PPO model, on the same questions and k),
    averaged over facts with its t-interval (`mean_ci`). `verdict`: "narrows" when the whole
    interval is below 0, "widens" when it is above 0, else "no measurable difference".
    Refuses tables that do not hold the same facts, phrasings and samples.
    Taught in notebooks/13_feedback_limits.ipynb."""
    _check_table(before)
    _check_table(after)
    facts_before, facts_after = set(before["fact"]), set(after["fact"])
    if facts_before != facts_after:
        only_before = sorted(facts_before - facts_after)
        only_after = sorted(facts_after - facts_before)
        raise ValueError(
            "Cannot compare the spreads fact by fact: the two tables do not hold the same facts "
            f"({len(facts_before)} before, {len(facts_after)} after; only before: "
            f"{only_before[:5]}{' ...' if len(only_before) > 5 else ''}; only after: "
            f"{only_after[:5]}{' ...' if len(only_after) > 5 else ''}). Ask both models the "
            "same phrasing_questions with the same k.")
    keys = ["fact", "template", "sample"]
    if set(map(tuple, before[keys].to_numpy())) != set(map(tuple, after[keys].to_numpy())):
        raise ValueError(
            "Cannot compare the spreads fact by fact: the two tables hold the same facts but not "
            f"the same phrasings and samples ({len(before)} rows before, {len(after)} after). "
            "Ask both models the same phrasing_questions with the same k.")
    b = phrasing_summary(before).set_index("fact")["spread"]
    a = phrasing_summary(after).set_index("fact")["spread"]
    change = a - b.reindex(a.index)
    ci = mean_ci(change, confidence)
    if ci.high < 0:
        verdict = "narrows"
    elif ci.low > 0:
        verdict = "widens"
    else:
        verdict = "no measurable difference"
    return {"change": ci.mean, "low": ci.low, "high": ci.high, "verdict": verdict,
            "spread_before": float(b.mean()), "spread_after": float(a.mean()),
            "n_facts": len(change)}


def same_fact(table: pd.DataFrame, fact: tuple[str, str] | str) -> pd.DataFrame:
    """The answers to one fact in every phrasing: its rows of the table, phrasings in the
    order they were asked, each phrasing's samples together, with the columns question,
    template, seen, sample, answer and total. `fact`: (kind, subject) or "kind: subject".
    Taught in notebooks/13_feedback_limits.ipynb."""
    _check_table(table, ("fact", *SAME_FACT_COLUMNS))
    label = _fact_label(fact)
    rows = table[table["fact"] == label]
    if rows.empty:
        raise ValueError(f"fact {label!r} is not in the table; it holds e.g. "
                         f"{list(dict.fromkeys(table['fact']))[:3]}.")
    order = {t: i for i, t in enumerate(dict.fromkeys(rows["template"]))}
    rows = rows.assign(_order=rows["template"].map(order))
    rows = rows.sort_values(["_order", "sample"], kind="stable")
    return rows[list(SAME_FACT_COLUMNS)].reset_index(drop=True)
