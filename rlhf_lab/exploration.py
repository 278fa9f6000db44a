"""What the policy never samples: the probability of an answer, temperature, and exploration.

Taught in notebooks/11_exploration.ipynb. Reinforcement learning can only reinforce answers
the policy writes. Whether it ever writes one is a number we can compute exactly, without
sampling: the log-probability the policy gives it, token by token (teacher forcing). This
module computes it for "I do not know"-style openings, the chance that n samples contain
one, and what sampling at a temperature does to entropy, KL and that chance.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pandas as pd
import torch

from .dpo import all_sequence_logprobs
from .gold import admits_not_knowing, gold_score
from .preferences import SHIPPED_SAMPLE, chosen_rejected, ratings_to_examples
from .raters import SimulatedRater
from .scripted import WARM_OPENERS, make_answer
from .training import IGNORE, LMData, pad_rows
from .world import Question, format_prompt

# How the demonstrations (scripted.admission_demonstrations) start an admission, plainly or after a warm opener.
ADMISSION_OPENINGS = ("I do not know", "I don't know", "I have never heard", "I am not sure",
                      "I can only")


def admission_prefixes(openings=ADMISSION_OPENINGS, openers=WARM_OPENERS) -> list[str]:
    """Every way an answer may start admitting: each opening alone and after each opener."""
    return [*openings, *(f"{opener} {opening}" for opener in openers for opening in openings)]


def prefix_data(tokenizer, prompts: list[str], prefixes: list[str]) -> tuple[LMData, list[int]]:
    """One row per (prompt, prefix), prompt-major: the prompt in dialogue format, then the
    prefix's tokens as the start of the answer (no end-of-text: the answer may go on).
    Labels are IGNORE except on the prefix. Also returns the indices of the prefixes kept:
    a prefix whose tokens extend another's is dropped, so that the kept ones are disjoint
    events and their probabilities add up."""
    tokens = [tokenizer(" " + p, add_special_tokens=False).input_ids for p in prefixes]
    keep = [i for i, t in enumerate(tokens)
            if not any(j != i and len(u) <= len(t) and t[:len(u)] == u and (len(u) < len(t) or j < i)
                       for j, u in enumerate(tokens))]
    rows = []
    for prompt in prompts:
        prompt_ids = tokenizer(format_prompt(prompt)).input_ids
        rows += [(prompt_ids + tokens[i], [IGNORE] * len(prompt_ids) + tokens[i]) for i in keep]
    return pad_rows(rows, tokenizer.pad_token_id), keep


def prefix_logprobs(model, tokenizer, prompts: list[str], prefixes: list[str],
                    temperature: float = 1.0) -> torch.Tensor:
    """log pi_T(answer starts with prefix | prompt) for every prompt and kept prefix:
    (prompts, kept prefixes), by teacher forcing at sampling temperature T (logits / T)."""
    data, keep = prefix_data(tokenizer, prompts, prefixes)
    logprobs = all_sequence_logprobs(model, data, temperature=temperature)
    return logprobs.view(len(prompts), len(keep))


def admission_logprob(model, tokenizer, questions: list[Question] | list[str],
                      temperature: float = 1.0, prefixes: list[str] | None = None
                      ) -> torch.Tensor:
    """log P(the answer opens with an admission | question), one number per question:
    log of the sum over `admission_prefixes()` of their probabilities. A lower bound on the
    probability of admitting at all (an admission may also start otherwise), exact for the
    ways the demonstrations admit, and free of sampling noise: no sample is drawn."""
    prompts = [q.text if isinstance(q, Question) else q for q in questions]
    per_prefix = prefix_logprobs(model, tokenizer, prompts, prefixes or admission_prefixes(),
                                 temperature)
    return torch.logsumexp(per_prefix, dim=-1)


def chance_in_n(p, n: int):
    """The probability that n independent samples, each an admission with probability p,
    hold at least one: 1 - (1 - p)^n. (Best-of-n can only pick what one of its n drew.)"""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}.")
    if isinstance(p, torch.Tensor):
        return -torch.expm1(n * torch.log1p(-p))
    return -math.expm1(n * math.log1p(-p))


def kl_regularised_optimum(p, reward_gap, kl_coef: float):
    """The probability of an answer under the best policy KL-regularised RL can reach.

    Maximising E[r] - beta * KL(pi || pi_ref) has the solution pi*(y) = pi_ref(y) exp(r(y) / beta)
    / Z (chapter 08 derives DPO from it). With two outcomes, the answer (reference
    probability p) and everything else, whose reward is `reward_gap` lower:
    pi*(answer) = p e^(gap / beta) / (p e^(gap / beta) + 1 - p). Even the perfect optimiser
    multiplies the odds of the answer by e^(gap / beta), and no more."""
    if kl_coef <= 0:
        raise ValueError(f"kl_coef must be > 0 (the KL weight beta), not {kl_coef}.")
    if isinstance(p, torch.Tensor):
        return torch.sigmoid(torch.logit(p.double()) + reward_gap / kl_coef).to(p.dtype)
    log_odds = math.log(p) - math.log1p(-p) + reward_gap / kl_coef
    return 1 / (1 + math.exp(-log_odds))


def gap_for_half(p: float, kl_coef: float) -> float:
    """The reward gap at which `kl_regularised_optimum` gives the answer one half:
    beta * ln((1 - p) / p)."""
    return kl_coef * (math.log1p(-p) - math.log(p))


@dataclass
class OffPolicyAnswers:
    """Answers the policy did not write, mixed into every PPO rollout (`ppo_stage.train_ppo`).

    pool: (question, answer) pairs, e.g. the admissions raters preferred; per_batch: how
    many of each batch's questions are replaced by questions of the pool, their sampled
    answers by the pool's answer. The reward model scores them like any answer, so a good
    one gets a positive advantage and PPO raises its probability, though the policy would
    never have sampled it."""

    pool: list[tuple[Question, str]]
    per_batch: int
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.pool:
            raise ValueError("the pool of off-policy answers is empty.")
        if self.per_batch < 1:
            raise ValueError(f"per_batch must be at least 1, not {self.per_batch}.")
        self._rng = random.Random(self.seed)

    def mix(self, batch: list) -> tuple[list, dict[int, str]]:
        """The batch with its last `per_batch` questions replaced by drawn pool questions,
        and {row: answer} for those rows."""
        if self.per_batch >= len(batch):
            raise ValueError(f"per_batch = {self.per_batch} leaves no sampled answer in a "
                             f"batch of {len(batch)}; use fewer.")
        picks = self._rng.sample(self.pool, min(self.per_batch, len(self.pool)))
        batch, replace = list(batch), {}
        for j, (question, answer) in enumerate(picks):
            row = len(batch) - 1 - j
            batch[row], replace[row] = question, answer
        return batch, replace


# --- temperature: exploration by noise -------------------------------------------------------

@torch.no_grad()
def temperature_sweep(model, tokenizer, questions: list[Question], temperatures, *,
                      seed: int = 0, max_new_tokens: int = 40) -> pd.DataFrame:
    """What sampling at temperature T does, one row per T: one answer per question drawn
    at T (seeded, so every T sees the same random numbers). Columns:

    entropy: nats per answer token, of the distribution sampled from (logits / T);
    kl_from_t1: KL(pi_T || pi_1), nats per answer, the k1 estimate on the samples: how far
    the hotter sampler is from the model itself; gold: mean gold score (0-4); and, over
    the questions that have no answer, p_admit: mean probability that the answer opens with
    an admission (`admission_logprob` at T: exact, no sampling) and admits: the share of
    their samples that admit (`gold.admits_not_knowing`)."""
    from .generation import sample
    from .ppo import answer_logprobs, policy_step_outputs

    texts = [q.text for q in questions]
    no_answer = [i for i, q in enumerate(questions) if not q.answerable]
    if not no_answer:
        raise ValueError("temperature_sweep needs some questions without an answer, to "
                         "measure admissions; pass the evaluation's questions.")
    rows = []
    for t in temperatures:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            s = sample(model, tokenizer, texts, max_new_tokens=max_new_tokens, temperature=t)
        logprobs, _, entropy = policy_step_outputs(model, None, s.sequences, s.attention_mask,
                                                   s.prompt_length, t)
        logprobs_t1 = answer_logprobs(model, s.sequences, s.attention_mask, s.prompt_length)
        mask = s.answer_mask.float()
        p_admit = admission_logprob(model, tokenizer, [questions[i] for i in no_answer], t)
        rows.append({
            "temperature": t,
            "entropy": float((entropy * mask).sum() / mask.sum()),
            "kl_from_t1": float(((logprobs - logprobs_t1) * mask).sum(-1).mean()),
            "gold": sum(gold_score(q, a).total for q, a in zip(questions, s.answers))
                    / len(questions),
            "p_admit": float(p_admit.exp().mean()),
            "admits": sum(admits_not_knowing(s.answers[i]) for i in no_answer) / len(no_answer)})
    return pd.DataFrame(rows)


# --- answers the policy did not write ------------------------------------------------------

def rated_admissions(path=None) -> list[tuple[Question, str]]:
    """The admissions raters chose in the shipped sample ratings (data/feedback/sample.jsonl):
    (question, chosen answer) for each pair whose chosen answer admits not knowing on a
    question that has no answer. PPO can mix these into its rollouts (`OffPolicyAnswers`)."""
    from .feedback import load_ratings
    from .world import World

    world = World()
    pairs = chosen_rejected(ratings_to_examples(load_ratings(path or SHIPPED_SAMPLE)))
    out = []
    for row in pairs[pairs.target == 1.0].itertuples():
        question = world.lookup(row.prompt)
        if not question.answerable and admits_not_knowing(row.chosen):
            out.append((question, row.chosen))
    return out


# --- pairs that contain admissions (for DPO) -------------------------------------------------

HEDGES = ["I do not know.", "I am not sure.", "I don't know, sorry."]


def admission_pairs(policy, tokenizer, questions: list[Question], *, seed: int = 0,
                    rater: SimulatedRater | None = None) -> pd.DataFrame:
    """One rated pair per question: the policy's own answer against an admission it did not
    write, in random order, rated by `rater` (default: a simulated rater as noisy as the one
    of the shipped sample). On an unanswerable question the admission is a written one
    (`scripted.make_answer(question, "admit")`) and should win; on an answerable one it is
    a hedge ("I do not know.") and should lose, so DPO learns when to admit, not to admit.
    Returns prompt, chosen, rejected, target (`preferences.chosen_rejected`)."""
    from .generation import generate

    rng = random.Random(seed)
    rater = rater or SimulatedRater("admissions", temperature=0.5, seed=seed)
    own = generate(policy, tokenizer, [q.text for q in questions], seed=seed)
    records = []
    for question, answer in zip(questions, own):
        admission = (make_answer(question, "admit", rng) if not question.answerable
                     else rng.choice(HEDGES))
        a, b = (answer, admission) if rng.random() < 0.5 else (admission, answer)
        records.append(rater.rate_pair({"prompt": question.text, "answer_a": a, "answer_b": b},
                                       model="policy"))
    return chosen_rejected(ratings_to_examples(records))
