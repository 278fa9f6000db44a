"""REINFORCE, RLOO and GRPO (critic_free.py): advantages and losses against hand-computed
values and against independent formulations written out from the papers' equations."""
import math
import statistics

import pytest
import torch

from rlhf_lab.critic_free import (
    aggregate,
    grpo_advantages,
    grpo_loss,
    reinforce_advantages,
    reinforce_loss,
    rloo_advantages,
)


def test_rloo_subtracts_the_mean_of_the_other_answers():
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 1.0, 3.0])   # two prompts, k = 4
    # by hand: 1 - (2+3+6)/3, 2 - (1+3+6)/3, 3 - (1+2+6)/3, 6 - (1+2+3)/3; then the second
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, 0 - 4 / 3, 0 - 4 / 3, 1 - 1, 3 - 1 / 3]
    assert rloo_advantages(scores, 4).tolist() == pytest.approx(expected)
    # independent formulation: k / (k - 1) * (score - group mean)
    groups = scores.view(2, 4)
    scaled = 4 / 3 * (groups - groups.mean(-1, keepdim=True))
    assert torch.allclose(rloo_advantages(scores, 4), scaled.reshape(-1))


def test_grpo_normalises_within_each_prompt_and_dr_grpo_does_not_divide():
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 0.0, 4.0, 5.0, 7.0])     # four prompts, k = 2
    plain = grpo_advantages(scores, 2, scale=False)
    assert plain.tolist() == pytest.approx([-1, 1, 0, 0, -2, 2, -1, 1])
    scaled = grpo_advantages(scores, 2, eps=1e-12)
    # by hand: group (1, 3) has mean 2 and sample std sqrt(2); (2, 2) has std 0 -> advantage 0
    assert scaled[:2].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])
    assert scaled[2:4].tolist() == [0.0, 0.0]
    # independent formulation, group by group with the statistics module
    k = 4
    scores = torch.tensor([0.3, -1.2, 2.5, 0.0, 1.0, 1.5, -0.5, 4.0])
    expected = []
    for group in scores.view(-1, k).tolist():
        mean, sd = statistics.mean(group), statistics.stdev(group)
        expected += [(x - mean) / (sd + 1e-4) for x in group]
    assert grpo_advantages(scores, k).tolist() == pytest.approx(expected, rel=1e-5)


def test_reinforce_baseline_defaults_to_the_batch_mean():
    scores = torch.tensor([1.0, 2.0, 6.0])
    assert reinforce_advantages(scores).tolist() == pytest.approx([-2.0, -1.0, 3.0])
    assert reinforce_advantages(scores, baseline=1.0).tolist() == pytest.approx([0.0, 1.0, 5.0])


def test_bad_groups_are_refused_with_the_shape_in_the_message():
    with pytest.raises(ValueError, match=r"shape \(5,\) and k = 2"):
        rloo_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="k >= 2"):
        grpo_advantages(torch.zeros(4), 1)


PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("how, by_hand", [
    ("sequence", (6 / 3 + 4 / 1) / 2),     # mean per answer, then over answers
    ("token", (1 + 2 + 3 + 4) / 4),        # over the 4 real tokens
    ("constant", (1 + 2 + 3 + 4) / (2 * 3)),   # over batch * max_tokens
])
def test_aggregations_against_hand_values(how, by_hand):
    assert aggregate(PER_TOKEN, MASK, how).item() == pytest.approx(by_hand)


def test_aggregation_names_the_choices():
    with pytest.raises(ValueError, match="sequence"):
        aggregate(PER_TOKEN, MASK, "mean")


def test_per_sequence_averaging_weighs_a_token_of_a_short_answer_more():
    """The length bias Dr. GRPO points out: same advantage, per-token gradient 1/(len * batch)
    under "sequence", the same for every token under "token"."""
    logprobs = torch.zeros(2, 3, requires_grad=True)
    reinforce_loss(logprobs, torch.tensor([1.0, 1.0]), MASK, "sequence").backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1 / 6] * 3, [-1 / 2, 0, 0]]))
    logprobs.grad = None
    reinforce_loss(logprobs, torch.tensor([1.0, 1.0]), MASK, "token").backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1 / 4] * 3, [-1 / 4, 0, 0]]))


def test_grpo_loss_is_near_zero_on_a_fresh_batch_but_its_gradient_is_not():
    logprobs = torch.full((2, 3), -1.0, requires_grad=True)
    old = ref = torch.full((2, 3), -1.0)
    advantages = grpo_advantages(torch.tensor([0.0, 1.0]), 2, scale=False)   # -0.5, +0.5
    mask = torch.ones(2, 3)
    loss, kl = grpo_loss(logprobs, old, ref, advantages, mask, cliprange=0.2, kl_coef=0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-7) and kl.item() == pytest.approx(0.0)
    loss.backward()
    # d/d logprob of -A * ratio at ratio 1 is -A; sequence mean: / (3 tokens * 2 answers)
    assert torch.allclose(logprobs.grad, torch.tensor([[0.5 / 6] * 3, [-0.5 / 6] * 3]))


def test_grpo_loss_matches_the_deepseekmath_objective_written_token_by_token():
    generator = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(4, 5, generator=generator) * 3
    old = logprobs + 0.3 * torch.randn(4, 5, generator=generator)
    ref = logprobs + 0.5 * torch.randn(4, 5, generator=generator)
    advantages = torch.tensor([1.5, -0.5, 0.2, -1.2])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    eps, beta = 0.2, 0.04
    objective = 0.0
    for i in range(4):
        n = int(mask[i].sum())
        per_answer = 0.0
        for t in range(n):
            ratio = math.exp(logprobs[i, t] - old[i, t])
            a = advantages[i].item()
            clipped = min(max(ratio, 1 - eps), 1 + eps)
            ref_over_pi = math.exp(ref[i, t] - logprobs[i, t])
            kl = ref_over_pi - math.log(ref_over_pi) - 1
            per_answer += min(ratio * a, clipped * a) - beta * kl
        objective += per_answer / n
    objective /= 4
    loss, _ = grpo_loss(logprobs, old, ref, advantages, mask, cliprange=eps, kl_coef=beta)
    assert loss.item() == pytest.approx(-objective, rel=1e-5)


def test_grpo_clipping_stops_the_gradient_of_a_token_that_moved_too_far():
    logprobs = torch.tensor([[0.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-0.5, -1.0]])       # first token's ratio e^0.5 = 1.65 > 1.2
    loss, _ = grpo_loss(logprobs, old, old, torch.tensor([1.0]), torch.ones(1, 2),
                        cliprange=0.2, kl_coef=0.0)
    loss.backward()
    assert logprobs.grad[0, 0].item() == 0.0 and logprobs.grad[0, 1].item() == pytest.approx(-0.5)
