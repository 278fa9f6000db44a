"""Best-of-n: the analytic KL against exact and Monte-Carlo computations, and best-of-n on
tiny models (the chosen answer is the best of its n, n = 1 is plain sampling)."""
import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lab.best_of_n import best_of_n, best_of_n_kl, best_of_n_log_ratios
from rlhf_lab.generation import generate
from rlhf_lab.kl import kl_categorical
from rlhf_lab.reward_model import score_answers
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World, format_dialogue

# ---------------------------------------------------------------- the analytic KL


def best_of_n_distribution(p: torch.Tensor, n: int) -> torch.Tensor:
    """Exact law of the best of n draws from p, outcomes sorted by rising reward (all
    rewards distinct): P(best = x_i) = F(i)^n - F(i-1)^n, F the cumulative of p."""
    cdf = p.cumsum(0)
    return cdf ** n - (cdf - p) ** n


def test_best_of_n_kl_by_hand():
    assert best_of_n_kl(1) == 0.0                                   # log 1 - 0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)      # 0.19315
    assert best_of_n_kl(2) == pytest.approx(0.19315, abs=1e-5)
    assert best_of_n_kl(64) == pytest.approx(3.17451, abs=1e-5)     # 4.15888 - 0.98438
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="whole number >= 1"):
            best_of_n_kl(bad)


@pytest.mark.parametrize("n", [2, 4, 16, 64])
def test_best_of_n_kl_is_exact_when_outcomes_are_many(n):
    # 100,000 equally likely answers with distinct rewards: the exact KL of the best-of-n
    # law from the base differs from the formula by less than 1e-6 nats (measured: < 1e-7).
    m = 100_000
    p = torch.full((m,), 1.0 / m, dtype=torch.float64)
    exact = kl_categorical(best_of_n_distribution(p, n), p).item()
    assert exact == pytest.approx(best_of_n_kl(n), abs=1e-6)


@pytest.mark.parametrize("n", [2, 8, 32])
def test_best_of_n_kl_matches_monte_carlo_best_of_n_draws(n):
    # Continuous base policy (every answer unlikely): draw n uniform "rewards", keep the
    # largest u. The best-of-n density over the base is n u^(n-1), so each draw's log ratio
    # is log n + (n - 1) log u; its mean over 200,000 draws estimates the KL. Tolerance:
    # 5 standard errors of that mean.
    g = torch.Generator().manual_seed(0)
    u = torch.rand(200_000, n, generator=g, dtype=torch.float64).max(1).values
    log_ratio = math.log(n) + (n - 1) * u.log()
    standard_error = log_ratio.std().item() / math.sqrt(len(u))
    assert log_ratio.mean().item() == pytest.approx(best_of_n_kl(n), abs=5 * standard_error)


def test_sampled_kl_of_best_of_n_matches_the_exact_law_where_answers_repeat():
    """Four answers, probabilities 0.7, 0.2, 0.08, 0.02, rewards rising: answers repeat, so
    the formula over-states the KL. The estimate from samples (shares F from 2,000 other
    answers per question, 20,000 questions) lands on the exact KL of the best-of-4 law,
    within 5 standard errors (plus the small bias of estimating F from finite samples)."""
    p = torch.tensor([0.7, 0.2, 0.08, 0.02], dtype=torch.float64)
    n, questions, m = 4, 20_000, 2_000
    exact = kl_categorical(best_of_n_distribution(p, n), p).item()
    assert exact < best_of_n_kl(n) - 0.15                           # 0.47 against 0.64
    g = torch.Generator().manual_seed(0)
    window = torch.multinomial(p, questions * n, replacement=True, generator=g).view(questions, n)
    others = torch.multinomial(p, questions * m, replacement=True, generator=g).view(questions, m)
    ratios = best_of_n_log_ratios(window.max(1).values.double(), others.double(), n)
    standard_error = ratios.std().item() / math.sqrt(questions)
    assert ratios.mean().item() == pytest.approx(exact, abs=5 * standard_error + 0.01)


def test_sampled_kl_of_best_of_n_by_hand_and_for_a_policy_that_never_varies():
    # chosen reward 2; others 1, 2, 3 (m = 3): F_lt = 1/4, F_le = (1 + 1 + 1)/4 = 3/4
    # n = 2: (F_le^2 - F_lt^2) / (F_le - F_lt) = F_le + F_lt = 1, log 1 = 0
    one = best_of_n_log_ratios(torch.tensor([2.0]), torch.tensor([[1.0, 2.0, 3.0]]), 2)
    assert one.item() == pytest.approx(0.0, abs=1e-12)
    # chosen 3 above others 1, 2: F_lt = 2/3, F_le = 1; n = 2: 1 + 2/3 -> log(5/3)
    top = best_of_n_log_ratios(torch.tensor([3.0]), torch.tensor([[1.0, 2.0]]), 2)
    assert top.item() == pytest.approx(math.log(5 / 3))
    # a base policy that writes one answer: best-of-n is that policy, KL 0
    same = best_of_n_log_ratios(torch.zeros(5), torch.zeros(5, 7), 16)
    assert torch.allclose(same, torch.zeros(5, dtype=same.dtype))
    with pytest.raises(ValueError, match="need other answers"):
        best_of_n_log_ratios(torch.zeros(2), torch.zeros(2, 0), 4)


def test_best_of_n_draws_follow_the_exact_law_and_kl():
    # 50 answers with random probabilities; 200,000 best-of-8 draws (the largest index of 8
    # draws from p). Their frequencies match F(i)^n - F(i-1)^n (total variation < 0.01),
    # and the Monte-Carlo KL (mean of log q - log p over the draws) the exact one.
    g = torch.Generator().manual_seed(1)
    m, n, draws = 50, 8, 200_000
    p = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    p = p / p.sum()
    q = best_of_n_distribution(p, n)
    draws_of_n = torch.multinomial(p, draws * n, replacement=True, generator=g).view(draws, n)
    best = draws_of_n.max(1).values                                # (draws,) outcome index
    frequencies = torch.bincount(best, minlength=m).double() / draws
    assert 0.5 * (frequencies - q).abs().sum().item() < 0.01
    log_ratio = (q.log() - p.log())[best]
    exact = kl_categorical(q, p).item()
    standard_error = log_ratio.std().item() / draws ** 0.5
    assert log_ratio.mean().item() == pytest.approx(exact, abs=5 * standard_error)
    assert exact < best_of_n_kl(n)                  # 50 outcomes: already below the formula


@pytest.mark.parametrize("m", [2, 3, 5])
def test_best_of_n_kl_is_an_upper_bound_for_few_outcomes(m):
    # Few answers, random probabilities: the exact KL stays below the formula. With m
    # equally likely answers it can never exceed log m, however large n: the formula
    # overstates it more and more (m = 2, n = 64: 0.693 against 3.175).
    torch.manual_seed(m)
    for _ in range(20):
        p = torch.distributions.Dirichlet(torch.ones(m, dtype=torch.float64)).sample()
        for n in (2, 4, 16, 64):
            assert kl_categorical(best_of_n_distribution(p, n), p).item() < best_of_n_kl(n)
    uniform = torch.full((m,), 1.0 / m, dtype=torch.float64)
    for n in (2, 4, 16, 64):
        exact = kl_categorical(best_of_n_distribution(uniform, n), uniform).item()
        assert exact < best_of_n_kl(n) and exact <= math.log(m) + 1e-12
    # two equally likely answers, best of 2: q = (1/4, 3/4), KL = 1/4 log(1/2) + 3/4 log(3/2)
    half = torch.full((2,), 0.5, dtype=torch.float64)
    assert kl_categorical(best_of_n_distribution(half, 2), half).item() == pytest.approx(
        0.25 * math.log(0.5) + 0.75 * math.log(1.5))             # 0.13081 < 0.19315


# ---------------------------------------------------------------- best-of-n on tiny models

@pytest.fixture(scope="module")
def tiny():
    """A tiny untrained policy and reward model sharing one tokenizer, and 5 questions."""
    questions = World().split("train")[:5]
    tok = train_tokenizer([format_dialogue(q.text, "A cat is blue. I do not know.")
                           for q in questions] * 4, vocab_size=300)
    config = {"vocab_size": len(tok), "n_layer": 1, "n_embd": 32, "n_head": 2,
              "n_positions": 64, "bos_token_id": tok.eos_token_id,
              "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(**config)).eval()
    reward_model = GPT2ForSequenceClassification(GPT2Config(num_labels=1, **config)).eval()
    return policy, reward_model, tok, questions


def test_best_of_n_keeps_the_highest_scoring_of_n_answers(tiny):
    policy, reward_model, tok, questions = tiny
    result = best_of_n(policy, tok, reward_model, tok, questions, n=6, max_new_tokens=8,
                       batch_size=7)                                 # batches cut across questions
    assert result.scores.shape == (5, 6) and result.n == 6
    assert [len(c) for c in result.candidates] == [6] * 5
    assert torch.equal(result.best_scores, result.scores.max(1).values)
    assert result.kl == best_of_n_kl(6)
    # the chosen answers, scored again on their own, get exactly the best scores
    rescored = score_answers(reward_model, tok, result.questions, result.answers)
    assert torch.allclose(rescored, result.best_scores, atol=1e-5)
    # each candidate's score belongs to that candidate
    i = 3
    again = score_answers(reward_model, tok, [result.questions[i]] * 6, result.candidates[i])
    assert torch.allclose(again, result.scores[i], atol=1e-5)
    assert len({a for c in result.candidates for a in c}) > 5     # really sampled, not copied
    # the first k candidates make a best-of-k
    best_of_2 = result.first(2)
    assert best_of_2.n == 2 and best_of_2.candidates[0] == result.candidates[0][:2]
    assert torch.equal(best_of_2.best_scores, result.scores[:, :2].max(1).values)
    with pytest.raises(ValueError, match="must lie within the n = 6 candidates"):
        result.first(7)
    # disjoint windows are independent best-of-k draws: candidates 2, 3 and 4, 5
    second, third = result.window(2, 2), result.window(4, 2)
    assert second.candidates[1] == result.candidates[1][2:4]
    assert torch.equal(third.best_scores, result.scores[:, 4:6].max(1).values)
    assert third.answers[0] == result.candidates[0][4 + int(result.scores[0, 4:6].argmax())]
    with pytest.raises(ValueError, match="must lie within"):
        result.window(5, 2)
    # the sampled KL of a window reads the shares F off the other candidates
    assert torch.equal(result.log_ratios_outside(2, 2), best_of_n_log_ratios(
        second.best_scores, torch.cat([result.scores[:, :2], result.scores[:, 4:]], 1), 2))


def test_best_of_one_is_plain_sampling(tiny):
    policy, reward_model, tok, questions = tiny
    texts = [q.text for q in questions]
    result = best_of_n(policy, tok, reward_model, tok, texts, n=1, max_new_tokens=8, seed=3)
    assert result.answers == generate(policy, tok, texts, max_new_tokens=8, seed=3)
    assert result.best.tolist() == [0] * 5 and result.kl == 0.0
    assert torch.equal(result.best_scores, score_answers(reward_model, tok, texts, result.answers))
    # the same seed gives the same candidates; best-of-4 is never worse than its first sample
    four = best_of_n(policy, tok, reward_model, tok, texts, n=4, max_new_tokens=8, seed=3)
    assert four.candidates == best_of_n(policy, tok, reward_model, tok, texts, n=4,
                                        max_new_tokens=8, seed=3).candidates
    assert (four.best_scores >= four.scores[:, 0]).all()
    with pytest.raises(ValueError, match="whole number >= 1"):
        best_of_n(policy, tok, reward_model, tok, texts, n=0)
