"""Evaluating a policy: answer held-out questions, grade every answer with the gold scorer.

Taught in notebooks/01_pretraining.ipynb; chapters 02 and 06 compare models with it.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from .generation import generate
from .gold import gold_score
from .kl import sample_with_kl
from .reward_model import score_answers
from .world import Question


def evaluate_answers(questions: list[Question], answers: list[str]) -> pd.DataFrame:
    """One row per answer: the question, its kind, the answer, the four criteria and the total."""
    rows = []
    for q, a in zip(questions, answers, strict=True):
        rows.append({"question": q.text, "question_kind": q.kind, "answer": a,
                     **gold_score(q, a).as_dict()})
    return pd.DataFrame(rows)


def evaluate_policy(model, tokenizer, questions: list[Question], **generate_kwargs) -> pd.DataFrame:
    """Generate an answer to each question and grade it (see `evaluate_answers`)."""
    answers = generate(model, tokenizer, [q.text for q in questions], **generate_kwargs)
    return evaluate_answers(questions, answers)


def evaluate_with_reward(policy, tokenizer, reward_model, rm_tokenizer, reference, questions,
                         seed: int, max_new_tokens: int = 40) -> pd.DataFrame:
    """Answer `questions` (sampled at temperature 1, seeded) and grade each answer: the gold
    rubric (`evaluate_answers`), `reward` (the reward model's normalised score) and
    `kl` (k1 estimate of KL from `reference` in nats, `kl.sample_with_kl`). Runs on a forked
    random state, so measuring in the middle of training does not change the training."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        texts = [q.text for q in questions]
        answers, kl = sample_with_kl(policy, reference, tokenizer, texts,
                                     max_new_tokens=max_new_tokens)
    graded = evaluate_answers(questions, answers)
    graded["reward"] = score_answers(reward_model, rm_tokenizer, texts, answers).tolist()
    graded["kl"] = kl.tolist()
    return graded


def unigram_perplexity(train_tokens: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of the best model that ignores context: each token's frequency in the
    training tokens (add-one smoothed), evaluated on `targets`. A language model must beat it
    to show it learned anything from context."""
    counts = torch.bincount(train_tokens.flatten(), minlength=vocab_size).double() + 1.0
    log_probs = (counts / counts.sum()).log()
    return math.exp(-log_probs[targets].mean().item())
