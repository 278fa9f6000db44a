"""Chapter 09's loop on the session's quick models: pairs of the current policy's answers,
ratings in the chapter-03 schema, and further reward-model training that never sees the new
pairs it is measured on."""
import copy

import pytest

from rlhf_lab.feedback import pair_id, record_problem
from rlhf_lab.iterate import (
    IterateConfig,
    own_comparisons,
    retrain_reward_model,
    simulated_ratings,
)
from rlhf_lab.preferences import ratings_to_examples
from rlhf_lab.reward_model import RewardConfig, score_answers
from rlhf_lab.world import World


@pytest.fixture(scope="module")
def round_one(reward_trained):
    cfg = IterateConfig.for_mode(quick=True, pairs_per_round=60, reward_steps=30)
    from rlhf_lab import artifacts
    sft, sft_tokenizer = artifacts.load_model("sft")
    pairs = own_comparisons(sft, sft_tokenizer, World().split("train"), cfg.pairs_per_round,
                         "round-1", seed=1)
    return cfg, pairs, simulated_ratings(pairs, cfg, round_number=1)


def test_round_pairs_are_two_different_answers_of_the_current_policy(round_one):
    cfg, pairs, _ = round_one
    assert 0.8 * cfg.pairs_per_round <= len(pairs) <= cfg.pairs_per_round
    assert all(p["answer_a"] != p["answer_b"] for p in pairs)
    assert {p["model"] for p in pairs} == {"round-1@T1.0"}
    questions = {q.text for q in World().split("train")}
    assert all(p["prompt"] in questions for p in pairs)


def test_round_ratings_are_valid_chapter_03_records_one_per_pair(round_one):
    _, pairs, records = round_one
    assert [record_problem(r) for r in records] == [None] * len(records)
    assert sorted(r["pair_id"] for r in records) == sorted(
        pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs)
    assert {r["rater"] for r in records} == {"simulated-round-1"}


def test_retraining_holds_out_the_new_pairs_it_is_measured_on(round_one, reward_trained):
    cfg, _, new = round_one
    reward_cfg = RewardConfig.for_mode(quick=True)
    model = copy.deepcopy(reward_trained.model)
    result = retrain_reward_model(model, reward_trained.tokenizer, new, new, cfg, reward_cfg, 1)
    n_new = len(ratings_to_examples(new))
    assert result["heldout_new_pairs"] == max(1, int(n_new * reward_cfg.heldout_fraction))
    assert result["train_pairs"] == n_new - result["heldout_new_pairs"]   # none of them trains
    assert 0.0 <= result["rm_accuracy_before"] <= 1.0 and 0.0 <= result["rm_accuracy_after"] <= 1.0
    # re-normalised on this round's answers: their scores now average 0 with spread 1
    examples = ratings_to_examples(new)
    scores = score_answers(model, reward_trained.tokenizer,
                           list(examples.prompt) * 2,
                           list(examples.answer_a) + list(examples.answer_b))
    assert abs(scores.mean().item()) < 1e-4 and abs(scores.std().item() - 1) < 1e-3


def test_a_policy_that_always_writes_the_same_two_answers_cannot_crash_a_round(monkeypatch):
    """A converged policy writes stock answers: the same comparison comes up again and again.
    The round keeps each different comparison once and rates each once (issue: chapter 09
    once stopped with '222 ratings needed ... only 221 unrated pairs left')."""
    from rlhf_lab import comparisons

    def stock_answers(model, tokenizer, questions, **kwargs):
        return ["A cat is grey." if i % 2 else "Ugh. A cat is grey." for i in range(len(questions))]
    monkeypatch.setattr(comparisons, "generate", stock_answers)
    questions = [q for q in World().split("train") if q.kind == "colour"][:3]
    pairs = own_comparisons(None, None, questions, 60, "stock", seed=0)
    ids = [pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs]
    assert len(ids) == len(set(ids)) <= 2 * len(questions)
    records = simulated_ratings(pairs + pairs, IterateConfig.for_mode(quick=True), 1)
    assert sorted(r["pair_id"] for r in records) == sorted(ids)
