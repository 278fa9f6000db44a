"""KTO: learning a policy straight from thumbs up and down (Ethayarajh et al., 2024).

For the thumbs chapter (issue 18; not yet taught by a notebook). DPO (dpo.py) needs pairs: two
answers to one question and which one is better. A thumb rates one answer alone, as chat
products ask for. KTO turns that into a loss with the implicit reward DPO uses,
r(x, y) = log pi(y|x) - log pi_ref(y|x), measured against a reference point z_0: how far the
policy has moved from the reference on answers in general.

    value of a thumbs-up answer:    lambda_D * sigmoid(beta * (r - z_0))
    value of a thumbs-down answer:  lambda_U * sigmoid(beta * (z_0 - r))
    loss = mean over answers of (lambda_y - value)

So an answer with a thumb up is pushed to gain more log-probability than the policy gains on
average, and one with a thumb down to lose more. z_0 is the KL of the policy from the
reference, estimated on mismatched pairs (each question with another question's answer), clamped
at 0 and given no gradient, as in the paper and TRL.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kto_reference_point(mismatched_logratios: torch.Tensor) -> torch.Tensor:
    """z_0: the mean of log pi(y'|x) - log pi_ref(y'|x) over answers y' written for other
    questions (an estimate of KL(pi || pi_ref)), clamped at 0, with no gradient. (batch,) -> ()."""
    return mismatched_logratios.detach().mean().clamp(min=0.0)


def kto_loss(logratios: torch.Tensor, thumbs_up: torch.Tensor, reference_point: torch.Tensor,
             beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The KTO loss and each answer's value.

    logratios: (batch,) log pi(y|x) - log pi_ref(y|x) of each rated answer; thumbs_up:
    (batch,) bool, True for a thumb up; reference_point: z_0 (`kto_reference_point`). The loss
    is the mean of lambda_y - value over the batch (lambda_D = desirable_weight for thumbs up,
    lambda_U = undesirable_weight for thumbs down). Returns (loss, values (batch,))."""
    if beta <= 0:
        raise ValueError(f"beta = {beta} must be > 0 (the paper uses 0.1; try 0.1 to 1).")
    up = thumbs_up.bool()
    margin = beta * (logratios - reference_point)                  # (batch,)
    values = torch.where(up, desirable_weight * torch.sigmoid(margin),
                         undesirable_weight * torch.sigmoid(-margin))
    weights = torch.where(up, torch.full_like(values, desirable_weight),
                          torch.full_like(values, undesirable_weight))
    return (weights - values).mean(), values


def kto_weights(n_up: int, n_down: int, ratio: float = 1.0) -> tuple[float, float]:
    """lambda_D, lambda_U for n_up thumbs up and n_down thumbs down, such that
    lambda_D * n_up / (lambda_U * n_down) = ratio (the paper recommends 1 to 4/3), with
    lambda_U = 1. Unbalanced thumbs (most people press only one of the two) are reweighted."""
    if n_up < 1 or n_down < 1:
        raise ValueError(f"KTO needs at least one thumb up and one down; got {n_up} up and "
                         f"{n_down} down. Rate more answers, or use the other kind of thumb too.")
    if not 1.0 <= ratio <= 4 / 3:
        raise ValueError(f"ratio = {ratio} is outside the paper's range [1, 4/3].")
    return ratio * n_down / n_up, 1.0


def thumbs_reward_loss(rewards: torch.Tensor, thumbs_up: torch.Tensor) -> torch.Tensor:
    """A reward model from thumbs: the scalar head's reward read as the log-odds of a thumb
    up, trained by binary cross-entropy, -mean(log sigmoid(r)) on thumbs up and
    -mean(log sigmoid(-r)) on thumbs down. Chapter 04's Bradley-Terry loss is the same
    likelihood applied to a difference of two rewards. (batch,), (batch,) bool -> ()."""
    return F.binary_cross_entropy_with_logits(rewards, thumbs_up.to(rewards.dtype))
