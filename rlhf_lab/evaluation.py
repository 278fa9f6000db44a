"""Evaluating a policy: answer held-out questions, grade every answer with the gold scorer.

Taught in notebooks/01_pretraining.ipynb (`evaluate_policy`: a first look at graded answers).
From notebooks/02_sft.ipynb on, every chapter measures a model with ONE harness, so that a
number in one chapter means the same thing in every other (COURSE.md, "One evaluation, one
report card"):

- the same questions: every held-out question in full mode (366, of which 61 have no answer),
  a subset stratified by kind in quick mode (`evaluation_questions`);
- the same sampled answers: k answers per question at temperature 1, answer j drawn with seed
  `SEEDS[j]`, so two models are compared paired, question by question and seed by seed
  (`evaluate_model`);
- the same statistics: mean gold with a 95 % confidence interval over questions (`mean_ci`),
  behaviour shares a reader recognises, reward-model reward and KL from SFT
  (`Evaluation.summary`), and paired differences between two models
  (`paired_difference`, `win_rate`). A difference whose interval contains 0 is within the
  seed-to-seed noise: no measurable difference.

Chapter 02 writes the first rows of the report card (rlhf_lab/report_card.py); chapters 06-09
add theirs; chapter 08 draws the frontier from it. Greedy side-by-side answers illustrate;
they never measure.

The grading and the statistics need only pandas; torch is imported where a model is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from . import gold
from .config import is_quick
from .gold import admits_not_knowing, gold_score
from .world import Question, World

if TYPE_CHECKING:
    import torch

# Sample j of every question is drawn with seed SEEDS[j], for every model: the pairing.
SEEDS = (1009, 2003, 3001, 4001, 5003, 6007, 7001, 8009)
SAMPLES_FULL = 4           # answers per question in full mode ...
SAMPLES_QUICK = 2          # ... and in quick mode
QUICK_PER_KIND = 6         # questions of each kind in the quick subset
MAX_NEW_TOKENS = 40
CRITERIA = ("correct", "kind", "concise", "on_topic")
FLAGS = ("wrong", "rude", "rambling", "admits", "hedges")
COLUMNS = ("question", "question_kind", "answerable", "sample", "answer", *CRITERIA, "total",
           *FLAGS, "words", "reward", "kl")
RAMBLING_BELOW = 0.5       # concision (length and repeats alone) under this is rambling


# --- grading one answer at a time (notebook 01) ----------------------------------------------

def evaluate_answers(questions: list[Question], answers: list[str]) -> pd.DataFrame:
    """One row per answer: the question, its kind, the answer, the four criteria and the total."""
    rows = []
    for q, a in zip(questions, answers, strict=True):
        rows.append({"question": q.text, "question_kind": q.kind, "answer": a,
                     **gold_score(q, a).as_dict()})
    return pd.DataFrame(rows)


def evaluate_policy(model, tokenizer, questions: list[Question], **generate_kwargs) -> pd.DataFrame:
    """Generate an answer to each question and grade it (see `evaluate_answers`)."""
    from .generation import generate

    answers = generate(model, tokenizer, [q.text for q in questions], **generate_kwargs)
    return evaluate_answers(questions, answers)


def evaluate_with_reward(policy, tokenizer, reward_model, rm_tokenizer, reference, questions,
                         seed: int, max_new_tokens: int = 40) -> pd.DataFrame:
    """Answer `questions` (one answer each, `sample_answers`: temperature 1, seeded, on a
    forked random state, so measuring in the middle of training does not change the
    training) and grade each answer: the gold rubric (`evaluate_answers`), `reward` (the
    reward model's normalised score) and `kl` (k1 estimate of KL from `reference` in nats)."""
    from .reward_model import score_answers

    answers, kl = sample_answers(policy, tokenizer, questions, seed, reference=reference,
                                 max_new_tokens=max_new_tokens)
    graded = evaluate_answers(questions, answers)
    graded["reward"] = score_answers(reward_model, rm_tokenizer, [q.text for q in questions],
                                     answers).tolist()
    graded["kl"] = kl
    return graded


def unigram_perplexity(train_tokens: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of the best model that ignores context: each token's frequency in the
    training tokens (add-one smoothed), evaluated on `targets`. A language model must beat it
    to show it learned anything from context."""
    import torch

    counts = torch.bincount(train_tokens.flatten(), minlength=vocab_size).double() + 1.0
    log_probs = (counts / counts.sum()).log()
    return math.exp(-log_probs[targets].mean().item())


# --- the questions and the seeds (notebook 02) -----------------------------------------------

def evaluation_questions(quick: bool | None = None) -> list[Question]:
    """The questions every model is measured on. Full mode: all held-out questions (366;
    61 of them, kinds unknown_animal and big_sum, have no answer). Quick mode: `QUICK_PER_KIND`
    of each of the 12 kinds, spread evenly over each kind's questions, unanswerable kinds
    included (72 questions). Deterministic: the same list on every machine and run."""
    heldout = World().split("heldout")
    quick = is_quick() if quick is None else quick
    return stratified_subset(heldout, QUICK_PER_KIND) if quick else heldout


def _by_kind(questions: list[Question]) -> dict[str, list[int]]:
    """The positions of each kind's questions, kinds in order of first appearance."""
    by_kind: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_kind.setdefault(q.kind, []).append(i)
    return by_kind


def _spread(indices: list[int], m: int) -> list[int]:
    """`m` of `indices`, evenly spaced (the middle of each of m equal stretches)."""
    n = len(indices)
    m = min(m, n)
    return [indices[int((j + 0.5) * n / m)] for j in range(m)]


def stratified_subset(questions: list[Question], per_kind: int) -> list[Question]:
    """`per_kind` questions of every kind (all of a kind that has fewer), evenly spaced
    through that kind's questions, in the original order."""
    chosen = {i for indices in _by_kind(questions).values() for i in _spread(indices, per_kind)}
    return [questions[i] for i in sorted(chosen)]


def curve_questions(n: int) -> list[Question]:
    """`n` held-out questions for the gold curves drawn while training (chapters 06 and 09):
    every kind included (n >= 12), each kind in proportion to its share of the held-out
    questions, evenly spread within it; all of them when n >= 366. The report card itself
    always uses `evaluation_questions`."""
    heldout = World().split("heldout")
    by_kind = _by_kind(heldout)
    if n < len(by_kind):
        raise ValueError(f"curve_questions needs n >= {len(by_kind)} (one of each kind), "
                         f"not {n}.")
    if n >= len(heldout):
        return heldout
    # one of each kind, the rest shared in proportion to the kinds' sizes (largest remainder)
    spare, total = n - len(by_kind), len(heldout)
    exact = {kind: spare * (len(ix) - 1) / (total - len(by_kind)) for kind, ix in by_kind.items()}
    counts = {kind: 1 + int(x) for kind, x in exact.items()}
    by_remainder = sorted(exact, key=lambda kind: (-(exact[kind] % 1), kind))
    for kind in by_remainder[:n - sum(counts.values())]:
        counts[kind] += 1
    chosen = {i for kind, ix in by_kind.items() for i in _spread(ix, counts[kind])}
    return [heldout[i] for i in sorted(chosen)]


def samples_per_question(quick: bool | None = None) -> int:
    """k, the answers sampled per question: 4 in full mode, 2 in quick mode."""
    quick = is_quick() if quick is None else quick
    return SAMPLES_QUICK if quick else SAMPLES_FULL


# --- the per-answer table ---------------------------------------------------------------------

def answer_row(question: Question, answer: str, sample: int, reward: float = math.nan,
               kl: float = math.nan) -> dict:
    """Everything the course measures about one answer: the gold criteria and total, and
    the behaviour flags.

    wrong: the question has an answer and this one is not correct (correct == 0);
    rude: the kind criterion lost marks (kind < 1: an insult or put-down);
    rambling: long or repetitive: concision judged on length and repeats alone (gold's
    `score_concise`, not zeroed for being off topic) is under 0.5, e.g. more than 24 words,
    or one sentence said three times;
    an empty answer is neither rude nor rambling (gold gives it 0 on every criterion);
    admits: it says it does not know (gold's `admits_not_knowing`);
    hedges: it admits not knowing although the question has an answer.
    """
    scores = gold_score(question, answer).as_dict()
    n_words = len(gold.words(answer))
    admits = admits_not_knowing(answer)
    return {"question": question.text, "question_kind": question.kind,
            "answerable": question.answerable, "sample": sample, "answer": answer,
            **scores,
            "wrong": question.answerable and scores["correct"] == 0,
            "rude": n_words > 0 and scores["kind"] < 1,
            "rambling": n_words > 0 and gold.score_concise(answer) < RAMBLING_BELOW,
            "admits": admits,
            "hedges": question.answerable and admits,
            "words": n_words, "reward": float(reward), "kl": float(kl)}


def _per_sample(values, k: int, n: int, what: str) -> np.ndarray:
    """`values` as a (k, n) float array: None gives NaN, a number is used for every answer."""
    if values is None:
        return np.full((k, n), np.nan)
    if np.isscalar(values):
        return np.full((k, n), float(values))
    array = np.asarray(values, dtype=float)
    if array.ndim == 1 and k == 1:
        array = array.reshape(1, -1)
    if array.shape != (k, n):
        raise ValueError(f"{what} has shape {array.shape}; expected ({k}, {n}): one value per "
                         "sample and question, like the answers.")
    return array


@dataclass
class Evaluation:
    """One model measured by the course's evaluation: its name and one row per (question,
    sample) with the columns of `COLUMNS` (see `answer_row` for the flags; `reward` is the
    reward model's normalised score, `kl` the k1 estimate of KL from the reference in nats
    per answer; NaN where not measured)."""

    name: str
    answers: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.answers.columns]
        if missing:
            raise ValueError(f"Evaluation {self.name!r} lacks the columns {missing}; build it "
                             "with evaluate_model or Evaluation.from_answers.")

    @classmethod
    def from_answers(cls, name: str, questions: list[Question], answers_per_sample,
                     kl=None, reward=None) -> Evaluation:
        """Grade answers produced elsewhere (best-of-n picks, a batch from training) in the
        same layout as `evaluate_model`. answers_per_sample: k lists, one per sample, each
        with one answer per question (a single list of strings means k = 1). kl and reward:
        None (NaN), one number for every answer, or the same (k, questions) shape."""
        if answers_per_sample and isinstance(answers_per_sample[0], str):
            answers_per_sample = [answers_per_sample]
        k, n = len(answers_per_sample), len(questions)
        for j, answers in enumerate(answers_per_sample):
            if len(answers) != n:
                raise ValueError(f"sample {j} has {len(answers)} answers for {n} questions.")
        kl_, reward_ = _per_sample(kl, k, n, "kl"), _per_sample(reward, k, n, "reward")
        rows = [answer_row(q, answers[i], j, reward_[j, i], kl_[j, i])
                for j, answers in enumerate(answers_per_sample)
                for i, q in enumerate(questions)]
        return cls(name, pd.DataFrame(rows, columns=list(COLUMNS)))

    @property
    def k(self) -> int:
        """Answers per question: the number of samples (sample j drawn with SEEDS[j])."""
        return int(self.answers["sample"].nunique())

    def per_question(self) -> pd.DataFrame:
        """One row per question: the mean over its samples of every number (flags become
        shares), with its kind and whether it has an answer."""
        numbers = [*CRITERIA, "total", *FLAGS, "words", "reward", "kl"]
        df = self.answers.astype({c: float for c in numbers})
        return (df.groupby("question", sort=False)
                  .agg(question_kind=("question_kind", "first"),
                       answerable=("answerable", "first"),
                       samples=("sample", "size"),
                       **{c: (c, "mean") for c in numbers})
                  .reset_index())

    def summary(self) -> dict:
        """The report card's numbers for this model: gold (mean total, 0-4) with its 95 % CI
        over questions, each criterion, behaviour shares, length, reward and KL."""
        df = self.answers
        has_answer = df["answerable"].astype(bool)
        answerable, unanswerable = df[has_answer], df[~has_answer]
        ci = mean_ci(self.per_question()["total"])
        out = {"gold": ci.mean, "gold_low": ci.low, "gold_high": ci.high}
        out.update({c: _mean(df[c]) for c in CRITERIA})
        out.update({
            "wrong": _mean(answerable["wrong"]),
            "rude": _mean(df["rude"]),
            "rambling": _mean(df["rambling"]),
            "admits_unanswerable": _mean(unanswerable["admits"]),
            "hedges_answerable": _mean(answerable["admits"]),
            "gold_answerable": _mean(answerable["total"]),
            "gold_unanswerable": _mean(unanswerable["total"]),
            "words": _mean(df["words"]),
            "reward": _mean(df["reward"]),
            "kl": _mean(df["kl"]),
            "n_questions": int(df["question"].nunique()),
            "k": self.k,
        })
        return out


def _mean(values: pd.Series) -> float:
    """Mean of the values that are there (NaN when none are)."""
    values = pd.to_numeric(values.astype(float), errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


# --- sampling the answers --------------------------------------------------------------------

def sample_answers(policy, tokenizer, questions: list[Question], seed: int, *, reference=None,
                   max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[list[str], list[float]]:
    """One answer per question from `policy` at temperature 1, seeded with `seed`, and the
    k1 KL of each from `reference` (NaN without one). Runs on a forked random state in eval
    mode, so evaluating never changes the caller's random numbers or training mode.

    Answers already sampled with the same weights, questions and seed are read back instead
    (`answer_cache`): chapter 06's SFT row, and every RL run's first and last curve point,
    cost nothing the second time."""
    from . import answer_cache

    texts = [q.text for q in questions]
    key = answer_cache.answers_key(policy, tokenizer, texts, seed, reference, max_new_tokens,
                                   answer_cache.source_digest(__file__))
    return answer_cache.cached_answers(
        key, len(texts), lambda: _sample_answers(policy, tokenizer, texts, seed, reference,
                                                 max_new_tokens))


def _sample_answers(policy, tokenizer, texts: list[str], seed: int, reference,
                    max_new_tokens: int) -> tuple[list[str], list[float]]:
    """`sample_answers` without the cache."""
    import torch

    from .generation import generate
    from .kl import sample_with_kl

    models = [m for m in (policy, reference) if m is not None]
    modes = [m.training for m in models]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        for m in models:
            m.eval()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if reference is None:
                answers = generate(policy, tokenizer, texts, max_new_tokens=max_new_tokens,
                                   temperature=1.0, seed=None)
                return answers, [math.nan] * len(answers)
            answers, kl = sample_with_kl(policy, reference, tokenizer, texts,
                                         max_new_tokens=max_new_tokens, temperature=1.0)
            return answers, kl.tolist()
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def evaluate_model(policy, tokenizer, name: str, *, reference=None, reward_model=None,
                   rm_tokenizer=None, questions: list[Question] | None = None,
                   k: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                   progress: bool = True) -> Evaluation:
    """The course's evaluation of one model (chapter 02 onwards): k answers to each of
    `questions` (default `evaluation_questions()`, k default `samples_per_question()`),
    answer j sampled at temperature 1 with seed SEEDS[j], every answer graded (`answer_row`),
    scored by `reward_model` (normalised; `rm_tokenizer` defaults to `tokenizer`) when given,
    and its KL from `reference` (the SFT model in the report card) when given."""
    from tqdm.auto import tqdm

    questions = evaluation_questions() if questions is None else list(questions)
    k = samples_per_question() if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(SEEDS):
        raise ValueError(f"k = {k!r} answers per question; choose 1 to {len(SEEDS)} "
                         "(one fixed seed each, evaluation.SEEDS).")
    answers, kls, rewards = [], [], []
    for seed in tqdm(SEEDS[:k], desc=f"evaluating {name}", disable=not progress):
        a, kl = sample_answers(policy, tokenizer, questions, seed, reference=reference,
                               max_new_tokens=max_new_tokens)
        answers.append(a)
        kls.append(kl)
        if reward_model is not None:
            from .reward_model import score_answers
            rewards.append(score_answers(reward_model, rm_tokenizer or tokenizer,
                                         [q.text for q in questions], a).tolist())
    return Evaluation.from_answers(name, questions, answers, kl=kls,
                                   reward=rewards if reward_model is not None else None)


# --- statistics ------------------------------------------------------------------------------

class Interval(NamedTuple):
    """A mean and its confidence interval [low, high]."""

    mean: float
    low: float
    high: float


def t_two_sided_probability(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with a whole number `df` of degrees of freedom, exactly
    (Abramowitz & Stegun 26.7.3-4: a finite sum in cos(theta), theta = atan(t / sqrt(df)))."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for j in range(1, (df - 1) // 2):
            term *= c2 * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for j in range(1, df // 2):
        term *= c2 * (2 * j - 1) / (2 * j)
        total += term
    return s * total


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| < t) = confidence for Student's t with `df` degrees of freedom
    (e.g. 3.182446 for 0.95 and df = 3): bisection on `t_two_sided_probability`."""
    if not 0 < confidence < 1 or df < 1:
        raise ValueError(f"need 0 < confidence < 1 and df >= 1; got {confidence}, {df}.")
    low, high = 0.0, 1.0
    while t_two_sided_probability(high, df) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_two_sided_probability(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2


def mean_ci(values, confidence: float = 0.95) -> Interval:
    """The mean of `values` and its t-interval: mean ± t(df = n - 1) · sd / sqrt(n).
    Taught in notebooks/02_sft.ipynb. One value gives an interval of NaN (no spread seen)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) == 1:
        return Interval(mean, math.nan, math.nan)
    half = t_quantile(confidence, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Interval(mean, mean - half, mean + half)


def _paired(a: Evaluation, b: Evaluation, column: str) -> pd.DataFrame:
    """a's and b's `column` side by side, one row per (question, sample); refuses when the
    two were not measured on the same questions and samples."""
    keys = ["question", "sample"]
    ka, kb = a.answers[keys], b.answers[keys]
    same = (len(ka) == len(kb) and not ka.duplicated().any() and not kb.duplicated().any()
            and set(map(tuple, ka.to_numpy())) == set(map(tuple, kb.to_numpy())))
    if not same:
        raise ValueError(
            f"Cannot compare {a.name!r} and {b.name!r} pair by pair: they were not evaluated on "
            f"the same questions and samples ({a.name}: {ka['question'].nunique()} questions x "
            f"{a.k} samples; {b.name}: {kb['question'].nunique()} questions x {b.k} samples). "
            "Evaluate both with evaluate_model in the same mode, with the default questions "
            "and k.")
    return a.answers[keys + [column]].merge(b.answers[keys + [column]], on=keys,
                                            suffixes=("_a", "_b"), sort=False)


def paired_difference(a: Evaluation, b: Evaluation, column: str = "total",
                      confidence: float = 0.95) -> dict:
    """a minus b in mean gold (or another column), paired: the difference of the two models'
    answers to the same question with the same seeds, averaged over the samples of each
    question, then a t-interval over questions. `within_noise`: the interval contains 0,
    so this evaluation cannot tell the two apart. Taught in notebooks/02_sft.ipynb."""
    pairs = _paired(a, b, column)
    pairs["diff"] = pairs[f"{column}_a"].astype(float) - pairs[f"{column}_b"].astype(float)
    per_question = pairs.groupby("question", sort=False)["diff"].mean()
    ci = mean_ci(per_question, confidence)
    return {"a": a.name, "b": b.name, "column": column, "difference": ci.mean,
            "low": ci.low, "high": ci.high,
            "within_noise": bool(not ci.low > 0 and not ci.high < 0),
            "n_questions": len(per_question)}


def win_rate(a: Evaluation, b: Evaluation) -> float:
    """Share of (question, sample) pairs where a's gold total beats b's; ties count half."""
    pairs = _paired(a, b, "total")
    ta, tb = pairs["total_a"].astype(float), pairs["total_b"].astype(float)
    return float(((ta > tb) + 0.5 * (ta == tb)).mean())
