"""Chapter 09's loop on the session's quick models: pairs of the current policy's answers,
ratings in the chapter-03 schema, and further reward-model training that never sees the new
pairs it is measured on."""
import copy
import math

import pandas as pd
import pytest
import torch

from rlhf_lab.feedback import pair_id, record_problem
from rlhf_lab.iterate import (
    IterateConfig,
    fixed_versus_iterated,
    own_comparisons,
    retrain_reward_model,
    retraining_set,
    run_seeds,
    seed_run,
    simulated_ratings,
)
from rlhf_lab.ppo import PPOConfig, hard_settings
from rlhf_lab.preferences import ratings_to_examples
from rlhf_lab.reward_model import RewardConfig, score_answers
from rlhf_lab.world import World


@pytest.fixture(scope="module")
def round_one(reward_trained):
    cfg = IterateConfig.for_mode(quick=True, pairs_per_round=60, heldout_pairs=20,
                                 reward_steps=30)
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
    # the new ratings passed as earlier ones too: their held-out pairs must still not train
    result = retrain_reward_model(model, reward_trained.tokenizer, new, new, cfg, reward_cfg, 1)
    n_new = len(ratings_to_examples(new))
    assert result["new_pairs"] == n_new
    assert result["heldout_new_pairs"] == min(cfg.heldout_pairs, n_new // 2)
    assert result["train_pairs"] == 2 * (n_new - result["heldout_new_pairs"])
    for what in ("accuracy", "loss"):
        assert math.isfinite(result[f"rm_{what}_before"]) and math.isfinite(result[f"rm_{what}_after"])
    assert 0.0 <= result["rm_accuracy_before"] <= 1.0 and 0.0 <= result["rm_accuracy_after"] <= 1.0
    # re-normalised on this round's answers: their scores now average 0 with spread 1
    examples = ratings_to_examples(new)
    scores = score_answers(model, reward_trained.tokenizer,
                           list(examples.prompt) * 2,
                           list(examples.answer_a) + list(examples.answer_b))
    assert abs(scores.mean().item()) < 1e-4 and abs(scores.std().item() - 1) < 1e-3


def test_new_ratings_are_repeated_to_their_share_of_the_retraining_set():
    earlier = pd.DataFrame({"prompt": [f"old {i}" for i in range(90)]})
    new = pd.DataFrame({"prompt": [f"new {i}" for i in range(10)]})
    half = retraining_set(earlier, new, 0.5)
    assert len(half) == 180 and half.prompt.str.startswith("new").sum() == 90   # 9 repeats
    quarter = retraining_set(earlier, new, 0.25)
    assert quarter.prompt.str.startswith("new").sum() == 30                     # 90 / 3
    assert len(retraining_set(earlier, new, 0.0)) == 100                        # each once
    assert retraining_set(earlier, new.iloc[:0], 0.5).equals(earlier)


def test_pair_fit_matches_hand_computed_accuracy_and_bradley_terry_loss(monkeypatch):
    from rlhf_lab import reward_model

    monkeypatch.setattr(reward_model, "pair_rewards", lambda model, tokenizer, examples: (
        torch.tensor([2.0, 0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0, 3.0])))
    examples = pd.DataFrame({"target": [1.0, 0.0, 0.5, 1.0]})
    fit = reward_model.pair_fit(None, None, examples)
    # decided pairs 1, 2 and 4; 1 and 2 ordered as rated, 4 not; the tie only counts in the loss
    assert fit["accuracy"] == pytest.approx(2 / 3)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))
    by_hand = [-math.log(sigmoid(2.0)), -math.log(1 - sigmoid(-1.0)), math.log(2.0),
               -math.log(sigmoid(-3.0))]
    assert fit["loss"] == pytest.approx(sum(by_hand) / 4, rel=1e-5)


def test_hard_settings_are_chapter_07s():
    full, quick = hard_settings(quick=False), hard_settings(quick=True, steps=5)
    assert (full.lr, full.lr_schedule, full.kl_coef, full.target_kl) == (6e-5, "constant", 0.02, 0.0)
    assert full.lr == pytest.approx(3 * PPOConfig.for_mode(quick=False).lr) and full.steps == 50
    assert hard_settings(quick=False, steps=30).steps == 30            # overrides win
    assert (quick.lr, quick.steps) == (3e-4, 5) and hard_settings(quick=True).steps == 30
    assert full.batch_size == PPOConfig.for_mode(quick=False).batch_size


def test_fixed_and_iterated_arms_share_round_one_and_leave_the_inputs_alone(reward_trained):
    from rlhf_lab import artifacts
    from rlhf_lab.preferences import training_ratings

    sft, tokenizer = artifacts.load_model("sft")
    rm = reward_trained.model
    before = {k: v.clone() for k, v in rm.state_dict().items()}
    sft_before = {k: v.clone() for k, v in sft.state_dict().items()}
    records, _ = training_ratings(RewardConfig.for_mode(quick=True))
    cfg = IterateConfig.for_mode(quick=True, rounds=2, ppo_steps=2, pairs_per_round=40,
                                 heldout_pairs=10, reward_steps=3)
    arms = fixed_versus_iterated(sft, tokenizer, rm, reward_trained.tokenizer, records, cfg,
                                 hard_settings(quick=True, eval_questions=12, eval_every=2),
                                 progress=False)
    assert all(torch.equal(v, rm.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, sft.state_dict()[k]) for k, v in sft_before.items())
    assert list(arms.reward_model["round"]) == [2]
    assert arms.reward_model.heldout_new_pairs.iloc[0] == 10
    curves = arms.curves.set_index(["arm", "iteration"])
    assert sorted(arms.curves.iteration.unique()) == [0, 2, 4]
    round_one = curves.xs(2, level="iteration")
    assert round_one.loc["fixed", "gold"] == round_one.loc["iterated", "gold"]    # shared
    changed = lambda model: any(not torch.equal(v, model.state_dict()[k])
                                for k, v in sft_before.items())
    assert changed(arms.fixed) and changed(arms.iterated)
    assert any(not torch.equal(v, arms.iterated.state_dict()[k])
               for k, v in arms.fixed.state_dict().items())


@pytest.mark.slow
def test_seeds_run_side_by_side_give_the_numbers_of_a_seed_run_alone(reward_trained):
    """Chapter 09 runs its seeds in processes of their own: each must end exactly where the
    same seed ends when run here on as many threads, and the seeds must differ."""
    from rlhf_lab import artifacts
    from rlhf_lab.preferences import training_ratings
    from rlhf_lab.workers import worker_threads

    sft, tokenizer = artifacts.load_model("sft")
    records, _ = training_ratings(RewardConfig.for_mode(quick=True))
    cfg = IterateConfig.for_mode(quick=True, rounds=2, ppo_steps=2, pairs_per_round=40,
                                 heldout_pairs=10, reward_steps=3)
    hard = hard_settings(quick=True, eval_questions=12, eval_every=2)
    args = (sft, tokenizer, reward_trained.model, reward_trained.tokenizer, records, cfg, hard)
    threads = torch.get_num_threads()
    torch.set_num_threads(worker_threads(2))
    try:
        alone = seed_run(1, *args)
    finally:
        torch.set_num_threads(threads)
    both = run_seeds((1, 2), *args, processes=2)
    assert list(both) == [1, 2]
    for arm in ("fixed", "iterated"):
        pd.testing.assert_frame_equal(both[1].finals[arm].answers, alone.finals[arm].answers)
    pd.testing.assert_frame_equal(both[1].arms.curves, alone.arms.curves)
    assert not both[2].finals["fixed"].answers.equals(both[1].finals["fixed"].answers)


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


def test_a_round_with_fewer_than_two_rated_pairs_says_what_to_do(round_one):
    cfg, _, new = round_one
    with pytest.raises(ValueError, match="Round 3 has 1 rated pair.*pairs_per_round"):
        retrain_reward_model(None, None, new, new[:1], cfg, RewardConfig.for_mode(quick=True), 3)
