"""Pretraining throughput at full-mode size, and model FLOP utilisation (MFU).

MFU = (training FLOPs per token x tokens per second) / (torch's matrix-multiply FLOP/s),
both measured in this run on this machine, so the ratio holds even on a noisy machine.
Prints a table and writes bench/results/pretrain_throughput.csv.

    .venv/bin/python bench/pretrain_throughput.py [--steps 60]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from rlhf_lab.cleaning import clean_corpus
from rlhf_lab.config import get_device, seed_everything
from rlhf_lab.pretraining import PretrainConfig
from rlhf_lab.model import build_model, count_parameters, flops_per_token
from rlhf_lab.pretraining import load_raw_corpus, take_chars, token_stream
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.training import blocks_from_stream, train_lm

RESULTS = Path(__file__).parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device: torch.device, size: int, repeats: int = 20) -> float:
    """FLOP/s of a float32 (size x size) @ (size x size) product, best of `repeats`."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def training_tokens_per_second(cfg: PretrainConfig, device: torch.device) -> tuple[float, object]:
    docs = take_chars(clean_corpus(load_raw_corpus()).documents, 600_000)
    tokenizer = train_tokenizer(docs, cfg.vocab_size)
    data = blocks_from_stream(token_stream(tokenizer, docs), cfg.block_size)
    model = build_model(cfg, tokenizer).to(device)
    warm = PretrainConfig.for_mode(quick=False, max_steps=5, eval_every=10**6, eval_batches=1)
    train_lm(model, data, data, warm, desc="warm-up")
    sync(device)
    start = time.perf_counter()
    train_lm(model, data, data, cfg, desc="timed")
    sync(device)
    seconds = time.perf_counter() - start
    return cfg.max_steps * cfg.batch_size * cfg.block_size / seconds, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimiser steps")
    args = parser.parse_args()
    seed_everything(0)
    device = get_device()
    cfg = PretrainConfig.for_mode(quick=False, max_steps=args.steps, eval_every=10**6,
                                  eval_batches=1)
    peak = max(matmul_flops(device, n) for n in (256, 512, 1024))
    tokens_per_s, model = training_tokens_per_second(cfg, device)
    achieved = flops_per_token(model) * tokens_per_s
    table = pd.DataFrame([{
        "device": str(device), "threads": torch.get_num_threads(),
        "parameters": count_parameters(model), "block_size": cfg.block_size,
        "batch_size": cfg.batch_size, "timed_steps": cfg.max_steps,
        "train_tokens_per_s": round(tokens_per_s),
        "model_gflops_per_s": round(achieved / 1e9, 2),
        "matmul_gflops_per_s": round(peak / 1e9, 2),
        "mfu": round(achieved / peak, 3),
        "full_mode_pretraining_s": round(PretrainConfig().max_steps * cfg.batch_size
                                         * cfg.block_size / tokens_per_s),
    }])
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "pretrain_throughput.csv", index=False)
    print(table.T.to_string(header=False))


if __name__ == "__main__":
    main()
