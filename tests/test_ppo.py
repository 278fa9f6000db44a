"""PPO pieces: masked statistics, KL-penalised rewards, GAE against a plain loop, clipped
losses and the adaptive KL controller by hand, and a toy problem where they learn together."""
import math

import pytest
import torch

from rlhf_lab.config import SettingsError
from rlhf_lab.ppo import (AdaptiveKLController, FixedKLController, PPOConfig,
                          apply_missing_eos_penalty, gae, kl_penalised_rewards, masked_mean,
                          masked_var, masked_whiten, policy_loss, value_loss)


# ---------------------------------------------------------------- settings

def test_config_defaults_quick_and_validation():
    cfg = PPOConfig()
    assert (cfg.gamma, cfg.lam, cfg.cliprange, cfg.kl_coef, cfg.target_kl) == \
        (1.0, 0.95, 0.2, 0.2, 3.0)
    quick = PPOConfig.for_mode(quick=True)
    assert quick.batch_size < cfg.batch_size and quick.steps < cfg.steps
    with pytest.raises(SettingsError, match="lam"):
        PPOConfig(lam=1.5)
    with pytest.raises(SettingsError, match="kl_estimator"):
        PPOConfig(kl_estimator="k2")
    with pytest.raises(SettingsError, match="lr_schedule"):
        PPOConfig(lr_schedule="cosine")
    with pytest.raises(SettingsError, match="minibatch_size"):
        PPOConfig(batch_size=64, minibatch_size=24)


# ---------------------------------------------------------------- masked statistics

def test_masked_mean_and_var_by_hand():
    x = torch.tensor([[1.0, 2.0, 99.0], [3.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # values under the mask: 1, 2, 3 -> mean 2; squared deviations 1, 0, 1
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    assert masked_var(x, mask).item() == pytest.approx(1.0)                 # 2 / (3 - 1)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(2 / 3)


def test_masked_whiten_by_hand_and_moments():
    x = torch.tensor([[1.0, 2.0, 99.0], [3.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    w = masked_whiten(x, mask)
    # (x - 2) / sqrt(1): -1, 0, 1 under the mask
    assert w[mask.bool()].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    assert masked_whiten(x, mask, shift_mean=False)[mask.bool()].tolist() == \
        pytest.approx([1.0, 2.0, 3.0], abs=1e-6)                             # mean kept
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 9, generator=g) * 5 + 3
    mask = (torch.arange(9) < torch.tensor([9, 1, 4, 7, 2, 5])[:, None]).long()
    w = masked_whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, mask).item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- rewards

def test_kl_penalised_rewards_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, float("-inf")]])   # padding may hold anything
    mask = torch.tensor([[1, 1, 0]])
    rewards, kl = kl_penalised_rewards(torch.tensor([2.0]), logprobs, ref_logprobs, mask,
                                       kl_coef=0.1, estimator="k1")
    # k1 = logprob - ref: 0.5, -1.0, (padding) 0
    assert kl.flatten().tolist() == pytest.approx([0.5, -1.0, 0.0])
    # rewards: -0.1 * 0.5 = -0.05;  -0.1 * -1.0 + score 2.0 = 2.1 (last real token);  0
    assert rewards.flatten().tolist() == pytest.approx([-0.05, 2.1, 0.0])


def test_kl_penalised_rewards_rows_of_different_length_and_k3():
    logprobs = torch.zeros(2, 3)
    ref_logprobs = torch.full((2, 3), math.log(0.5))
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards, kl = kl_penalised_rewards(torch.tensor([1.0, -1.0]), logprobs, ref_logprobs, mask,
                                       kl_coef=1.0, estimator="k3")
    k3 = (0.5 - 1) - math.log(0.5)                      # (r - 1) - log r with r = 0.5: 0.193147
    assert kl.flatten().tolist() == pytest.approx([k3, k3, k3, k3, 0, 0])
    assert rewards.flatten().tolist() == pytest.approx([-k3, -k3, 1 - k3, -1 - k3, 0, 0])


def test_missing_eos_penalty():
    scores = torch.tensor([0.5, 0.5, -2.0])
    out = apply_missing_eos_penalty(scores, torch.tensor([True, False, False]), -1.0)
    assert out.tolist() == pytest.approx([0.5, -0.5, -3.0])
    assert scores.tolist() == pytest.approx([0.5, 0.5, -2.0])                 # not in place


# ---------------------------------------------------------------- GAE

def gae_by_definition(rewards, values, lengths, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V_{t+1} - V_t, V_T = 0."""
    batch, seq = len(rewards), len(rewards[0])
    advantages = [[0.0] * seq for _ in range(batch)]
    for b in range(batch):
        n = lengths[b]
        v = lambda t: values[b][t] if t < n else 0.0                         # noqa: E731
        for t in range(n):
            advantages[b][t] = sum((gamma * lam) ** l *
                                   (rewards[b][t + l] + gamma * v(t + l + 1) - v(t + l))
                                   for l in range(n - t))
    return advantages


def test_gae_matches_the_definition_on_random_inputs():
    g = torch.Generator().manual_seed(1)
    lengths = [6, 1, 3, 5]
    rewards, values = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    mask = (torch.arange(6) < torch.tensor(lengths)[:, None]).long()
    rewards = rewards * mask                                  # rewards are 0 on padding
    for gamma, lam in [(1.0, 0.95), (0.9, 0.8), (0.99, 0.0), (1.0, 1.0)]:
        advantages, returns = gae(rewards, values, mask, gamma, lam)
        expected = torch.tensor(gae_by_definition(rewards.tolist(), values.tolist(), lengths,
                                                  gamma, lam))
        assert torch.allclose(advantages, expected, atol=1e-5)
        assert torch.allclose(returns, (expected + values) * mask, atol=1e-5)
        assert (advantages[mask == 0] == 0).all() and (returns[mask == 0] == 0).all()


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    mask = torch.ones(1, 3)
    # gamma = 1, lam = 0.5. deltas: 0 + 0.2 - 0.5 = -0.3; 0 + 0.4 - 0.2 = 0.2; 1 + 0 - 0.4 = 0.6
    # A_2 = 0.6; A_1 = 0.2 + 0.5 * 0.6 = 0.5; A_0 = -0.3 + 0.5 * 0.5 = -0.05
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert advantages.flatten().tolist() == pytest.approx([-0.05, 0.5, 0.6])
    assert returns.flatten().tolist() == pytest.approx([0.45, 0.7, 1.0])
    # lam = 1, gamma = 1: A_t = (sum of rewards from t on) - V_t = 1 - V_t
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages.flatten().tolist() == pytest.approx([0.5, 0.8, 0.6])
    assert returns.flatten().tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_gae_ignores_values_after_the_end():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    a1, _ = gae(rewards, torch.tensor([[0.3, 0.1, 0.0]]), mask, 1.0, 0.95)
    a2, _ = gae(rewards, torch.tensor([[0.3, 0.1, 50.0]]), mask, 1.0, 0.95)
    assert torch.equal(a1, a2)


# ---------------------------------------------------------------- losses

def test_policy_loss_clipped_when_ratio_too_high_with_positive_advantage():
    old = torch.tensor([[-1.0]])
    new = old + 0.3                                  # ratio e^0.3 = 1.3499 > 1 + 0.2
    loss, clipfrac, approx_kl = policy_loss(new, old, torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    # max(-2 * 1.3499, -2 * 1.2) = -2.4 = -(1 + eps) A
    assert loss.item() == pytest.approx(-2.4)
    assert clipfrac.item() == 1.0
    assert approx_kl.item() == pytest.approx(0.5 * 0.3 ** 2)                 # 0.045


def test_policy_loss_not_clipped_when_ratio_too_low_with_positive_advantage():
    old = torch.tensor([[-1.0]])
    new = old - 0.5                                  # ratio e^-0.5 = 0.606531 < 1 - 0.2
    loss, clipfrac, _ = policy_loss(new, old, torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    # max(-2 * 0.606531, -2 * 0.8) = -1.213061: the unclipped term (the gradient still pushes up)
    assert loss.item() == pytest.approx(-2 * math.exp(-0.5))
    assert clipfrac.item() == 0.0


def test_policy_loss_identical_logprobs_and_gradient():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    advantages = torch.tensor([[1.0, -2.0, 7.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, clipfrac, approx_kl = policy_loss(logprobs, logprobs.detach(), advantages, mask, 0.2)
    assert loss.item() == pytest.approx(0.5)                 # -mean(1, -2) over the mask
    assert clipfrac.item() == 0.0 and approx_kl.item() == 0.0
    loss.backward()                                          # d loss / d logprob = -A / n tokens
    assert logprobs.grad.flatten().tolist() == pytest.approx([-0.5, 1.0, 0.0])


def test_value_loss_clipped_and_not():
    old_values, returns = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 2)
    # token 0: v = 0.5 moved away from R = 0 beyond c = 0.2: unclipped (0.5)^2 = 0.25,
    #          clipped (0.2 - 0)^2 = 0.04 -> max 0.25, clipping not active
    # token 1: v = 0.5 moved towards R = 1 beyond c: unclipped (0.5 - 1)^2 = 0.25,
    #          clipped (0.2 - 1)^2 = 0.64 -> max 0.64, clipping active
    loss, clipfrac = value_loss(torch.tensor([[0.5, 0.5]]), old_values, returns, mask, 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 0.64) / 2)             # 0.2225
    assert clipfrac.item() == pytest.approx(0.5)
    # inside the clip range nothing is clipped: 0.5 * (0.1^2 + 0.9^2) / 2 = 0.205
    loss, clipfrac = value_loss(torch.tensor([[0.1, 0.1]]), old_values, returns, mask, 0.2)
    assert loss.item() == pytest.approx(0.205) and clipfrac.item() == 0.0


# ---------------------------------------------------------------- KL controllers

def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    # KL 6.6 above target: error = 6.6 / 6 - 1 = 0.1; beta = 0.1 * (1 + 0.1 * 64 / 10000)
    assert ctl.update(6.6, 64) == pytest.approx(0.1 * (1 + 0.1 * 64 / 10000))   # 0.100064
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    # KL 5.4 below: error = -0.1; beta = 0.1 * (1 - 0.00064) = 0.099936
    assert ctl.update(5.4, 64) == pytest.approx(0.099936)
    # the error is clipped to +-0.2: KL 60 -> error 0.2, KL 0 -> error -0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(60.0, 50) == pytest.approx(0.1 * 1.1)
    assert ctl.update(0.0, 50) == pytest.approx(0.1 * 1.1 * 0.9)
    assert FixedKLController(0.05).update(100.0, 64) == 0.05


# ---------------------------------------------------------------- a toy problem

def run_toy_ppo(kl_coef: float, iterations: int = 100, batch: int = 64) -> torch.Tensor:
    """One-token answers from a categorical policy over 5 tokens; reward 1 for token 3.

    Each iteration follows a PPO step: sample, score, KL-penalised rewards against a uniform
    reference, GAE with a learned scalar value, whitened advantages, a few epochs of the
    clipped policy and value losses. Returns the final probabilities.
    """
    torch.manual_seed(0)
    logits = torch.nn.Parameter(torch.zeros(5))
    value = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.Adam([logits, value], lr=0.05)
    ref_logprobs = torch.full((batch, 1), math.log(1 / 5))
    mask = torch.ones(batch, 1)
    for _ in range(iterations):
        with torch.no_grad():
            tokens = torch.multinomial(torch.softmax(logits, -1), batch, replacement=True)[:, None]
            old_logprobs = torch.log_softmax(logits, -1)[tokens]               # (batch, 1)
            old_values = value.expand(batch, 1).clone()
            score = (tokens[:, 0] == 3).float()
            rewards, _ = kl_penalised_rewards(score, old_logprobs, ref_logprobs, mask, kl_coef)
            advantages, returns = gae(rewards, old_values, mask, gamma=1.0, lam=0.95)
            advantages = masked_whiten(advantages, mask)
        for _ in range(4):
            logprobs = torch.log_softmax(logits, -1)[tokens]
            pg_loss, _, _ = policy_loss(logprobs, old_logprobs, advantages, mask, 0.2)
            vf_loss, _ = value_loss(value.expand(batch, 1), old_values, returns, mask, 0.2)
            opt.zero_grad()
            (pg_loss + 0.1 * vf_loss).backward()
            opt.step()
    return torch.softmax(logits.detach(), -1)


def test_toy_ppo_finds_the_best_token():
    probs = run_toy_ppo(kl_coef=0.0)
    assert probs[3] > 0.9


def test_toy_ppo_with_a_strong_kl_penalty_stays_near_the_reference():
    # the best policy under reward - beta * KL(pi || uniform) is pi ~ exp(r / beta):
    # with beta = 2, P(3) = e^0.5 / (4 + e^0.5) = 0.29
    probs = run_toy_ppo(kl_coef=2.0)
    assert probs[3] < 0.5
    assert probs.min() > 0.1
