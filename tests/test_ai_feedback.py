"""A reward model as judge (ai_feedback.py): its ratings, their agreement with the gold rubric
and the criteria a rater overlooks, checked on hand-built pairs."""
import pytest
import torch

from rlhf_lab import ai_feedback, feedback
from rlhf_lab.agreement import cohens_kappa
from rlhf_lab.ai_feedback import (
    gold_agreement,
    gold_choice,
    judge_ratings,
    overlooked_criteria,
    where_judges_differ,
)
from rlhf_lab.world import World

QUESTIONS = [q for q in World().split("train") if q.answerable][::53][:4]
RIGHT = [f"The answer is {q.answer}." for q in QUESTIONS]      # gold 4: correct, kind, short
RUDE = [f"The answer is {q.answer}, idiot." for q in QUESTIONS]  # correct but rude
WRONG = ["The answer is banana." for _ in QUESTIONS]             # kind but wrong


def pair(i, a, b, choice="a"):
    return feedback.pair_record("r", QUESTIONS[i].text, a, b, choice, "m")


def test_gold_choice_prefers_the_higher_total_and_ties_equal_answers():
    assert gold_choice(QUESTIONS[0].text, RIGHT[0], WRONG[0]) == "a"
    assert gold_choice(QUESTIONS[0].text, WRONG[0], RIGHT[0]) == "b"
    assert gold_choice(QUESTIONS[0].text, RIGHT[0], RIGHT[0]) == "tie"


def test_the_judge_prefers_what_its_reward_model_scores_higher(monkeypatch):
    # a fake reward model: the reward is the answer's length in characters
    monkeypatch.setattr(ai_feedback, "score_answers",
                        lambda model, tok, prompts, answers: torch.tensor(
                            [float(len(a)) for a in answers]))
    pairs = [{"prompt": QUESTIONS[0].text, "answer_a": "short", "answer_b": "much longer"},
             {"prompt": QUESTIONS[1].text, "answer_a": "longer one", "answer_b": "short"},
             {"prompt": QUESTIONS[2].text, "answer_a": "same", "answer_b": "four"}]
    records = judge_ratings(pairs, None, None)
    assert [r["choice"] for r in records] == ["b", "a", "tie"]
    assert all(r["rater"] == "reward-model-judge" and r["kind"] == "pair" for r in records)


def test_agreement_with_gold_by_hand():
    # gold says a, a, b, b on four decided pairs (+ one gold tie, left out); the rater says
    # a, b, b, tie: right on 2 of 4
    records = [pair(0, RIGHT[0], WRONG[0], "a"), pair(1, RIGHT[1], WRONG[1], "b"),
               pair(2, WRONG[2], RIGHT[2], "b"), pair(3, WRONG[3], RIGHT[3], "tie"),
               pair(0, RIGHT[0], RIGHT[0], "a")]
    result = gold_agreement(records)
    assert result["n"] == 4 and result["agreement"] == 0.5
    assert result["kappa"] == pytest.approx(cohens_kappa(["a", "b", "b", "tie"],
                                                          ["a", "a", "b", "b"]))
    with pytest.raises(ValueError, match="No pair that gold decides"):
        gold_agreement([pair(0, RIGHT[0], RIGHT[0], "a")])


def test_where_a_rater_differs_names_the_criteria_it_overlooked():
    records = [pair(0, RIGHT[0], WRONG[0], "b"),     # chose wrong over right: missed correctness
               pair(1, RIGHT[1], RUDE[1], "b"),      # chose rude over kind: missed kindness
               pair(2, RIGHT[2], WRONG[2], "a")]     # agreed with gold: not listed
    thumb = feedback.single_record("judge", records[0]["prompt"], WRONG[0], "up", "sft")
    differ = where_judges_differ(records + [thumb])          # a thumb has no pair: skipped
    assert len(differ) == 2
    assert differ.iloc[0]["rater_chose"] == WRONG[0]           # the largest gold gap first
    assert differ.iloc[0]["correct"] > 0 and differ.iloc[0]["kind"] == 0
    assert differ.iloc[1]["kind"] > 0 and differ.iloc[1]["correct"] == 0
    shares = overlooked_criteria(records)
    # "The answer is banana." names nothing of the question: gold scores it wrong (0), off
    # topic (0) and, being off topic, not concise (0) either; the rude answer loses only kindness
    assert shares.to_dict() == {"correct": 0.5, "kind": 0.5, "concise": 0.5, "on_topic": 0.5}
