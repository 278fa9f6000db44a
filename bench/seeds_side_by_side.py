"""Chapter 09's seeds one after the other (every core each) against side by side (one process
each, `iterate.run_seeds`), on a shortened version of the chapter's experiment.

Each seed is `iterate.seed_run`: round 1 of hard PPO, then for each later round a fixed-arm
round, a simulated rating and reward-model retraining, an iterated-arm round, and the report
card's evaluation of both final policies: the same mix of sampling, training and evaluation as
the chapter, with fewer iterations and pairs. The two ways alternate for --rounds rounds, so
that the machine's drift hits both alike; every round also checks that they give the same
numbers. ratio = one-after-the-other seconds / side-by-side seconds (above 1: side by side is
faster). Uses the full-mode artifacts when they exist; otherwise builds the quick-mode ones
(a few minutes). Prints a table and writes bench/results/seeds_side_by_side.csv.

    .venv/bin/python bench/seeds_side_by_side.py [--rounds 1] [--seeds 0 10 20]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
from bench_mode import full_mode_if_built   # bench/ is on the path when run

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="alternating timed rounds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 10, 20])
    args = parser.parse_args()

    from rlhf_lab import artifacts
    from rlhf_lab.iterate import IterateConfig, run_seeds, seed_run
    from rlhf_lab.ppo import hard_settings
    from rlhf_lab.preferences import training_ratings
    from rlhf_lab.reward_model import RewardConfig, load_reward_model
    from rlhf_lab.workers import cpu_cores, planned_processes, worker_threads

    # Both ways evaluate the same policies: the second must sample them again, not read the
    # first's answers back (rlhf_lab/answer_cache.py). The workers inherit this.
    os.environ["RLHF_LAB_ANSWER_CACHE"] = "0"
    full_mode_if_built("reward_model")
    sft, tokenizer = artifacts.load_model("sft", build_if_missing=True)
    reward_model, rm_tokenizer = load_reward_model(build_if_missing=True)
    records, _ = training_ratings(RewardConfig.for_mode())
    cfg = IterateConfig.for_mode(rounds=2, ppo_steps=4, pairs_per_round=200, heldout_pairs=50,
                                 reward_steps=20)
    hard = hard_settings(eval_questions=48, eval_every=4)
    jobs = (sft, tokenizer, reward_model, rm_tokenizer, records, cfg, hard)

    def golds(runs) -> list[float]:
        return [run.finals[arm].answers.total.mean() for run in runs
                for arm in ("fixed", "iterated")]

    times = {"one_after_the_other": [], "side_by_side": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        alone = [seed_run(seed, *jobs) for seed in args.seeds]
        times["one_after_the_other"].append(time.perf_counter() - start)
        start = time.perf_counter()
        together = run_seeds(args.seeds, *jobs)
        times["side_by_side"].append(time.perf_counter() - start)
        if golds(alone) != golds(together.values()):
            raise AssertionError("side by side gave other numbers than one after the other: "
                                 f"{golds(together.values())} against {golds(alone)}")
    processes = planned_processes(len(args.seeds))
    ratios = [a / b for a, b in zip(times["one_after_the_other"], times["side_by_side"])]
    table = pd.DataFrame([{
        "seeds": len(args.seeds), "cores": cpu_cores(), "threads_alone": torch.get_num_threads(),
        "processes": processes, "threads_each": worker_threads(processes),
        "one_after_the_other_s": round(min(times["one_after_the_other"]), 1),
        "side_by_side_s": round(min(times["side_by_side"]), 1),
        "ratio": round(sum(ratios) / len(ratios), 3),
        "ratio_range": f"{min(ratios):.2f} to {max(ratios):.2f}", "rounds": args.rounds,
        "same_numbers": True}])
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "seeds_side_by_side.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
