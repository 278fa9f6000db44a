"""RL without a critic: REINFORCE with a baseline, RLOO and GRPO, beside PPO's pieces.

PPO (ppo.py) learns a value head to tell good tokens from bad. The methods most RL on
language models has used since 2024 drop it and get their baseline from other answers to the
same prompt instead: sample k answers per prompt, score each once, and compare each answer with
its siblings. Every tensor of answer tokens is (batch, seq) with a `mask` as in ppo.py; the k
answers of one prompt are consecutive rows, so scores reshape to (prompts, k).

    REINFORCE with a baseline   A = score - b             (b: e.g. the batch's mean score)
    RLOO (Ahmadian et al., 2024) A_i = score_i - mean of the other k - 1 scores
    GRPO (Shao et al., 2024)     A_i = (score_i - group mean) / group std;
                                 Dr. GRPO (Liu et al., 2025) drops the division by the std

The advantage is one number per answer, given to every token of it. The losses differ in
where the KL to the reference goes (PPO and RLOO: subtracted from the score; GRPO: added to the
loss, estimated with k3 per token) and in how per-token losses become one number
(`aggregate`): per sequence, then over sequences (GRPO's paper); over all tokens of the batch
(DAPO, Yu et al., 2025); or divided by a constant (Dr. GRPO).
"""
from __future__ import annotations

import torch

from .kl import k3

AGGREGATIONS = ("sequence", "token", "constant")


def _groups(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores (prompts * k,) -> (prompts, k): the k answers of a prompt are consecutive."""
    if scores.dim() != 1 or k < 2 or scores.numel() % k:
        raise ValueError(f"scores must be 1-D, k answers per prompt in a row, k >= 2; got shape "
                         f"{tuple(scores.shape)} and k = {k}.")
    return scores.view(-1, k)


# ---------------------------------------------------------------- advantages (one per answer)

def reinforce_advantages(scores: torch.Tensor, baseline: float | torch.Tensor | None = None
                         ) -> torch.Tensor:
    """REINFORCE with a baseline (Williams, 1992): score - baseline, one per answer. The
    baseline defaults to the batch's mean score; any baseline that does not depend on the
    answer leaves the gradient unbiased and only changes its variance."""
    baseline = scores.mean() if baseline is None else baseline
    return (scores - baseline).detach()


def rloo_advantages(scores: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO: each answer's score minus the mean score of the other k - 1 answers to its
    prompt. The baseline never includes the answer itself, so the estimate stays unbiased.
    scores: (prompts * k,); returns the same shape."""
    groups = _groups(scores, k)                                     # (prompts, k)
    others = (groups.sum(-1, keepdim=True) - groups) / (k - 1)      # mean of the other k - 1
    return (groups - others).reshape(-1).detach()


def grpo_advantages(scores: torch.Tensor, k: int, scale: bool = True,
                    eps: float = 1e-4) -> torch.Tensor:
    """GRPO: (score - mean of the prompt's k scores) / (their standard deviation + eps).
    scale=False is Dr. GRPO: no division, since dividing by the std gives prompts whose
    answers all score alike (too easy or too hard) the largest weights. The std is the
    sample standard deviation (n - 1), as in TRL. scores: (prompts * k,)."""
    groups = _groups(scores, k)                                     # (prompts, k)
    advantages = groups - groups.mean(-1, keepdim=True)
    if scale:
        advantages = advantages / (groups.std(-1, keepdim=True) + eps)
    return advantages.reshape(-1).detach()


# ---------------------------------------------------------------- from tokens to one loss

def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str = "sequence",
              max_tokens: int | None = None) -> torch.Tensor:
    """One loss from per-token losses (batch, seq), over the real tokens of `mask`.

    "sequence": mean over each answer's tokens, then over answers (GRPO's paper): a token of
        a short answer weighs more than a token of a long one;
    "token": sum over all real tokens / their number (DAPO): every token weighs the same;
    "constant": sum over all real tokens / (batch * max_tokens) (Dr. GRPO): the same as
        "token" up to a constant that does not depend on the lengths (default max_tokens:
        seq, the padded length).
    """
    mask = mask.to(per_token.dtype)
    lengths = mask.sum(-1)
    if (lengths == 0).any():
        raise ValueError("every answer needs at least one real token (a row of mask is all 0).")
    total = per_token * mask
    if how == "sequence":
        return (total.sum(-1) / lengths).mean()
    if how == "token":
        return total.sum() / lengths.sum()
    if how == "constant":
        return total.sum() / (per_token.shape[0] * (max_tokens or per_token.shape[1]))
    raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}.")


def reinforce_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   how: str = "sequence") -> torch.Tensor:
    """The REINFORCE (and RLOO) loss: -advantage * log-probability of each answer token,
    aggregated (`aggregate`). One advantage per answer, (batch,), broadcast to its tokens.
    Its gradient is the policy gradient; no ratio, no clipping: one step per batch."""
    return aggregate(-advantages.unsqueeze(-1) * logprobs, mask, how)


def clipped_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                 mask: torch.Tensor, cliprange: float, how: str = "sequence") -> torch.Tensor:
    """PPO's clipped surrogate (ppo.policy_loss) with one advantage per answer (batch,),
    broadcast to its tokens, aggregated (`aggregate`). What RLOO and REINFORCE minimise when
    they take several steps on one batch: at the first step the ratio is 1 and this is
    `reinforce_loss`'s gradient; after it, the ratio keeps each step near the sampling policy."""
    ratio = torch.exp(logprobs - old_logprobs)
    advantages = advantages.unsqueeze(-1)                          # (batch, 1)
    surrogate = torch.max(-advantages * ratio,
                          -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange))
    return aggregate(surrogate, mask, how)


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, cliprange: float, kl_coef: float,
              how: str = "sequence") -> tuple[torch.Tensor, torch.Tensor]:
    """The GRPO loss per token: PPO's clipped surrogate with one advantage per answer (batch,),
    plus kl_coef times the k3 estimate of KL(policy || reference) at that token (the KL in
    the loss, not in the reward), aggregated (`aggregate`). Returns the loss and the mean
    per-token KL estimate.

    At the first step on a batch the ratio is 1 and GRPO's advantages average 0 within each
    prompt, so the surrogate term is near 0 while its gradient, sum of A * grad log pi, is not.
    """
    kl = k3(logprobs, ref_logprobs)                                # (batch, seq)
    loss = (clipped_loss(logprobs, old_logprobs, advantages, mask, cliprange, how)
            + kl_coef * aggregate(kl, mask, how))                  # aggregate is linear
    with torch.no_grad():
        mean_kl = aggregate(kl, mask, "token")
    return loss, mean_kl
