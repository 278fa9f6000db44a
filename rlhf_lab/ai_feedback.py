"""Feedback without people: a reward model labels new pairs, and what it passes on.

Taught in notebooks/13_feedback_limits.ipynb. People are the slow, costly part of RLHF (chapter
12 counts their minutes), so practice automates: a model judges pairs in their place (RLAIF,
Bai et al., 2022; "LLM as a judge"). Here the judge is chapter 04's reward model itself,
round 0 of the loop: it labels fresh pairs of the SFT model's answers, and we measure
how often it agrees with the gold rubric, beside a simulated person rating the same pairs.
A policy trained on the judge's labels can only learn what the judge knows: where the judge
disagrees with gold, it teaches the policy the judge's mistakes.
"""
from __future__ import annotations

import pandas as pd

from . import feedback
from .agreement import cohens_kappa
from .class_ratings import gold_choice
from .gold import gold_score
from .reward_model import score_answers
from .world import World

CRITERIA = ("correct", "kind", "concise", "on_topic")


def judge_ratings(pairs: list[dict], reward_model, tokenizer,
                  name: str = "reward-model-judge") -> list[dict]:
    """Pair records (chapter 03's schema) made by a reward model: 'a' when it scores answer A
    higher, 'b' when B, 'tie' when equal. Deterministic: the judge has no coin to flip."""
    prompts = [p["prompt"] for p in pairs]
    r_a = score_answers(reward_model, tokenizer, prompts, [p["answer_a"] for p in pairs])
    r_b = score_answers(reward_model, tokenizer, prompts, [p["answer_b"] for p in pairs])
    return [feedback.pair_record(name, p["prompt"], p["answer_a"], p["answer_b"],
                                 "a" if a > b else "b" if b > a else "tie",
                                 *feedback.item_models(p, "pool"))
            for p, a, b in zip(pairs, r_a.tolist(), r_b.tolist(), strict=True)]


def gold_agreement(records: list[dict]) -> dict:
    """How a rater's pair records agree with the gold rubric, on the pairs gold decides
    (`class_ratings.gold_choice`: gold totals at least 0.05 apart, chapter 03's tie rule):
    `agreement`, the share chosen as gold chooses (a tie counts as a miss),
    Cohen's `kappa` (agreement beyond chance) and `n`."""
    rows = [(r["choice"], gold_choice(r["prompt"], r["answer_a"], r["answer_b"]))
            for r in records if r["kind"] == "pair" and r["choice"] in ("a", "b", "tie")]
    rows = [(choice, gold) for choice, gold in rows if gold != "tie"]
    if not rows:
        raise ValueError("No pair that gold decides: rate pairs whose answers differ in gold score.")
    choices, golds = zip(*rows)
    return {"agreement": sum(c == g for c, g in rows) / len(rows),
            "kappa": cohens_kappa(choices, golds), "n": len(rows)}


def where_judges_differ(records: list[dict]) -> pd.DataFrame:
    """The pairs on which a rater chose against gold, one row each: prompt, the answer the
    rater preferred and the one gold prefers, and for each criterion how much more gold gave
    the better answer (positive: the rater overlooked that criterion). Sorted by the gold
    difference, largest first: the rater's worst mistakes lead."""
    world = World()
    rows = []
    for r in records:
        if r["kind"] != "pair":          # thumbs and undos have no second answer
            continue
        gold = gold_choice(r["prompt"], r["answer_a"], r["answer_b"])
        if gold == "tie" or r["choice"] == gold:
            continue
        better, worse = ((r["answer_a"], r["answer_b"]) if gold == "a"
                         else (r["answer_b"], r["answer_a"]))
        question = world.lookup(r["prompt"])
        g_better, g_worse = gold_score(question, better), gold_score(question, worse)
        rows.append({"prompt": r["prompt"], "rater_chose": worse, "gold_prefers": better,
                     "gold_difference": g_better.total - g_worse.total,
                     **{c: getattr(g_better, c) - getattr(g_worse, c) for c in CRITERIA}})
    frame = pd.DataFrame(rows, columns=["prompt", "rater_chose", "gold_prefers",
                                        "gold_difference", *CRITERIA])
    return frame.sort_values("gold_difference", ascending=False).reset_index(drop=True)


def overlooked_criteria(records: list[dict]) -> pd.Series:
    """Of the pairs a rater got wrong against gold, the share in which each criterion favoured
    the answer gold prefers: which part of the rubric this rater does not see."""
    differ = where_judges_differ(records)
    if differ.empty:
        return pd.Series(0.0, index=list(CRITERIA))
    return (differ[list(CRITERIA)] > 0).mean()
