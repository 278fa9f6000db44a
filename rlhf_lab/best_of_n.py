"""Best-of-n: sample n answers, keep the one the reward model likes best. No training at all.

Taught in notebooks/07_reward_hacking.ipynb, where best-of-n climbs the same reward-vs-KL
axis as PPO (the more answers it picks from, the harder it optimises the proxy reward), and
used again in notebooks/08_dpo.ipynb's frontier of PPO, DPO and best-of-n.

Best-of-n defines a policy of its own: the distribution of the chosen answer. How far it is
from the policy that sampled the candidates has a formula, `best_of_n_kl`, exact when answers
never repeat and an upper bound otherwise; `best_of_n_log_ratios` measures it from samples,
as every other method's KL is measured, using other answers of the base policy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .generation import generate
from .reward_model import score_answers


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base policy) = log n - (n - 1) / n, in nats per answer.

    Where it comes from: if no two answers tie in reward and every single answer is unlikely
    (the continuous limit), the chosen answer y has density n F(y)^(n-1) p(y), with F the
    base policy's probability of an answer rewarded no higher than y. Then KL = E[log n +
    (n - 1) log F(y)], and F(y) of the best of n is distributed like the largest of n
    uniform numbers, whose log has mean -1/n. So the formula is exact in that limit. When
    answers are few or some are likely (a policy that repeats one answer), the true KL is
    smaller and the formula is an upper bound (Beirami et al., 2024, "Theoretical guarantees
    on the best-of-n alignment policy"): with m equally likely answers it can never
    exceed log m, however large n.
    n = 1 gives 0; the KL grows like log n, so each doubling of n adds less than 0.7 nats.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1 (answers sampled per question), "
                         f"not {n!r}.")
    return math.log(n) - (n - 1) / n


def best_of_n_log_ratios(best_scores: torch.Tensor, other_scores: torch.Tensor, n: int,
                         tie: float = 1e-5) -> torch.Tensor:
    """log(best-of-n(y) / base(y)) of each chosen answer y, estimated from samples: its k1
    KL term, whose mean over questions estimates KL(best-of-n || base) (chapter 07).

    best_scores: (questions,) the reward of each chosen answer; other_scores: (questions, m)
    rewards of m more answers of the base policy to the same questions, independent of the
    chosen one (candidates outside its window). Sort the base policy's answers by reward: the
    best of n is y with probability F_le^n - F_lt^n, where F_lt is the base probability of an
    answer rewarded lower than y and F_le of one rewarded no higher (y and its repeats
    included), and the base writes y with probability F_le - F_lt. Both shares are estimated
    from the m other answers plus y itself; rewards within `tie` of y's count as y repeated.
    Unlike the formula, this sees repeats: a policy that often writes the same answer is
    closer to its best-of-n than log n - (n - 1) / n says.
    """
    best_of_n_kl(n)                                                   # checks n
    m = other_scores.shape[1]
    if m < 1:
        raise ValueError("need other answers of the base policy to estimate the shares F; "
                         "sample more candidates than the n of the window.")
    below = (other_scores < best_scores[:, None] - tie).sum(1).double()
    same = ((other_scores - best_scores[:, None]).abs() <= tie).sum(1).double()
    f_lt = below / (m + 1)
    f_le = (below + same + 1) / (m + 1)                              # y itself counted once
    return torch.log((f_le ** n - f_lt ** n) / (f_le - f_lt))


@dataclass
class BestOfN:
    """n candidate answers per question, their reward-model scores and the chosen one.

    questions: the question texts; candidates: n answers per question, in sampling order;
    scores: (questions, n) normalised reward-model scores; best: (questions,) index of the
    highest-scoring candidate of each question (the first one on a tie).
    """

    questions: list[str]
    candidates: list[list[str]]
    scores: torch.Tensor
    best: torch.Tensor

    @property
    def n(self) -> int:
        return self.scores.shape[1]

    @property
    def answers(self) -> list[str]:
        """The chosen answer of each question."""
        return [c[i] for c, i in zip(self.candidates, self.best.tolist(), strict=True)]

    @property
    def best_scores(self) -> torch.Tensor:
        """(questions,) the reward of each chosen answer: the largest of its n scores."""
        return self.scores.gather(1, self.best[:, None]).squeeze(1)

    @property
    def kl(self) -> float:
        """The KL of this best-of-n from the sampling policy, nats per answer (`best_of_n_kl`)."""
        return best_of_n_kl(self.n)

    def first(self, k: int) -> BestOfN:
        """Best-of-k from the first k candidates of each question. The candidates are
        independent samples, so this is a true best-of-k: one run at the largest n gives the
        whole curve for n = 1, 2, 4, ... without sampling again."""
        return self.window(0, k)

    def log_ratios_outside(self, start: int, k: int) -> torch.Tensor:
        """`best_of_n_log_ratios` of the best of candidates start .. start+k-1, the shares F
        estimated from every other candidate of the same question: (questions,)."""
        window = self.window(start, k)
        others = torch.cat([self.scores[:, :start], self.scores[:, start + k:]], dim=1)
        return best_of_n_log_ratios(window.best_scores, others, k)

    def window(self, start: int, k: int) -> BestOfN:
        """Best-of-k from candidates start .. start+k-1 of each question: disjoint windows are
        independent best-of-k draws (chapter 07 measures best-of-k with several answers per
        question this way, from one sampling run)."""
        if not (1 <= k and 0 <= start and start + k <= self.n):
            raise ValueError(f"a window of k = {k} candidates from {start} must lie within the "
                             f"n = {self.n} candidates; k >= 1, start >= 0, start + k <= n.")
        scores = self.scores[:, start:start + k]
        return BestOfN(self.questions, [c[start:start + k] for c in self.candidates], scores,
                       scores.argmax(1))


def best_of_n(policy, tokenizer, reward_model, rm_tokenizer, questions, n: int, *,
              max_new_tokens: int = 40, temperature: float = 1.0, batch_size: int = 64,
              seed: int | None = 0) -> BestOfN:
    """Sample n answers to each question from `policy`, score them all with the reward
    model (normalised, as PPO sees them), keep the best of each question's n.

    questions: texts or world Questions. All len(questions) * n answers are sampled in
    batches of `batch_size` (each question's n copies side by side) and scored in batches,
    so the cost is that of sampling and scoring len(questions) * n answers, and no more.
    `seed` makes the sampling repeatable (None: carry on from the current random state).
    """
    best_of_n_kl(n)                                                   # checks n
    texts = [q.text if hasattr(q, "text") else str(q) for q in questions]
    repeated = [t for t in texts for _ in range(n)]                   # (questions * n,)
    answers = generate(policy, tokenizer, repeated, max_new_tokens=max_new_tokens,
                       temperature=temperature, batch_size=batch_size, seed=seed)
    scores = score_answers(reward_model, rm_tokenizer, repeated, answers,
                           batch_size=batch_size).view(len(texts), n)  # (questions, n)
    candidates = [answers[i * n:(i + 1) * n] for i in range(len(texts))]
    return BestOfN(texts, candidates, scores, scores.argmax(1))
