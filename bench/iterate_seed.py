"""Where one seed of chapter 09's experiment spends its time, phase by phase.

Runs `iterate.seed_run` for one seed with the chapter's own settings (chapter 07's hard
setting measured on 144 questions every 10 iterations; 3 rounds of 10 PPO iterations; 700
pairs a round), in this process on one thread: the share each seed gets when the chapter runs
three seeds side by side on two cores. Each phase is timed by wrapping the function
`seed_run` calls for it:

- `ppo_round`: a round of PPO iterations with its held-out measurements (5 a seed: round 1,
  then a fixed and an iterated round for rounds 2 and 3)
- `retrain_reward_model`: the iterated arm's reward-model retraining (2)
- `own_comparisons`: sampling the pairs the simulated rater rates (2)
- `evaluate_model`: the report card's evaluation of both final policies (2)

and `other` is the rest (copies of models, the rater's ratings). It runs in a temporary copy of
the artifacts without their answer cache (`bench_mode.full_mode_copy`), so that answers the
chapter cached are sampled again, as on a first run, and nothing of the learner's is changed. `share` is each phase's part
of the seed's seconds; `gold_fixed` and `gold_iterated` are the seed's report-card gold, the
numbers the chapter prints for it. Needs the full-mode artifacts up to chapter 04 (`make
course`, or notebooks 01 to 04); about 6 minutes on a fast day, 7 on a slow one. Prints a
table and writes bench/results/iterate_seed.csv.

    .venv/bin/python bench/iterate_seed.py [--seed 0]
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
from bench_mode import full_mode_copy   # bench/ is on the path when run

RESULTS = Path(__file__).parent / "results"
PHASES = ("ppo_round", "retrain_reward_model", "own_comparisons", "evaluate_model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0,
                        help="the experiment's seed (the chapter's: 0, 10, 20)")
    args = parser.parse_args()

    with full_mode_copy(("sft", "pairs", "reward_model"), "notebooks 01 to 04") as copy:
        if copy is None:                       # `make bench` goes on to the next bench
            return
        table = profile(args.seed)
    print(table.round(3).to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    table.round(4).to_csv(RESULTS / "iterate_seed.csv", index=False)


def profile(seed: int) -> pd.DataFrame:
    from rlhf_lab import artifacts, iterate
    from rlhf_lab.iterate import IterateConfig, seed_run
    from rlhf_lab.ppo import hard_settings
    from rlhf_lab.preferences import training_ratings
    from rlhf_lab.reward_model import RewardConfig, load_reward_model

    torch.set_num_threads(1)
    seconds, calls = defaultdict(float), defaultdict(int)

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                seconds[name] += time.perf_counter() - start
                calls[name] += 1
        return wrapper

    for name in PHASES:          # seed_run and fixed_versus_iterated look these up in iterate
        setattr(iterate, name, timed(name, getattr(iterate, name)))
    hard = hard_settings(eval_questions=144, eval_every=10)        # as chapter 09 sets them
    experiment = IterateConfig.for_mode(rounds=3)
    sft, tokenizer = artifacts.load_model("sft")
    reward_model, rm_tokenizer = load_reward_model()
    records, _ = training_ratings(RewardConfig.for_mode())
    start = time.perf_counter()
    run = seed_run(seed, sft, tokenizer, reward_model, rm_tokenizer, records, experiment, hard)
    total = time.perf_counter() - start
    rows = [{"phase": name, "calls": calls[name], "seconds": seconds[name]} for name in PHASES]
    rows.append({"phase": "other", "calls": 0, "seconds": total - sum(seconds.values())})
    return pd.DataFrame(rows).assign(share=lambda t: t.seconds / total, seed=seed, threads=1,
                                     seed_seconds=total,
                                     gold_fixed=run.finals["fixed"].summary()["gold"],
                                     gold_iterated=run.finals["iterated"].summary()["gold"])


if __name__ == "__main__":
    main()
