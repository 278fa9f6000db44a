"""Where the time of one PPO iteration goes (chapter 06), and what it costs over the minimum.

One iteration = generation + policy forward (old log-probs, values) + reference pass +
reward-model scoring + advantages + update (ppo_epochs passes of forward and backward).
The unavoidable part of any on-policy RL step is generating the answers plus one forward
and backward pass over the same tokens; the ratio whole / unavoidable says how much PPO's
extra passes (reference, scoring, several epochs) cost on top. Each part's MFU is its useful
FLOPs (2 x parameters per token forward, 6 x forward and backward) over the device's float32
matmul rate: how busy that part keeps the cores.

Uses the chapter 02 and 04 artifacts of full mode when they exist; otherwise it builds the
quick-mode ones (a couple of minutes) and says so. Prints a table and writes
bench/results/ppo_step.csv.

    .venv/bin/python bench/ppo_step.py [--iterations 5]
"""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from pretrain_throughput import matmul_flops, sync   # bench/ is on the path when run

RESULTS = Path(__file__).parent / "results"


class Stopwatch:
    """`with stopwatch("part"):` adds the part's wall time to stopwatch.seconds["part"]."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        sync(self.device)
        start = time.perf_counter()
        yield
        sync(self.device)
        self.seconds[name] += time.perf_counter() - start


def forward_backward_seconds(policy, value_head, rollout, cfg, device) -> float:
    """One forward and backward pass of policy and value head over the rollout's tokens, in
    the update's minibatches, no optimiser step: the floor of any gradient update."""
    from rlhf_lab.ppo import forward_policy_and_values

    policy.zero_grad(set_to_none=True)
    sync(device)
    start = time.perf_counter()
    for rows in torch.arange(len(rollout)).split(cfg.minibatch_size):
        logprobs, values = forward_policy_and_values(
            policy, value_head, rollout.sequences[rows], rollout.attention_mask[rows],
            rollout.prompt_length, cfg.temperature)
        (logprobs.sum() + values.sum()).backward()
    sync(device)
    seconds = time.perf_counter() - start
    policy.zero_grad(set_to_none=True)
    value_head.zero_grad(set_to_none=True)
    return seconds


def part_flops(policy, reference, reward_model, prompt_tokens: float, answer_tokens: float,
               cfg) -> dict[str, float]:
    """The useful FLOPs of each part of one iteration, by the usual count: 2 x parameters per
    token for a forward pass, 6 x for forward and backward (padding and finished rows are
    not counted, so the MFU is of useful work). Generation: the prompts once and every
    answer token; the passes over whole answers: prompt + answer tokens."""
    def size(model) -> int:
        return sum(p.numel() for p in model.parameters())

    tokens = prompt_tokens + answer_tokens
    return {"generation": 2 * size(policy) * tokens,
            "policy forward": 2 * size(policy) * tokens,
            "reference pass": 2 * size(reference) * tokens,
            "scoring": 2 * size(reward_model) * tokens,
            "update": 6 * size(policy) * tokens * cfg.ppo_epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="timed PPO iterations")
    args = parser.parse_args()

    from rlhf_lab import artifacts
    from rlhf_lab.config import get_device, mode_name, seed_everything

    if not (artifacts.exists("sft") and artifacts.exists("reward_model")):
        print("No full-mode SFT model and reward model (notebooks 02 and 04): timing the "
              "quick-mode ones instead, building them if needed.")
        os.environ["RLHF_LAB_QUICK"] = "1"
    from rlhf_lab.ppo import (
        PPOConfig,
        ValueHead,
        make_kl_controller,
        make_ppo_optimizer,
        make_rollout,
        ppo_iteration,
    )
    from rlhf_lab.ppo_stage import load_ppo_models
    from rlhf_lab.world import World

    seed_everything(0)
    device = get_device()
    cfg = PPOConfig.for_mode()
    policy, reference, tokenizer, reward_model, rm_tokenizer = load_ppo_models(
        build_missing=True)
    value_head = ValueHead(policy.config.hidden_size).to(device)
    optimizer = make_ppo_optimizer(policy, value_head, cfg)
    kl_controller = make_kl_controller(cfg)
    questions = World().split("train")

    def batch(i: int) -> list:
        return questions[i * cfg.batch_size:(i + 1) * cfg.batch_size]

    ppo_iteration(policy, value_head, reference, reward_model, rm_tokenizer, tokenizer,
                  batch(0), optimizer, kl_controller, cfg)           # warm-up, not timed
    watch = Stopwatch(device)
    floors, lengths, token_counts = [], [], []
    for i in range(1, args.iterations + 1):
        with watch("whole iteration"):
            stats = ppo_iteration(policy, value_head, reference, reward_model, rm_tokenizer,
                                  tokenizer, batch(i), optimizer, kl_controller, cfg,
                                  timer=watch)
        lengths.append(stats["answer_length"])
        rollout = make_rollout(policy, value_head, reference, reward_model, rm_tokenizer,
                               tokenizer, batch(i), cfg, kl_controller.value)
        floors.append(forward_backward_seconds(policy, value_head, rollout, cfg, device))
        mask = rollout.attention_mask
        token_counts.append((int(mask[:, :rollout.prompt_length].sum()),
                             int(mask[:, rollout.prompt_length:].sum())))

    n = args.iterations
    per_iteration = {name: s / n for name, s in watch.seconds.items()}
    whole = per_iteration.pop("whole iteration")
    per_iteration["other (advantages, bookkeeping)"] = whole - sum(per_iteration.values())
    forward_backward = sum(floors) / n
    unavoidable = per_iteration["generation"] + forward_backward
    prompt_tokens = sum(p for p, _ in token_counts) / n
    answer_tokens = sum(a for _, a in token_counts) / n
    flops = part_flops(policy, reference, reward_model, prompt_tokens, answer_tokens, cfg)
    peak = max(matmul_flops(device, size) for size in (256, 512, 1024))
    table = pd.DataFrame([{"part": name, "seconds": round(s, 3),
                           "share_of_iteration": round(s / whole, 3),
                           "mfu": round(flops[name] / s / peak, 4) if name in flops else None}
                          for name, s in per_iteration.items()])
    summary = pd.DataFrame([{
        "device": str(device), "threads": torch.get_num_threads(), "mode": mode_name(),
        "batch_size": cfg.batch_size, "minibatch_size": cfg.minibatch_size,
        "ppo_epochs": cfg.ppo_epochs, "mean_answer_tokens": round(sum(lengths) / n, 1),
        "timed_iterations": n, "iteration_s": round(whole, 3),
        **{f"{name.split(' (')[0].replace(' ', '_')}_s": round(s, 3)
           for name, s in per_iteration.items()},
        "one_forward_backward_s": round(forward_backward, 3),
        "unavoidable_s": round(unavoidable, 3),
        "ratio_whole_to_unavoidable": round(whole / unavoidable, 2),
        "matmul_gflops_per_s": round(peak / 1e9, 1),
        **{f"{name.split(' (')[0].replace(' ', '_')}_mfu": round(flops[name] / s / peak, 4)
           for name, s in per_iteration.items() if name in flops},
        "iteration_mfu": round(sum(flops.values()) / whole / peak, 4)}])
    print(table.to_string(index=False))
    print(summary.T.to_string(header=False))
    RESULTS.mkdir(exist_ok=True)
    summary.to_csv(RESULTS / "ppo_step.csv", index=False)
    print(f"written {RESULTS / 'ppo_step.csv'}")


if __name__ == "__main__":
    main()
