"""KL divergence: exactly, from samples, and per token between a policy and its reference.

Taught in notebooks/05_kl_divergence.ipynb; chapter 06 (PPO) uses the per-token KL penalty.

KL(p || q) = E_{x~p}[log p(x) - log q(x)]: how many nats per sample, on average, tell
samples of p from samples of q. It is >= 0, 0 only when p = q, and not symmetric.
Over a whole vocabulary it can be computed exactly; for whole answers it can only be
estimated from samples. The estimators are named as in John Schulman's note
"Approximating KL Divergence" (2020): with r = q(x) / p(x) at a sample x ~ p,
    k1 = -log r             unbiased, high variance, often negative on single samples
    k2 = (log r)^2 / 2      biased, low variance, never negative
    k3 = (r - 1) - log r    unbiased, low variance, never negative
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from .model import position_ids

ATOL = 1e-5   # how far from 1 a probability vector's sum may be


def _check_distribution(name: str, x: torch.Tensor) -> None:
    if (x < 0).any():
        raise ValueError(f"{name} has negative entries; it is not a probability distribution.")
    sums = x.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=ATOL, rtol=0):
        raise ValueError(f"{name} does not sum to 1 over its last dimension (sums: {sums.tolist()}).")


def kl_categorical(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Exact KL(p || q) = sum_i p_i log(p_i / q_i) over the last dimension.

    p, q: (..., n) probability vectors -> (...). Terms with p_i = 0 add nothing
    (0 log 0 = 0); q_i = 0 where p_i > 0 makes KL infinite and raises ValueError.
    """
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    _check_distribution("p", p)
    _check_distribution("q", q)
    if ((q == 0) & (p > 0)).any():
        raise ValueError("q is 0 where p > 0: KL(p || q) is infinite (p puts mass where q never goes).")
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)        # xlogy(0, y) = 0


def kl_from_logits(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Exact KL(softmax(logits_p) || softmax(logits_q)) over the last dimension.

    logits: (..., vocab) -> (...). Works in log space (log_softmax), so huge logits do not
    overflow; tokens that p gives probability 0 (logit -inf) add nothing.
    """
    logp = torch.log_softmax(logits_p, dim=-1)                     # (..., vocab)
    logq = torch.log_softmax(logits_q, dim=-1)                     # (..., vocab)
    p = logp.exp()
    log_ratio = (logp - logq).masked_fill(p == 0, 0.0)             # 0 log 0 = 0, no nan gradients
    return (p * log_ratio).sum(-1)                                 # (...)


# Estimators from samples x ~ p. Inputs: log p(x), log q(x) at the samples, any shape;
# output: one estimate per sample, same shape. Their mean over samples estimates KL(p || q).

def k1(logprob_p: torch.Tensor, logprob_q: torch.Tensor) -> torch.Tensor:
    """-log r = log p(x) - log q(x): unbiased, high variance, negative where q(x) > p(x)."""
    return logprob_p - logprob_q


def k2(logprob_p: torch.Tensor, logprob_q: torch.Tensor) -> torch.Tensor:
    """(log r)^2 / 2: biased (it is exact only to second order), low variance, always >= 0."""
    return 0.5 * (logprob_q - logprob_p) ** 2


def k3(logprob_p: torch.Tensor, logprob_q: torch.Tensor) -> torch.Tensor:
    """(r - 1) - log r: unbiased (E_p[r] = 1), low variance, always >= 0 (log r <= r - 1)."""
    log_r = logprob_q - logprob_p
    return torch.expm1(log_r) - log_r                              # expm1(y) = e^y - 1, exact near 0


ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": k1, "k2": k2, "k3": k3}


def estimator_stats(p: torch.Tensor, q: torch.Tensor, n_samples: int = 100, n_trials: int = 1000,
                    generator: torch.Generator | None = None) -> pd.DataFrame:
    """Bias and spread of k1, k2, k3 for categorical p, q (1-D probability vectors).

    Each of `n_trials` trials averages an estimator over `n_samples` samples from p; the
    table has one row per estimator: estimator, true_kl, mean (over trials), bias
    (mean - true_kl) and std (across trials, i.e. the spread of one n_samples estimate).
    """
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    true_kl = kl_categorical(p, q).item()
    x = torch.multinomial(p, n_trials * n_samples, replacement=True, generator=generator)
    x = x.view(n_trials, n_samples)                                # (trials, samples)
    logprob_p, logprob_q = p.log()[x], q.log()[x]                  # (trials, samples)
    rows = []
    for name, estimator in ESTIMATORS.items():
        per_trial = estimator(logprob_p, logprob_q).mean(-1)       # (trials,)
        mean = per_trial.mean().item()
        rows.append(dict(estimator=name, true_kl=true_kl, mean=mean, bias=mean - true_kl,
                         std=per_trial.std().item()))
    return pd.DataFrame(rows)


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                estimator: str = "k1") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token KL estimates of the policy from the reference, and their sum per sequence.

    logprobs, ref_logprobs: (batch, seq) log-probabilities of the sampled tokens under the
    policy (which sampled them) and the reference; mask: (batch, seq), 1 on real answer
    tokens. Returns per_token (batch, seq), 0 where mask is 0, and per_sequence (batch,).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}.")
    values = ESTIMATORS[estimator](logprobs, ref_logprobs)         # (batch, seq)
    per_token = torch.where(mask.bool(), values, 0.0)              # padding may hold inf or nan
    return per_token, per_token.sum(-1)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """log P(token_t | tokens_<t) under a causal LM, for t = 1 .. seq-1: shape (batch, seq-1).

    Entry [:, t-1] belongs to input_ids[:, t]. Logits are divided by `temperature` (that of
    the sampling) before log_softmax. Position ids count real tokens only, so a left-padded
    sequence gets the same log-probs as it would alone. Gradients flow; the caller picks
    train/eval mode and torch.no_grad.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids(attention_mask)).logits       # (batch, seq, vocab)
    logp = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)         # (batch, seq-1, vocab)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)             # (batch, seq-1)


@torch.no_grad()
def sample_with_kl(policy, reference, tokenizer, prompts: list[str], *,
                   max_new_tokens: int = 40, temperature: float = 1.0, batch_size: int = 64
                   ) -> tuple[list[str], torch.Tensor]:
    """Sample one answer per prompt from `policy` and estimate KL(policy || reference) of each
    answer: the k1 sum over its tokens, end-of-text included. Returns answers and KL (n,), nats.

    The mean over many prompts is an unbiased estimate of the KL per answer, the x-axis of
    the reward-against-KL plots of chapters 07 and 08. Plain sampling at `temperature`, so
    the samples come from the distribution whose log-probs are used (notebooks/
    05_kl_divergence.ipynb shows how top-k sampling would break that and make the measured
    KL negative).
    """
    from .generation import sample

    answers, kls = [], []
    for start in range(0, len(prompts), batch_size):
        s = sample(policy, tokenizer, prompts[start:start + batch_size],
                   max_new_tokens=max_new_tokens, temperature=temperature)
        cut = s.prompt_length - 1
        logprobs = token_logprobs(policy, s.sequences, s.attention_mask, temperature)[:, cut:]
        ref_logprobs = token_logprobs(reference, s.sequences, s.attention_mask,
                                      temperature)[:, cut:]
        answers += s.answers
        kls.append(sequence_kl(logprobs, ref_logprobs, s.answer_mask)[1].cpu())
    return answers, torch.cat(kls)
