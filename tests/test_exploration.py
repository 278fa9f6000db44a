"""Chapter 11's measurements: the probability of an answer the policy may never sample, the
chance that n samples hold it, and off-policy answers mixed into PPO's rollouts."""
import math
from types import SimpleNamespace

import pytest
import torch

from rlhf_lab.exploration import (
    OffPolicyAnswers,
    admission_logprob,
    admission_prefixes,
    chance_in_n,
    prefix_logprobs,
)
from rlhf_lab.generation import Samples, replace_answers
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World, format_dialogue

P_YES = 0.3          # the hand-built model answers "yes" with this probability, else "no"


class TwoAnswerModel(torch.nn.Module):
    """A bigram model built by hand: after the prompt's last token it says " yes" with
    probability P_YES and " no" otherwise, then ends; every other position is uniform."""

    def __init__(self, tokenizer):
        super().__init__()
        vocab = len(tokenizer)
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))
        last = tokenizer("User: q\nAssistant:").input_ids[-1]
        self.yes = tokenizer(" yes", add_special_tokens=False).input_ids
        self.no = tokenizer(" no", add_special_tokens=False).input_ids
        assert len(self.yes) == len(self.no) == 1
        with torch.no_grad():
            self.table[last] = -1e9
            self.table[last, self.yes[0]] = math.log(P_YES)
            self.table[last, self.no[0]] = math.log(1 - P_YES)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return SimpleNamespace(logits=self.table[input_ids])


@pytest.fixture(scope="module")
def two_answers():
    tok = train_tokenizer([format_dialogue("q", a) for a in ("yes", "no", "yes no")] * 30, 300)
    return TwoAnswerModel(tok), tok


def test_prefix_logprobs_are_the_hand_built_probabilities(two_answers):
    model, tok = two_answers
    got = prefix_logprobs(model, tok, ["q", "q"], ["yes", "no"])
    assert got.shape == (2, 2)
    assert torch.allclose(got.exp(), torch.tensor([[P_YES, 1 - P_YES]] * 2), atol=1e-6)
    # the two answers are all there is: their probabilities add up to one
    total = admission_logprob(model, tok, ["q"], prefixes=["yes", "no"])
    assert total.item() == pytest.approx(0.0, abs=1e-6)


def test_temperature_reshapes_the_probabilities_as_the_formula_says(two_answers):
    model, tok = two_answers
    for t in (0.5, 2.0):
        p_yes = P_YES ** (1 / t) / (P_YES ** (1 / t) + (1 - P_YES) ** (1 / t))
        got = prefix_logprobs(model, tok, ["q"], ["yes", "no"], temperature=t).exp()
        assert got[0, 0].item() == pytest.approx(p_yes, rel=1e-5)
        assert got.sum().item() == pytest.approx(1.0, rel=1e-5)


def test_a_prefix_that_extends_another_is_not_counted_twice(two_answers):
    model, tok = two_answers
    # "yes no" starts with "yes": counting both would add its probability twice
    got = prefix_logprobs(model, tok, ["q"], ["yes", "yes no", "no"])
    assert got.shape == (1, 2)
    assert admission_logprob(model, tok, ["q"], prefixes=["yes", "yes no", "no"]).item() \
        == pytest.approx(0.0, abs=1e-6)


def test_chance_in_n_by_hand():
    assert chance_in_n(0.5, 1) == pytest.approx(0.5)
    assert chance_in_n(0.5, 3) == pytest.approx(1 - 0.125)
    assert chance_in_n(1e-6, 64) == pytest.approx(64e-6, rel=1e-4)   # ~ n * p when tiny
    assert torch.allclose(chance_in_n(torch.tensor([0.1, 0.0]), 2),
                          torch.tensor([0.19, 0.0]))
    with pytest.raises(ValueError, match="at least 1"):
        chance_in_n(0.1, 0)


def test_admission_prefixes_cover_the_ways_the_demonstrations_admit():
    from rlhf_lab.corpus import admission_demonstrations
    prefixes = admission_prefixes()
    demos = admission_demonstrations(World(), 200)
    covered = [any(d["response"].startswith(p) for p in prefixes) for d in demos]
    assert all(covered), [d["response"] for d, c in zip(demos, covered) if not c][:3]


def test_replace_answers_writes_the_given_tokens_after_the_prompt(two_answers):
    _, tok = two_answers
    pad, eos = tok.pad_token_id, tok.eos_token_id
    yes = tok(" yes", add_special_tokens=False).input_ids
    prompt = torch.tensor([[pad, 7, 8], [5, 7, 8]])
    answers = torch.tensor([[9, eos, pad], [9, 9, 9]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    s = Samples(torch.cat([prompt, answers], 1), torch.cat([(prompt != pad).long(), mask], 1),
                mask, 3, ["a", "b"])
    longer = " ".join(["yes"] * 5)
    out = replace_answers(s, tok, {1: longer})
    n = len(yes) * 5 + 1                               # five " yes" and the end-of-text
    assert out.sequences.shape == (2, 3 + n)
    assert out.sequences[1, 3:].tolist() == yes * 5 + [eos]
    assert out.answer_mask[1].tolist() == [1] * n
    assert out.sequences[0, :6].tolist() == s.sequences[0].tolist()     # row 0 untouched
    assert out.answer_mask[0].tolist() == [1, 1] + [0] * (n - 2)
    assert out.attention_mask[0].tolist() == [0, 1, 1, 1, 1] + [0] * (n - 2)
    assert out.answers == ["a", longer]
    assert replace_answers(s, tok, {}) is s


def test_off_policy_answers_replace_the_last_rows_and_are_seeded():
    world = World()
    pool = [(q, "I do not know.") for q in world.split("train") if not q.answerable][:10]
    batch = list(range(8))
    mixed, replace = OffPolicyAnswers(pool, 3, seed=1).mix(batch)
    assert mixed[:5] == batch[:5] and set(replace) == {5, 6, 7}
    assert all(mixed[row] in [q for q, _ in pool] for row in replace)
    assert OffPolicyAnswers(pool, 3, seed=1).mix(batch) == (mixed, replace)
    with pytest.raises(ValueError, match="leaves no sampled answer"):
        OffPolicyAnswers(pool, 8).mix(batch)
    with pytest.raises(ValueError, match="empty"):
        OffPolicyAnswers([], 1)


def test_kl_regularised_optimum_by_hand_and_against_the_gibbs_form():
    from rlhf_lab.exploration import gap_for_half, kl_regularised_optimum
    # by hand: p = 0.01, gap = 0.2 * ln 99 gives exactly one half
    assert kl_regularised_optimum(0.01, 0.2 * math.log(99), 0.2) == pytest.approx(0.5)
    assert gap_for_half(0.01, 0.2) == pytest.approx(0.2 * math.log(99))
    # p = 5e-6, gap 0.6, beta 0.2: the odds grow by e^3 only
    assert kl_regularised_optimum(5e-6, 0.6, 0.2) == pytest.approx(5e-6 * math.exp(3), rel=1e-3)
    # the Gibbs form pi_ref * exp(r / beta) / Z over a three-answer world, where the two
    # other answers share one reward, is the two-outcome formula
    ref = torch.tensor([0.02, 0.5, 0.48], dtype=torch.float64)
    reward = torch.tensor([1.0, 0.3, 0.3], dtype=torch.float64)
    beta = 0.25
    gibbs = ref * torch.exp(reward / beta)
    gibbs = gibbs / gibbs.sum()
    assert kl_regularised_optimum(0.02, 0.7, beta) == pytest.approx(gibbs[0].item())
    assert kl_regularised_optimum(torch.tensor([0.02]), 0.7, beta).item() == pytest.approx(gibbs[0].item())
    with pytest.raises(ValueError, match="kl_coef must be > 0"):
        kl_regularised_optimum(0.1, 1.0, 0.0)
