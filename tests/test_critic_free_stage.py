"""Chapter 10's stages (critic_free_stage.py): the verifiable reward, where each method puts
the KL, the clipped loss against PPO's, the settings' checks, and seeded quick-mode runs of
GRPO and RLOO that must beat the SFT model on the gold score at bounded KL."""
import math

import pandas as pd
import pytest
import torch

from rlhf_lab import artifacts
from rlhf_lab.config import SettingsError
from rlhf_lab.critic_free import clipped_loss
from rlhf_lab.critic_free_stage import (
    GRPOConfig,
    RLOOConfig,
    advantages_for,
    answer_scores,
    verifiable_rewards,
)
from rlhf_lab.ppo import policy_loss
from rlhf_lab.world import World


def _question(kind: str):
    return next(q for q in World().split("heldout") if q.kind == kind)


def test_the_verifiable_reward_checks_correctness_and_nothing_else():
    q = _question("colour")
    wrong = next(c for c in ("red", "blue", "green", "grey", "pink") if c != q.answer)
    rude = f"Ugh, obviously a {q.subject} is {q.answer}, you idiot."
    answers = [f"A {q.subject} is {q.answer}.", rude, f"A {q.subject} is {wrong}.",
               "I do not know."]
    assert verifiable_rewards([q] * 4, answers).tolist() == [1.0, 1.0, 0.0, 0.0]
    made_up = _question("unknown_animal")
    assert verifiable_rewards([made_up] * 2, ["I do not know.", "It is blue."]).tolist() == [1.0, 0.0]


def test_both_adds_the_weighted_verifiable_reward_to_the_models_score():
    q = _question("colour")
    answers = [f"A {q.subject} is {q.answer}.", "I do not know."]
    cfg = GRPOConfig(reward="verifiable")
    assert answer_scores(cfg, [q, q], answers).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="needs a reward model"):
        answer_scores(GRPOConfig(reward="both"), [q, q], answers)


def test_rloo_puts_the_kl_in_the_reward_and_grpo_does_not():
    scores = torch.tensor([1.0, 0.0, 2.0, 2.0])            # two questions, k = 2
    kl = torch.tensor([0.0, 10.0, 0.0, 0.0])
    # RLOO, kl_coef 0.1: penalised scores 1, -1, 2, 2; leave-one-out: 1-(-1), -1-1, 0, 0
    rloo = advantages_for(RLOOConfig(k=2, kl_coef=0.1, minibatch_size=2), scores, kl)
    assert rloo.tolist() == pytest.approx([2.0, -2.0, 0.0, 0.0])
    # REINFORCE: penalised minus the batch mean (1 - 1 + 2 + 2) / 4 = 1
    reinforce = advantages_for(RLOOConfig(k=2, kl_coef=0.1, minibatch_size=2,
                                          baseline="batch_mean"), scores, kl)
    assert reinforce.tolist() == pytest.approx([0.0, -2.0, 1.0, 1.0])
    # GRPO ignores the KL here (it is in the loss): Dr. GRPO's advantages are +-0.5, 0, 0
    grpo = advantages_for(GRPOConfig(k=2, kl_coef=0.1, minibatch_size=2,
                                     scale_advantages=False), scores, kl)
    assert grpo.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_clipped_loss_with_token_averaging_is_ppos_policy_loss():
    generator = torch.Generator().manual_seed(1)
    logprobs = -torch.rand(3, 4, generator=generator)
    old = logprobs + 0.3 * torch.randn(3, 4, generator=generator)
    advantages = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    ppo, _, _ = policy_loss(logprobs, old, advantages[:, None].expand(3, 4), mask, 0.2)
    ours = clipped_loss(logprobs, old, advantages, mask, 0.2, "token")
    assert ours.item() == pytest.approx(ppo.item(), rel=1e-6)


def test_settings_name_the_run_and_refuse_a_minibatch_that_does_not_divide():
    assert GRPOConfig().name == "grpo" and GRPOConfig(reward="verifiable").name == "grpo_verifiable"
    assert RLOOConfig(baseline="batch_mean").name == "reinforce"
    assert GRPOConfig().batch_size == 16 * 4
    with pytest.raises(SettingsError, match="must divide prompts x k = 12"):
        GRPOConfig(prompts=3, k=4, minibatch_size=8)
    with pytest.raises(SettingsError, match="valid range"):
        GRPOConfig(k=1)


# --- seeded quick-mode runs on the session's quick SFT model and reward model ----------------

@pytest.fixture(scope="module")
def sft_gold(reward_trained):
    from rlhf_lab.report_card import load_evaluation
    return load_evaluation("sft")


# Quick mode: 10 iterations of 8 questions x 4 answers at lr 1e-4, graded on the quick
# evaluation set. Measured from the quick SFT model at gold 2.17: GRPO +0.26, +0.17, +0.22 and
# RLOO +0.22, +0.05, +0.09 (seeds 0-2), KL 0.5 to 0.8 nats per answer. (The earlier quick
# setting, 20 iterations at 5e-5, took half as long again and gained less: GRPO +0.11, +0.10,
# -0.09, RLOO +0.06, +0.12, +0.12 from gold 1.95.) Seed 0 is tested, so the margin is +0.04 and
# the KL bound 3 nats.
MARGIN = 0.04


@pytest.mark.parametrize("cfg_class", [GRPOConfig, RLOOConfig])
def test_quick_run_raises_the_gold_score_over_sft_at_bounded_kl(reward_trained, sft_gold,
                                                                 cfg_class):
    from rlhf_lab.critic_free_stage import run_critic_free
    result = run_critic_free(cfg_class.for_mode(quick=True), progress=False)
    after = result.after.summary()
    assert after["gold"] > sft_gold.summary()["gold"] + MARGIN, (sft_gold.summary()["gold"], after)
    assert after["kl"] < 3.0, after["kl"]
    assert result.history.gold.notna().sum() == 1 + math.ceil(result.cfg.steps / 10)  # 0, every 10
    folder = artifacts.require(result.cfg.name)
    assert (folder / "metrics.csv").exists()


def test_baseline_advantages_against_hand_values():
    from rlhf_lab.critic_free_stage import baseline_advantages
    # one question, k = 2 answers: 2 tokens and 1 token; rewards per token, score at the end
    rewards = torch.tensor([[-0.1, 1.0], [2.0, 0.0]])
    values = torch.tensor([[0.5, 0.4], [0.3, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    got = {name: a.flatten().tolist()
           for name, a in baseline_advantages(rewards, values, mask, k=2, lam=0.5).items()}
    # returns to go: answer 1: 0.9, 1.0; answer 2: 2.0; G_0 = 0.9 and 2.0, batch mean 1.45
    assert got["none: G_t"] == pytest.approx([0.9, 1.0, 2.0, 0.0])
    assert got["batch mean (REINFORCE)"] == pytest.approx([-0.55, -0.45, 0.55, 0.0])
    assert got["other answers, same question (RLOO)"] == pytest.approx(
        [0.9 - 2.0, 1.0 - 2.0, 2.0 - 0.9, 0.0])
    assert got["value head: G_t - V(s_t)"] == pytest.approx([0.4, 0.6, 1.7, 0.0])
    # GAE, gamma 1, lambda 0.5: answer 1: delta_1 = 1.0 - 0.4 = 0.6, delta_0 = -0.1 + 0.4 - 0.5
    # = -0.2, A_0 = -0.2 + 0.5 * 0.6 = 0.1; answer 2: delta_0 = 2.0 - 0.3 = 1.7
    assert got["value head, GAE (lambda 0.5)"] == pytest.approx([0.1, 0.6, 1.7, 0.0])


def test_runs_side_by_side_give_the_numbers_of_a_run_alone_and_are_saved(reward_trained):
    """Chapter 10's hard GRPO runs go side by side, one process each: each must end exactly
    where it ends when run here on as many threads, and be saved and on the report card."""
    from rlhf_lab import report_card
    from rlhf_lab.critic_free_stage import run_critic_free, run_side_by_side
    from rlhf_lab.workers import worker_threads

    short = dict(quick=True, steps=2, eval_every=2, eval_questions=12, lr=1e-4)
    runs = {"grpo_short_a": GRPOConfig.for_mode(**short),
            "grpo_short_b": GRPOConfig.for_mode(reward="verifiable", **short)}
    threads = torch.get_num_threads()
    torch.set_num_threads(worker_threads(2))
    try:
        alone = run_critic_free(runs["grpo_short_b"], save=False, progress=False,
                                name="grpo_short_b")
    finally:
        torch.set_num_threads(threads)
    both = run_side_by_side(runs, processes=2)
    assert list(both) == list(runs)
    drop = ["seconds"]
    pd.testing.assert_frame_equal(both["grpo_short_b"].history.drop(columns=drop),
                                  alone.history.drop(columns=drop))
    pd.testing.assert_frame_equal(both["grpo_short_b"].after.answers, alone.after.answers)
    assert not both["grpo_short_a"].after.answers.equals(alone.after.answers)
    card = report_card.load_card().set_index("name")
    for name, run in both.items():
        assert (artifacts.require(name) / "metrics.csv").exists()
        assert card.loc[name, "gold"] == pytest.approx(run.after.summary()["gold"])
