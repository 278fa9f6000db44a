"""KL divergence: exact values by hand and by torch.distributions, the k1/k2/k3 estimators'
bias and sign against closed forms, per-token masking, and token log-probs of a real GPT-2."""
import math

import pytest
import torch
import transformers

from rlhf_lab.kl import (estimator_stats, k1, k2, k3, kl_categorical, kl_from_logits,
                         sequence_kl, token_logprobs)

N = 200_000


def mean_and_standard_error(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), values.std().item() / math.sqrt(values.numel())


# ---------------------------------------------------------------- exact KL

def test_kl_categorical_by_hand():
    # KL = 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1) = 0.5 (-0.587787) + 0.5 (1.609438) = 0.510826
    kl = kl_categorical(torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1]))
    assert kl.item() == pytest.approx(0.510826, abs=1e-6)
    # the other direction differs: 0.9 log(0.9/0.5) + 0.1 log(0.1/0.5) = 0.529007 - 0.160944
    assert kl_categorical(torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5])).item() == \
        pytest.approx(0.368064, abs=1e-6)


def test_kl_categorical_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(8, 5, generator=g, dtype=torch.float64).softmax(-1)
    q = torch.rand(8, 5, generator=g, dtype=torch.float64).softmax(-1)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=p),
                                                 torch.distributions.Categorical(probs=q))
    assert kl_categorical(p, q).shape == (8,)
    torch.testing.assert_close(kl_categorical(p, q), expected)


def test_kl_of_a_distribution_with_itself_is_zero_and_zero_mass_adds_nothing():
    p = torch.tensor([0.2, 0.0, 0.8])
    assert kl_categorical(p, p).item() == 0
    # 0 log 0 = 0: the middle term is dropped, KL = 0.2 log(0.2/0.5) + 0.8 log(0.8/0.4)
    expected = 0.2 * math.log(0.4) + 0.8 * math.log(2)
    assert kl_categorical(p, torch.tensor([0.5, 0.1, 0.4])).item() == pytest.approx(expected)


def test_kl_categorical_refuses_infinite_kl_and_non_distributions():
    with pytest.raises(ValueError, match="infinite"):
        kl_categorical(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="sum to 1"):
        kl_categorical(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="negative"):
        kl_categorical(torch.tensor([0.5, 0.5]), torch.tensor([1.5, -0.5]))


def test_kl_from_logits_equals_kl_of_the_softmaxes():
    g = torch.Generator().manual_seed(1)
    logits_p = 3 * torch.randn(2, 3, 20, generator=g, dtype=torch.float64)
    logits_q = 3 * torch.randn(2, 3, 20, generator=g, dtype=torch.float64)
    exact = kl_from_logits(logits_p, logits_q)
    assert exact.shape == (2, 3)
    torch.testing.assert_close(exact, kl_categorical(logits_p.softmax(-1), logits_q.softmax(-1)))
    assert kl_from_logits(logits_p, logits_p).abs().max() < 1e-12
    # shifting logits changes nothing, and huge logits do not overflow
    torch.testing.assert_close(kl_from_logits(logits_p + 1000, logits_q - 1000), exact)


def test_kl_from_logits_with_masked_tokens_is_finite_with_finite_gradients():
    logits_p = torch.tensor([1.0, float("-inf"), 0.0], requires_grad=True)   # top-k style mask
    logits_q = torch.tensor([0.0, 2.0, 1.0], requires_grad=True)
    kl = kl_from_logits(logits_p, logits_q)
    kl.backward()
    p = torch.tensor([math.e, 0.0, 1.0]) / (math.e + 1)            # softmax of [1, -inf, 0]
    q = logits_q.detach().softmax(-1)
    assert kl.item() == pytest.approx(kl_categorical(p, q).item(), abs=1e-6)
    assert torch.isfinite(logits_p.grad).all() and torch.isfinite(logits_q.grad).all()


# ---------------------------------------------------------------- estimators, Gaussian case

def gaussian_logprobs(mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ p = N(0, 1); log p(x) and log q(x) for q = N(mu, 1), up to the same constant."""
    x = torch.randn(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return -x ** 2 / 2, -(x - mu) ** 2 / 2


@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_k1_and_k3_are_unbiased_for_gaussians(mu):
    logprob_p, logprob_q = gaussian_logprobs(mu)
    true_kl = mu ** 2 / 2                          # KL(N(0,1) || N(mu,1)) = mu^2 / 2
    for estimator in (k1, k3):
        mean, se = mean_and_standard_error(estimator(logprob_p, logprob_q))
        assert abs(mean - true_kl) < 4 * se, (estimator.__name__, mean, true_kl, se)
    # single k1 samples are often negative (log r = mu x - mu^2/2 > 0 for x > mu/2); k3 never is
    assert (k1(logprob_p, logprob_q) < 0).float().mean() > 0.25
    assert (k3(logprob_p, logprob_q) >= 0).all() and (k2(logprob_p, logprob_q) >= 0).all()
    # and k3 varies less than k1 at these distances (Schulman's table)
    assert k3(logprob_p, logprob_q).std() < k1(logprob_p, logprob_q).std()


def test_k2_is_biased_when_the_distributions_are_far_apart():
    mu = 1.0
    logprob_p, logprob_q = gaussian_logprobs(mu)
    mean, se = mean_and_standard_error(k2(logprob_p, logprob_q))
    # E[k2] = E[(mu x - mu^2/2)^2] / 2 = mu^2/2 + mu^4/8: bias 0.125 here, about 65 standard errors
    assert mean - mu ** 2 / 2 > 20 * se
    assert mean == pytest.approx(mu ** 2 / 2 + mu ** 4 / 8, abs=4 * se)


# ---------------------------------------------------------------- estimators, categorical case

P = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
Q = torch.tensor([0.1, 0.1, 0.1, 0.7], dtype=torch.float64)


def test_k1_and_k3_are_unbiased_for_categoricals():
    x = torch.multinomial(P, N, replacement=True, generator=torch.Generator().manual_seed(0))
    logprob_p, logprob_q = P.log()[x], Q.log()[x]
    true_kl = kl_categorical(P, Q).item()          # 0.75 log 2.5 + 0.25 log(0.25/0.7) = 0.429813
    assert true_kl == pytest.approx(0.429813, abs=1e-6)
    for estimator in (k1, k3):
        mean, se = mean_and_standard_error(estimator(logprob_p, logprob_q))
        assert abs(mean - true_kl) < 4 * se, (estimator.__name__, mean, true_kl, se)
    mean, se = mean_and_standard_error(k2(logprob_p, logprob_q))
    assert mean - true_kl > 4 * se                 # k2 is biased here too
    assert (k1(logprob_p, logprob_q) < 0).any() and (k3(logprob_p, logprob_q) >= 0).all()


def test_estimator_stats_table():
    n_trials = 2000
    stats = estimator_stats(P, Q, n_samples=50, n_trials=n_trials,
                            generator=torch.Generator().manual_seed(0)).set_index("estimator")
    assert list(stats.columns) == ["true_kl", "mean", "bias", "std"]
    assert list(stats.index) == ["k1", "k2", "k3"]
    assert (stats.true_kl == kl_categorical(P, Q).item()).all()
    assert (stats.bias == stats["mean"] - stats.true_kl).all()
    se = stats["std"] / math.sqrt(n_trials)        # standard error of the mean over trials
    assert abs(stats.bias["k1"]) < 4 * se["k1"] and abs(stats.bias["k3"]) < 4 * se["k3"]
    assert stats.bias["k2"] > 4 * se["k2"]
    assert stats["std"]["k3"] < stats["std"]["k1"]


# ---------------------------------------------------------------- per-token KL

def test_sequence_kl_masks_padding_and_sums_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, 0.0],
                             [-0.5, -1.0, -3.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, float("-inf")],   # padding may hold anything
                                 [-0.5, -2.0, -1.0]])
    mask = torch.tensor([[1, 1, 0],
                         [1, 1, 1]])
    per_token, per_sequence = sequence_kl(logprobs, ref_logprobs, mask)
    # k1 = logprobs - ref_logprobs: row 0: 0.5, -1.0, (masked) -> sum -0.5
    #                               row 1: 0.0,  1.0, -2.0      -> sum -1.0
    torch.testing.assert_close(per_token, torch.tensor([[0.5, -1.0, 0.0], [0.0, 1.0, -2.0]]))
    torch.testing.assert_close(per_sequence, torch.tensor([-0.5, -1.0]))
    # k3 on the same tokens: (e^{-k1} - 1) + k1, never negative
    per_token3, per_sequence3 = sequence_kl(logprobs, ref_logprobs, mask, estimator="k3")
    expected = torch.tensor([[math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0, 0.0],
                             [0.0, math.exp(-1.0) - 1 + 1.0, math.exp(2.0) - 1 - 2.0]])
    torch.testing.assert_close(per_token3, expected)
    torch.testing.assert_close(per_sequence3, expected.sum(-1))
    with pytest.raises(ValueError, match="unknown estimator"):
        sequence_kl(logprobs, ref_logprobs, mask, estimator="k4")


# ---------------------------------------------------------------- token log-probs

@pytest.fixture(scope="module")
def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20, n_positions=16,
                                     bos_token_id=0, eos_token_id=0)   # default 50256 > vocab
    return transformers.GPT2LMHeadModel(config).eval()


def test_token_logprobs_match_a_manual_gather(tiny_gpt2):
    ids = torch.tensor([[3, 7, 1, 9, 4], [5, 5, 2, 8, 0]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits = tiny_gpt2(ids).logits                              # (2, 5, 20)
        got = token_logprobs(tiny_gpt2, ids, mask)
        hot = token_logprobs(tiny_gpt2, ids, mask, temperature=2.0)
    assert got.shape == (2, 4)
    logp = torch.log_softmax(logits, -1)
    manual = torch.stack([torch.stack([logp[b, t - 1, ids[b, t]] for t in range(1, 5)])
                          for b in range(2)])
    torch.testing.assert_close(got, manual)
    expected_hot = torch.log_softmax(logits / 2, -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(hot, expected_hot)
    assert not torch.allclose(hot, got)


def test_token_logprobs_ignore_left_padding(tiny_gpt2):
    pad = 0
    alone = torch.tensor([[3, 7, 1, 9]])
    batch = torch.tensor([[pad, pad, 3, 7, 1, 9],
                          [5, 5, 2, 8, 6, 11]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1],
                         [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        expected = token_logprobs(tiny_gpt2, alone, torch.ones_like(alone))      # (1, 3)
        padded = token_logprobs(tiny_gpt2, batch, mask)                          # (2, 5)
    # entries 2.. belong to tokens 7, 1, 9: the real tokens after the first
    torch.testing.assert_close(padded[:1, 2:], expected)


def test_token_logprobs_carry_gradients(tiny_gpt2):
    ids = torch.tensor([[3, 7, 1, 9]])
    token_logprobs(tiny_gpt2, ids, torch.ones_like(ids)).sum().backward()
    assert tiny_gpt2.lm_head.weight.grad is not None
    tiny_gpt2.zero_grad()
