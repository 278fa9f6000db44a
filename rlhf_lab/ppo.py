"""PPO for language models: the pieces of one step, each a small function.

Taught in notebooks/06_ppo.ipynb (to come). The pieces of one PPO step for language models,
in the order of "The N implementation details of RLHF with PPO" (Huang et al., 2023) and
openai/lm-human-preferences (Ziegler et al., 2019); each a small function:

    1. sample answers from the policy (generation.py)
    2. score them with the reward model; answers that never end get `missing_eos_penalty`
    3. per-token reward = -beta * KL estimate, plus the score at the last real token
    4. (optionally) whiten the rewards
    5. generalised advantage estimation (GAE): advantages and returns
    6. whiten the advantages
    7. for a few epochs over minibatches: clipped policy loss + vf_coef * clipped value loss
    8. adapt beta towards the target KL

Every tensor below is (batch, seq) over the answer tokens only, with a `mask` that is 1 on
real answer tokens and 0 after the end (padding). Names follow the papers and cleanrl:
`logprobs`, `old_logprobs`, `ref_logprobs`, `values`, `advantages`, `returns`, `clipfrac`,
`approx_kl`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import Settings, SettingsError, setting
from .kl import sequence_kl


@dataclass
class PPOConfig(Settings):
    """Chapter 06: PPO against the reward model, held near the SFT model by a KL penalty."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    steps: int = setting(100, "PPO iterations (each: sample a batch, then optimise on it)",
                         range=(1, 10**6), quick=20)
    batch_size: int = setting(64, "answers sampled per PPO iteration", range=(1, 65536),
                              quick=16)
    minibatch_size: int = setting(16, "answers per optimiser step; must divide batch_size",
                                  range=(1, 65536), quick=8)
    ppo_epochs: int = setting(4, "passes over each batch of answers", range=(1, 100), quick=2)
    lr: float = setting(1e-4, "learning rate of Adam for policy and value head",
                        range=(1e-8, 1.0))
    temperature: float = setting(1.0, "sampling temperature of the rollouts (log-probs use "
                                 "the same one)", range=(1e-3, 10.0))
    max_new_tokens: int = setting(40, "longest answer in tokens", range=(1, 4096), quick=24)
    missing_eos_penalty: float = setting(-1.0, "added to the score of answers that never end "
                                         "(0: off)", range=(-100.0, 0.0))
    gamma: float = setting(1.0, "discount factor over answer tokens", range=(0.0, 1.0))
    lam: float = setting(0.95, "GAE lambda: 0 trusts the value head, 1 the sampled rewards",
                         range=(0.0, 1.0))
    cliprange: float = setting(0.2, "epsilon of the clipped policy ratio 1 +- epsilon",
                               range=(1e-6, 1.0))
    cliprange_value: float = setting(0.2, "how far a value may move from its old value before "
                                     "its loss is clipped", range=(1e-6, 100.0))
    vf_coef: float = setting(0.1, "weight of the value loss in the total loss",
                             range=(0.0, 100.0))
    kl_coef: float = setting(0.05, "initial beta: weight of the per-token KL penalty",
                             range=(0.0, 100.0))
    kl_estimator: str = setting("k1", "per-token KL estimate in the reward (see kl.py)",
                                choices=("k1", "k3"))
    target_kl: float = setting(6.0, "KL per answer (nats) the adaptive controller aims at; "
                               "0: keep beta fixed", range=(0.0, 1000.0))
    kl_horizon: int = setting(10000, "answers over which beta may change by up to 20%",
                              range=(1, 10**9))
    whiten_rewards: bool = setting(False, "whiten the per-token rewards before GAE")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size % self.minibatch_size:
            raise SettingsError(f"PPOConfig.minibatch_size = {self.minibatch_size} must divide "
                                f"batch_size = {self.batch_size}.")


# ---------------------------------------------------------------- masked statistics

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (a scalar)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum()


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over the positions where mask is 1; unbiased divides by n - 1."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError("the unbiased variance needs at least 2 positions under the mask.")
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the mask; shift_mean=False keeps the mean (rewards keep their sign).

    Positions outside the mask get whatever the formula gives; later steps mask them out.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


# ---------------------------------------------------------------- rewards

def apply_missing_eos_penalty(scores: torch.Tensor, ended: torch.Tensor,
                              penalty: float) -> torch.Tensor:
    """Add `penalty` (e.g. -1.0) to the score of each answer that never produced its end token.

    scores: (batch,); ended: (batch,) bool. Returns a new tensor.
    """
    return scores + penalty * (~ended.bool()).to(scores.dtype)


def kl_penalised_rewards(score: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float, estimator: str = "k1"
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * KL estimate at every token, plus the reward model's
    score at the last real token of each answer (lm-human-preferences).

    score: (batch,); logprobs, ref_logprobs, mask: (batch, seq). Returns rewards (batch, seq),
    0 on padding, and kl (batch, seq), the per-token KL estimate (0 on padding).
    """
    kl, _ = sequence_kl(logprobs, ref_logprobs, mask, estimator)   # (batch, seq)
    rewards = -kl_coef * kl                                        # (batch, seq)
    lengths = mask.sum(-1).long()                                  # (batch,)
    if (lengths == 0).any():
        raise ValueError("every answer needs at least one real token (a row of mask is all 0).")
    last = lengths - 1                                             # assumes right padding
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += score.to(rewards.dtype)
    return rewards, kl


# ---------------------------------------------------------------- advantages

def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016), backwards over the answer.

    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1}.
    Values after the last real token count as 0 (the answer has ended). rewards, values,
    mask: (batch, seq). Returns advantages and returns = advantages + values, both
    (batch, seq), 0 on padding. No gradient flows through them.
    """
    mask = mask.to(values.dtype)
    rewards, values = (rewards * mask).detach(), (values * mask).detach()
    advantages = torch.zeros_like(values)                          # (batch, seq)
    next_value = next_advantage = torch.zeros_like(values[:, 0])   # (batch,)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


# ---------------------------------------------------------------- losses

def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate objective of PPO (Schulman et al., 2017), as a loss to minimise.

    ratio = pi(a) / pi_old(a); loss = masked mean of max(-A * ratio, -A * clip(ratio, 1 +- eps)).
    Returns loss, clipfrac (share of tokens where the clipped term won) and approx_kl, the
    masked mean of 0.5 * (logprobs - old_logprobs)^2: the k2 estimator of KL(old || new).
    """
    log_ratio = logprobs - old_logprobs                            # (batch, seq)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((pg_losses_clipped > pg_losses).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio ** 2, mask)
    return loss, clipfrac, approx_kl


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 * masked mean of max((v - R)^2, (v_clipped - R)^2), where
    v_clipped = old_values + clip(v - old_values, -c, c). Returns loss and clipfrac.
    """
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value,
                                              cliprange_value)
    vf_losses = (values - returns) ** 2                            # (batch, seq)
    vf_losses_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((vf_losses_clipped > vf_losses).float(), mask)
    return loss, clipfrac


# ---------------------------------------------------------------- KL controllers

class FixedKLController:
    """beta stays at its initial value."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """Adaptive beta of Ziegler et al. (2019): move the KL per answer towards `target`.

    error = clip(current_kl / target - 1, -0.2, 0.2);
    beta <- beta * (1 + error * n_steps / horizon),
    where n_steps is the number of answers in the batch just used.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"need target > 0 and horizon > 0; got {target}, {horizon}.")
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
