"""Comparisons: two answers to one question, for people (and simulated raters) to judge.

Taught in notebooks/03_human_feedback.ipynb; chapter 04 trains the reward model on the
ratings of these comparisons. Words used across the package: a *comparison* is two answers
to rate (this module); a *rating* is someone's choice on one (`rlhf_lab.feedback`); a
*preference* is a rated comparison as training data, chosen against rejected
(`rlhf_lab.preferences`). Answers come from several policies and temperatures (pretrained and
SFT, cool and hot), so that good and bad answers both appear and few pairs tie.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass

from . import artifacts
from .config import Settings, seed_everything, setting
from .feedback import pair_id
from .generation import generate
from .world import Question, World

DEFAULT_TEMPERATURES = (0.7, 1.0, 1.3)


def sample_comparisons(policies: dict, questions: list[Question], n_pairs: int,
                       temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES,
                       seed: int = 0) -> list[dict]:
    """`n_pairs` comparisons {prompt, answer_a, answer_b, model, model_b}, each on a random
    question.

    policies: name -> (model, tokenizer). Each answer comes from a random (policy,
    temperature); answers are generated in one batch per (policy, temperature). A comparison
    whose two answers are the same text is dropped, and so is one that repeats an earlier one
    (same prompt and answers: a policy that has converged writes stock answers), so fewer
    than n_pairs may return, each different (`feedback.pair_id`).
    """
    rng = random.Random(seed)
    sources = [(name, t) for name in sorted(policies) for t in temperatures]
    plan = [(rng.choice(questions), rng.choice(sources), rng.choice(sources)) for _ in range(n_pairs)]
    wanted = defaultdict(list)               # (policy, temperature) -> [(pair index, slot)]
    for i, (_, src_a, src_b) in enumerate(plan):
        wanted[src_a].append((i, "answer_a"))
        wanted[src_b].append((i, "answer_b"))
    answers: dict[tuple[int, str], str] = {}
    for k, ((name, temperature), slots) in enumerate(sorted(wanted.items())):
        model, tokenizer = policies[name]
        texts = generate(model, tokenizer, [plan[i][0].text for i, _ in slots],
                         temperature=temperature, seed=seed + k)
        answers.update(zip(slots, texts))
    pairs, seen = [], set()
    for i, (question, src_a, src_b) in enumerate(plan):
        a, b = answers[(i, "answer_a")], answers[(i, "answer_b")]
        key = pair_id(question.text, a, b)
        if a != b and key not in seen:
            seen.add(key)
            pairs.append({"prompt": question.text, "answer_a": a, "answer_b": b,
                          "model": f"{src_a[0]}@T{src_a[1]}", "model_b": f"{src_b[0]}@T{src_b[1]}"})
    return pairs


def save_comparisons(pairs: list[dict]) -> None:
    """Save the comparisons as artifact 'pairs' (one JSON object a line) for the next chapters."""
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    artifacts.save_dir("pairs", lambda d: (d / "pairs.jsonl").write_text(text, encoding="utf-8"),
                       {"pairs": len(pairs)})


def load_comparisons() -> list[dict]:
    """The comparisons chapter 03 saved (artifact 'pairs')."""
    path = artifacts.require("pairs") / "pairs.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class ComparisonsConfig(Settings):
    """Chapter 03: the comparisons to rate, answers of the pretrained and SFT models."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    n_pairs: int = setting(400, "comparisons to make (identical answers are dropped, so a few "
                           "fewer may come out)", range=(2, 1_000_000), quick=200)


def run_comparisons(cfg: ComparisonsConfig | None = None, save: bool = True,
                    build_missing: bool = False) -> list[dict]:
    """Chapter 03 without the clicking: comparisons of pretrained and SFT answers to training
    questions, saved as artifact 'pairs' (the models built first in quick mode if missing and
    `build_missing`). Notebook 03 calls `sample_comparisons` itself and adds your ratings."""
    cfg = cfg or ComparisonsConfig.for_mode()
    seed_everything(cfg.seed)
    policies = {name: artifacts.load_model(name, build_if_missing=build_missing)
                for name in ("pretrained", "sft")}
    pairs = sample_comparisons(policies, World().split("train"), cfg.n_pairs, seed=cfg.seed)
    if save:
        save_comparisons(pairs)
    return pairs
