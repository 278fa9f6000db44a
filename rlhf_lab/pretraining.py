"""Chapter 01 as one pipeline: clean the web dump, train the tokenizer, pretrain the tiny GPT.

Taught step by step in notebooks/01_pretraining.ipynb, which calls these same functions;
`run_pretraining` chains them for tests, for `require('pretrained', build_if_missing=True)`
and for the benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from . import artifacts
from .causal_lm import context_length, load_causal_lm
from .cleaning import CleaningReport, clean_corpus
from .config import (
    DATA_DIR,
    Settings,
    SettingsError,
    get_device,
    seed_everything,
    setting,
)
from .evaluation import unigram_perplexity
from .model import build_model, count_parameters
from .tokenizer import train_tokenizer
from .training import LMData, blocks_from_stream, evaluate_loss, split_heldout, train_lm

RAW_CORPUS = DATA_DIR / "raw" / "web_dump.txt"


@dataclass
class PretrainConfig(Settings):
    """Chapter 01: the tokenizer, the tiny GPT and its pretraining run."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    corpus_chars: int = setting(0, "characters of cleaned corpus to use; 0 means all",
                                range=(0, 10**9), quick=500_000)
    vocab_size: int = setting(2048, "BPE vocabulary size, special tokens included",
                              range=(260, 65536), quick=512)
    n_layer: int = setting(4, "transformer blocks", range=(1, 48), quick=3)
    n_embd: int = setting(128, "width of the residual stream", range=(16, 4096), quick=64)
    n_head: int = setting(4, "attention heads; must divide n_embd", range=(1, 64), quick=2)
    block_size: int = setting(128, "context length in tokens", range=(16, 4096), quick=64)
    dropout: float = setting(0.0, "dropout probability", range=(0.0, 0.9))
    batch_size: int = setting(32, "sequences per optimiser step", range=(1, 4096))
    max_steps: int = setting(1200, "optimiser steps", range=(1, 10**7), quick=400)
    lr: float = setting(3e-3, "peak learning rate of AdamW", range=(1e-6, 1.0), quick=1e-2)
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak",
                                  range=(0.0, 1.0))
    warmup_steps: int = setting(100, "steps of linear warm-up", range=(0, 10**6), quick=15)
    weight_decay: float = setting(0.1, "AdamW weight decay on matrices", range=(0.0, 1.0))
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)",
                               range=(0.0, 100.0))
    eval_every: int = setting(100, "steps between held-out evaluations", range=(1, 10**6),
                              quick=25)
    eval_batches: int = setting(20, "batches per held-out evaluation", range=(1, 10**4),
                                quick=5)
    heldout_fraction: float = setting(0.05, "share of documents kept out of training",
                                      range=(0.01, 0.5))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise SettingsError(
                f"PretrainConfig.n_head = {self.n_head} must divide n_embd = {self.n_embd}.")


def load_raw_corpus() -> str:
    if not RAW_CORPUS.exists():
        raise FileNotFoundError(f"{RAW_CORPUS.name} is missing from data/raw/; restore it with "
                                "`git checkout data/` or regenerate it with `make data`.")
    return RAW_CORPUS.read_text(encoding="utf-8")


def take_chars(docs: list[str], max_chars: int) -> list[str]:
    """The first documents that fit in `max_chars` characters (0: all of them)."""
    if max_chars <= 0:
        return docs
    out, total = [], 0
    for d in docs:
        total += len(d)
        if total > max_chars:
            break
        out.append(d)
    return out


def token_stream(tokenizer, docs: list[str]) -> list[int]:
    """All documents as one stream of token ids, each followed by the end-of-text token."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(docs)["input_ids"]:
        stream += ids + [eos]
    return stream


@dataclass
class PretrainResult:
    cfg: PretrainConfig
    report: CleaningReport
    model: torch.nn.Module
    tokenizer: object
    train: LMData
    val: LMData
    history: pd.DataFrame
    perplexity: float
    unigram_perplexity: float


def run_pretraining(cfg: PretrainConfig | None = None, save: bool = True,
                    live_plot=None, start_from=None, build_missing: bool = False) -> PretrainResult:
    """Clean, tokenize, build and pretrain; save the model as artifact 'pretrained'.

    `start_from`: a model folder or hub name (any causal LM) to go on pretraining, with its
    own tokenizer, instead of a new tokenizer and tiny GPT (then cfg.vocab_size, n_layer,
    n_embd, n_head and dropout are unused); the command line's `pretrain --model`.
    `build_missing` is accepted so that every stage is called alike; nothing comes before
    pretraining."""
    cfg = cfg or PretrainConfig.for_mode()
    seed_everything(cfg.seed)
    report = clean_corpus(load_raw_corpus())
    train_docs, val_docs = split_heldout(report.documents, cfg.heldout_fraction, cfg.seed)
    train_docs = take_chars(train_docs, cfg.corpus_chars)
    if start_from:
        model, tokenizer = load_causal_lm(start_from)
    else:
        tokenizer = train_tokenizer(train_docs, cfg.vocab_size)
        model = build_model(cfg, tokenizer).to(get_device())
    block_size = min(cfg.block_size, context_length(model))
    train = blocks_from_stream(token_stream(tokenizer, train_docs), block_size)
    val = blocks_from_stream(token_stream(tokenizer, val_docs), block_size)
    history = train_lm(model, train, val, cfg, live_plot=live_plot, desc="pretraining")
    ppl = math.exp(evaluate_loss(model, val, cfg.batch_size))
    uni = unigram_perplexity(train.input_ids, val.target_tokens, len(tokenizer))
    if save:
        artifacts.save_model(model, tokenizer, "pretrained", {
            "config": cfg.__dict__, "parameters": count_parameters(model),
            "heldout_perplexity": ppl, "unigram_perplexity": uni})
    return PretrainResult(cfg, report, model, tokenizer, train, val, history, ppl, uni)
