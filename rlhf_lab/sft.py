"""Supervised fine-tuning: the pretrained model learns from demonstrations what an answer looks like.

Taught in notebooks/02_sft.ipynb. The training loop is chapter 01's `train_lm`, unchanged; the
one new idea is the loss mask: prompt tokens get the label IGNORE, so the model is trained to
write answers, not to predict the user's questions.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import pandas as pd
import torch

from . import artifacts, report_card
from .causal_lm import context_length, load_causal_lm
from .config import DATA_DIR, Settings, seed_everything, setting
from .evaluation import Evaluation, evaluate_model
from .scripted import DEMO_ADMISSIONS, admission_demonstrations, mix_in_admissions
from .training import IGNORE, LMData, pad_rows, split_heldout, train_lm
from .world import World, format_prompt

DEMONSTRATIONS = DATA_DIR / "sft" / "demonstrations.jsonl"


@dataclass
class SFTConfig(Settings):
    """Chapter 02: supervised fine-tuning on the demonstrations (loss on answer tokens only)."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    batch_size: int = setting(32, "demonstrations per optimiser step", range=(1, 4096))
    max_steps: int = setting(500, "optimiser steps", range=(1, 10**7), quick=100)
    lr: float = setting(1e-3, "peak learning rate of AdamW", range=(1e-6, 1.0), quick=2e-3)
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak",
                                  range=(0.0, 1.0))
    warmup_steps: int = setting(30, "steps of linear warm-up", range=(0, 10**6), quick=10)
    weight_decay: float = setting(0.1, "AdamW weight decay on matrices", range=(0.0, 1.0))
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)",
                               range=(0.0, 100.0))
    eval_every: int = setting(50, "steps between held-out evaluations", range=(1, 10**6),
                              quick=25)
    eval_batches: int = setting(10, "batches per held-out evaluation", range=(1, 10**4))
    heldout_fraction: float = setting(0.1, "share of demonstrations kept out of training",
                                      range=(0.01, 0.5))
    max_tokens: int = setting(96, "longest prompt + answer in tokens; longer ones are cut",
                              range=(16, 4096))


def load_demonstrations() -> list[dict]:
    """The demonstrations as a list of {"prompt", "response"}."""
    if not DEMONSTRATIONS.exists():
        raise FileNotFoundError("data/sft/demonstrations.jsonl is missing; restore it with "
                                "`git checkout data/` or regenerate it with `make data`.")
    with DEMONSTRATIONS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def demonstrations_with_admissions(k: int, seed: int = 0) -> list[dict]:
    """The shipped demonstrations with only the first `k` of their admissions ("I do not
    know" to unanswerable questions; the file holds `scripted.DEMO_ADMISSIONS`): the
    same answerable demonstrations, the admissions mixed in as `make data` mixes them, so
    k = all gives the shipped file. Chapter 11 trains SFT on these to find how few suffice."""
    shipped = DEMO_ADMISSIONS
    if not 0 <= k <= shipped:
        raise ValueError(f"k must be between 0 and {shipped} (the admissions in "
                         f"data/sft/demonstrations.jsonl), not {k}.")
    world = World(seed=seed)
    answerable = [d for d in load_demonstrations() if world.lookup(d["prompt"]).answerable]
    return mix_in_admissions(answerable, admission_demonstrations(world, k, seed), seed)


def sft_example(tokenizer, prompt: str, response: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + end-of-text, and labels that are IGNORE on the prompt.

    The answer ends with the end-of-text token, so the model learns when to stop. (A
    tokenizer that starts every text with a special token, as Llama's does, starts the
    prompt with it, not the answer.)
    """
    prompt_ids = tokenizer(format_prompt(prompt)).input_ids
    answer_ids = tokenizer(" " + response, add_special_tokens=False).input_ids
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_tokens]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_tokens]
    return ids, labels


def sft_data(tokenizer, demos: list[dict], max_tokens: int) -> LMData:
    """Every demonstration as one row, right-padded to the longest; padding is never a label."""
    pairs = [sft_example(tokenizer, d["prompt"], d["response"], max_tokens) for d in demos]
    return pad_rows(pairs, tokenizer.pad_token_id)


@dataclass
class SFTResult:
    cfg: SFTConfig
    model: torch.nn.Module
    tokenizer: object
    history: pd.DataFrame
    before: Evaluation | None  # the pretrained model on the report card's evaluation
                               # (None when other demonstrations were given: chapter 11)
    after: Evaluation          # the SFT model: same questions, same seeds


def run_sft(cfg: SFTConfig | None = None, save: bool = True, live_plot=None,
            build_missing: bool = False, start_from=None, demonstrations: list[dict] | None = None,
            name: str = "sft", notebook: str = "02_sft",
            setting: str = "SFT on the demonstrations", progress: bool = True) -> SFTResult:
    """Load the pretrained model, fine-tune it, measure both with the report card's
    evaluation (KL from the new SFT model), save it as 'sft' and put 'pretrained' and 'sft'
    on the report card. `build_missing` builds a missing pretrained model first, in quick mode. `start_from`: a
    model folder or hub name to fine-tune instead of the 'pretrained' artifact (any causal
    LM; the command line's `python -m rlhf_lab sft --model`). `demonstrations`: other
    demonstrations than the shipped file's (chapter 11); the model is then saved and put on
    the report card as `name` (by `notebook`, with `setting`), and 'pretrained' is not
    recorded again."""
    cfg = cfg or SFTConfig.for_mode()
    seed_everything(cfg.seed)
    model, tokenizer = (load_causal_lm(start_from) if start_from else
                        artifacts.load_model("pretrained", build_if_missing=build_missing))
    pretrained = copy.deepcopy(model).eval() if demonstrations is None else None
    demos = load_demonstrations() if demonstrations is None else demonstrations
    train_demos, val_demos = split_heldout(demos, cfg.heldout_fraction, cfg.seed)
    max_tokens = min(cfg.max_tokens, context_length(model))
    train = sft_data(tokenizer, train_demos, max_tokens)
    val = sft_data(tokenizer, val_demos, max_tokens)
    history = train_lm(model, train, val, cfg, live_plot=live_plot, desc="fine-tuning")
    before = None if demonstrations is not None else evaluate_model(
        pretrained, tokenizer, "pretrained", reference=model, progress=progress)
    after = evaluate_model(model, tokenizer, name, reference=model, progress=progress)
    if save:
        artifacts.save_model(model, tokenizer, name, {
            "config": cfg.__dict__, "demonstrations": len(demos),
            "gold_total_before": before.summary()["gold"] if before else None,
            "gold_total_after": after.summary()["gold"]})
        if before is not None:
            report_card.record(before, notebook="02_sft",
                               setting="chapter 01's pretrained model")
        report_card.record(after, notebook=notebook, setting=setting)
    return SFTResult(cfg, model, tokenizer, history, before, after)
