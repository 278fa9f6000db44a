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
from .config import DATA_DIR, PretrainConfig, get_device, seed_everything
from .evaluation import unigram_perplexity
from .model import build_model, count_parameters
from .tokenizer import train_tokenizer
from .training import LMData, blocks_from_stream, evaluate_loss, split_heldout, train_lm

RAW_CORPUS = DATA_DIR / "raw" / "web_dump.txt"


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
                    live_plot=None, start_from=None) -> PretrainResult:
    """Clean, tokenize, build and pretrain; save the model as artifact 'pretrained'.

    `start_from`: a model folder or hub name (any causal LM) to go on pretraining, with its
    own tokenizer, instead of a new tokenizer and tiny GPT (then cfg.vocab_size, n_layer,
    n_embd, n_head and dropout are unused); the command line's `pretrain --model`."""
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


artifacts.BUILDERS["pretrained"] = lambda: run_pretraining(PretrainConfig.for_mode(quick=True))
