"""Pretraining throughput at full-mode size, model FLOP utilisation (MFU), and the course's
training step against a plain-torch GPT of the same shape.

MFU = (training FLOPs per token x tokens per second) / (torch's matrix-multiply FLOP/s),
both measured in this run on this machine, so the ratio holds even on a noisy machine.

`ratio_vs_plain`: the course's step (its GPT-2 from `transformers`, `train_lm`'s forward with
the attention mask, `next_token_loss`, clipping and AdamW, as `optimizer_step` does them)
against nanoGPT's way (`plain_gpt.PlainGPT`: one module, fused QKV, SDPA with is_causal,
targets shifted in the batch) with the same AdamW and clipping, on the same batches, in
interleaved rounds; tokens per second of the course over the plain model's, median of the
rounds, and its range (issue 21 asks >= 1.0). `gelu_new_ratio_*`: the same for the course's
model with transformers' default activation "gelu_new" in place of PyTorch's fused tanh-GELU,
which `build_model` uses (the profile shows "gelu_new" as separate mul, pow, add and tanh
kernels, forward and backward).
`compiled_*`: the course's step with its forward and loss compiled by `torch.compile`
(inductor; backward, clipping and AdamW as before), timed in the same rounds; compiling is
counted apart (`compile_s`: the first compiled step's extra time, inductor's caches off, as
on a learner's first run), and `compiled_net_s` is what
compiling would save over chapter 01's full-mode steps once its compile time is paid (negative:
it costs time). `forward_s`, `backward_s`, `clip_s`, `optimizer_s`: where one eager step's time
goes (medians), so a fused or foreach AdamW can be judged by the optimiser's share.
`--profile` prints where each step spends its time.
Prints a table and writes bench/results/pretrain_throughput.csv.

    .venv/bin/python bench/pretrain_throughput.py [--steps 60] [--rounds 5] [--profile]
"""
from __future__ import annotations

import argparse
import math
import statistics
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
from rlhf_lab.training import (IGNORE, blocks_from_stream, make_optimizer, next_token_loss,
                               optimizer_step, train_lm)

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


def corpus_blocks(cfg: PretrainConfig):
    """(tokenizer, blocks): a tokenizer trained on 600,000 characters of the cleaned corpus,
    and those characters as training blocks; every timing here trains on these."""
    docs = take_chars(clean_corpus(load_raw_corpus()).documents, 600_000)
    tokenizer = train_tokenizer(docs, cfg.vocab_size)
    return tokenizer, blocks_from_stream(token_stream(tokenizer, docs), cfg.block_size)


def batch_loss(model, batch: dict) -> torch.Tensor:
    """The course's training loss on one batch, as `train_lm` computes it."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return next_token_loss(logits, batch["labels"])


def training_tokens_per_second(cfg: PretrainConfig, device: torch.device, tokenizer,
                               data) -> tuple[float, object]:
    model = build_model(cfg, tokenizer).to(device)
    warm = PretrainConfig.for_mode(quick=False, max_steps=5, eval_every=10**6, eval_batches=1)
    train_lm(model, data, data, warm, desc="warm-up")
    sync(device)
    start = time.perf_counter()
    train_lm(model, data, data, cfg, desc="timed")
    sync(device)
    seconds = time.perf_counter() - start
    return cfg.max_steps * cfg.batch_size * cfg.block_size / seconds, model


def step_functions(cfg: PretrainConfig, device: torch.device, tokenizer, data):
    """({name: step}, tokens per step): one optimiser step of each model on random batches
    of the same data. "course": the course's GPT-2 as `build_model` builds it (PyTorch's fused
    tanh-GELU); "course_gelu_new": the same with transformers' default "gelu_new" (the same
    function written out in elementwise ops); "plain": `plain_gpt.PlainGPT`."""
    import torch._inductor.config as inductor_config
    from transformers.activations import ACT2FN
    from plain_gpt import PlainGPT          # bench/ is on the path when run

    course = build_model(cfg, tokenizer).to(device).train()
    gelu_new = build_model(cfg, tokenizer)
    gelu_new.config.activation_function = "gelu_new"
    for block in gelu_new.transformer.h:
        block.mlp.act = ACT2FN["gelu_new"]
    gelu_new = gelu_new.to(device).train()
    plain = PlainGPT(len(tokenizer), cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.n_head).to(device).train()
    assert count_parameters(course) == count_parameters(plain), "the two models differ in size"
    generator = torch.Generator().manual_seed(0)

    def course_step(model, compiled: bool = False):
        optimizer = make_optimizer(model, cfg)

        def loss_of(batch):
            return batch_loss(model, batch)
        if compiled:
            inductor_config.force_disable_caches = True    # compile cold, as a first run does
            loss_of = torch.compile(loss_of)

        def step():
            idx = torch.randint(len(data), (cfg.batch_size,), generator=generator)
            optimizer_step(model, optimizer, loss_of(data.batch(idx, device)), cfg, 0, cfg.lr)
        return step

    plain_optimizer = make_optimizer(plain, cfg)

    def plain_step():
        idx = torch.randint(len(data), (cfg.batch_size,), generator=generator)
        ids = data.input_ids[idx].to(device)
        targets = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], IGNORE)], dim=1)
        loss = plain(ids, targets)
        optimizer_step(plain, plain_optimizer, loss, cfg, 0, cfg.lr)

    steps = {"course": course_step(course), "course_gelu_new": course_step(gelu_new),
             "plain": plain_step}
    steps["course_compiled"] = course_step(build_model(cfg, tokenizer).to(device).train(),
                                           compiled=True)
    return steps, cfg.batch_size * cfg.block_size


def first_step_seconds(steps: dict, device: torch.device) -> dict[str, float]:
    """Seconds of each step function's first call (a compiled one compiles then), then two
    more calls each to warm up. A step that cannot run here (compiling needs a C++ compiler)
    is dropped from `steps` with a line saying why."""
    first = {}
    for name, step in list(steps.items()):
        sync(device)
        start = time.perf_counter()
        try:
            step()
        except Exception as error:                    # e.g. inductor finds no C++ compiler
            print(f"{name} left out: {type(error).__name__}: {str(error).splitlines()[0]}")
            del steps[name]
            continue
        sync(device)
        first[name] = time.perf_counter() - start
        for _ in range(2):
            step()
    return first


def step_phases(cfg: PretrainConfig, device: torch.device, tokenizer, data,
                repeats: int = 15) -> dict[str, float]:
    """Median seconds of one eager course step's forward (with the loss), backward, gradient
    clipping and AdamW update, each timed on its own."""
    model = build_model(cfg, tokenizer).to(device).train()
    optimizer = make_optimizer(model, cfg)
    batch = data.batch(torch.arange(cfg.batch_size), device)
    phases = {"forward_s": [], "backward_s": [], "clip_s": [], "optimizer_s": []}

    def timed(work):
        sync(device)
        start = time.perf_counter()
        result = work()
        sync(device)
        return result, time.perf_counter() - start

    for repeat in range(repeats + 3):                   # the first 3 warm up
        loss, forward = timed(lambda: batch_loss(model, batch))
        optimizer.zero_grad(set_to_none=True)
        _, backward = timed(loss.backward)
        _, clip = timed(lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        _, update = timed(optimizer.step)
        if repeat >= 3:
            for name, seconds in zip(phases, (forward, backward, clip, update)):
                phases[name].append(seconds)
    return {name: round(statistics.median(times), 4) for name, times in phases.items()}


def interleaved(steps: dict, tokens_per_step: int, rounds: int, steps_per_round: int,
                device: torch.device) -> dict[str, list[float]]:
    """Tokens per second of each step function, timed in turn, `rounds` times (call
    `first_step_seconds` first: it warms every step function up)."""
    rates = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            sync(device)
            rates[name].append(steps_per_round * tokens_per_step / (time.perf_counter() - start))
    return rates


def profile(step, steps: int = 10) -> None:
    """Print the operators on which `step` spends most of its time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimiser steps")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the ratio")
    parser.add_argument("--round-steps", type=int, default=10, help="steps of each model a round")
    parser.add_argument("--profile", action="store_true", help="print the course step's profile")
    args = parser.parse_args()
    seed_everything(0)
    device = get_device()
    cfg = PretrainConfig.for_mode(quick=False, max_steps=args.steps, eval_every=10**6,
                                  eval_batches=1)
    peak = max(matmul_flops(device, n) for n in (256, 512, 1024))
    tokenizer, data = corpus_blocks(cfg)
    tokens_per_s, model = training_tokens_per_second(cfg, device, tokenizer, data)
    achieved = flops_per_token(model) * tokens_per_s
    phases = step_phases(cfg, device, tokenizer, data)
    steps, tokens_per_step = step_functions(cfg, device, tokenizer, data)
    first = first_step_seconds(steps, device)
    rates = interleaved(steps, tokens_per_step, args.rounds, args.round_steps, device)
    ratios = {name: [c / p for c, p in zip(rates[name], rates["plain"])]
              for name in ("course", "course_gelu_new", "course_compiled") if name in rates}
    compiled = {"compiled_ratio_vs_plain": math.nan, "compiled_ratio_min": math.nan,
                "compiled_ratio_max": math.nan, "compile_s": math.nan, "compiled_net_s": math.nan}
    if "course_compiled" in rates:
        eager_step = tokens_per_step / statistics.median(rates["course"])
        compiled_step = tokens_per_step / statistics.median(rates["course_compiled"])
        compile_s = first["course_compiled"] - compiled_step
        compiled = {"compiled_ratio_vs_plain": round(statistics.median(ratios["course_compiled"]), 3),
                    "compiled_ratio_min": round(min(ratios["course_compiled"]), 3),
                    "compiled_ratio_max": round(max(ratios["course_compiled"]), 3),
                    "compile_s": round(compile_s, 1),
                    "compiled_net_s": round(PretrainConfig().max_steps * (eager_step - compiled_step)
                                            - compile_s, 1)}
    if args.profile:
        for step in steps.values():
            profile(step)
    table = pd.DataFrame([{
        "device": str(device), "threads": torch.get_num_threads(),
        "parameters": count_parameters(model), "block_size": cfg.block_size,
        "batch_size": cfg.batch_size, "timed_steps": cfg.max_steps,
        "train_tokens_per_s": round(tokens_per_s),
        "model_gflops_per_s": round(achieved / 1e9, 2),
        "matmul_gflops_per_s": round(peak / 1e9, 2),
        "mfu": round(achieved / peak, 3),
        "course_tokens_per_s": round(statistics.median(rates["course"])),
        "plain_tokens_per_s": round(statistics.median(rates["plain"])),
        "ratio_vs_plain": round(statistics.median(ratios["course"]), 3),
        "ratio_min": round(min(ratios["course"]), 3), "ratio_max": round(max(ratios["course"]), 3),
        "gelu_new_ratio_vs_plain": round(statistics.median(ratios["course_gelu_new"]), 3),
        "gelu_new_ratio_min": round(min(ratios["course_gelu_new"]), 3),
        "gelu_new_ratio_max": round(max(ratios["course_gelu_new"]), 3),
        "full_mode_pretraining_s": round(PretrainConfig().max_steps * cfg.batch_size
                                         * cfg.block_size / tokens_per_s),
        **compiled, **phases,
    }])
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "pretrain_throughput.csv", index=False)
    print(table.T.to_string(header=False))


if __name__ == "__main__":
    main()
