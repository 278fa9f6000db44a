"""Which iterations of the recipe buy nothing? Candidate cuts of the full-mode recipe, each
measured against today's recipe on the report card's evaluation, paired per question and seed.

Issue 21 asks every chapter to fit in 4 minutes with every report-card number at least as
good as before. A cut of the recipe (fewer PPO iterations, a shorter reward-model run, a
shorter pretraining) changes every model after it, so before a chapter adopts one, this bench
says what it costs in gold:

- `ppo_60`, `ppo_80`: chapter 06's PPO for 60 or 80 iterations instead of 100 (its learning
  rate then decays to 0 over those). Chapter 06's gold curve rises within its noise after
  iteration 40, and by iteration 90 its learning rate is a tenth of its peak. The committed
  CSV measured them against 100 iterations; 80 showed no measurable difference and is now
  `PPOConfig`'s default, so a new run compares 60 with 80 and keeps `ppo_80`'s row as measured
  (a cut equal to the recipe now would only retrain chapter 06's policy).
- `reward_model_125`: chapter 04's reward model for 125 steps instead of 250 (its held-out
  loss was lowest at step 125), then chapter 06's PPO, unchanged, on it.
- `pretrain_800`: chapter 01's pretraining for 800 steps instead of 1,200 (the same model,
  its schedule over 800), then chapter 02's SFT, unchanged, on it. Runs last, since it
  replaces the pretrained and SFT models of the copy the other cuts train from.

Each row: what the cut keeps of today's work (`work_share`: iterations or steps), the
seconds its changed stage took here (`train_seconds`: PPO's or the reward model's training;
for the pretraining cut the whole stage, cleaning and tokenizer included), its report-card
numbers, and the paired difference from the model it would replace (`compared_with`: chapter
06's policy for the PPO and reward-model cuts, chapter 02's SFT model for the pretraining
cut) in gold and in correctness, with 95 % CIs and a verdict: "no measurable difference"
where the CI covers 0. A cut is adoptable only if neither verdict is "worse". A run of some
cuts (`--cuts`) replaces their rows in the CSV and keeps the others.

Needs the learner's full-mode artifacts up to chapter 06 (`make course`, or notebooks 01-06);
it trains in a temporary copy of them (`bench_mode.full_mode_copy`), so nothing of the
learner's is changed. About half an
hour on a slow day of a 2-core CPU (each PPO cut 4 to 5 minutes, the reward-model cut 8, the
pretraining cut 13). Prints a table and writes bench/results/recipe_cuts.csv.

    .venv/bin/python bench/recipe_cuts.py [--cuts ppo_60 ppo_80 reward_model_125 pretrain_800]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from bench_mode import full_mode_copy   # bench/ is on the path when run

RESULTS = Path(__file__).parent / "results"
CUTS = ("ppo_60", "ppo_80", "reward_model_125", "pretrain_800")
NEEDED = ("pretrained", "sft", "pairs", "reward_model", "ppo")


def verdict(d: dict) -> str:
    if d["within_noise"]:
        return "no measurable difference"
    return "better" if d["difference"] > 0 else "worse"


def compare(cut: str, changes: str, work_share: float, seconds: float, after, now,
            extra: dict) -> dict:
    """One row: the cut's report-card numbers and its paired differences from `now`."""
    from rlhf_lab.evaluation import paired_difference

    s = after.summary()
    row = {"cut": cut, "changes": changes, "compared_with": now.name, "work_share": work_share,
           "train_seconds": round(seconds, 1), "gold": s["gold"], "gold_low": s["gold_low"],
           "gold_high": s["gold_high"], "correct": s["correct"], "kl": s["kl"]}
    for column, name in (("total", "gold"), ("correct", "correct")):
        d = paired_difference(after, now, column)
        row |= {f"{name}_vs_now": d["difference"], f"{name}_vs_now_low": d["low"],
                f"{name}_vs_now_high": d["high"], f"{name}_verdict": verdict(d)}
    return row | extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", nargs="+", choices=CUTS, default=list(CUTS))
    args = parser.parse_args()

    with full_mode_copy(NEEDED, "notebooks 01 to 06") as copy:     # every cut trains in it
        if copy is None:                       # `make bench` goes on to the next bench
            return
        rows = run_cuts(args.cuts)
    if not rows:                               # every cut asked for is the recipe now
        return
    table = pd.DataFrame(rows)
    print(table.round(3).T.to_string())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "recipe_cuts.csv"
    if path.exists():           # keep the rows of the cuts not run this time
        kept = pd.read_csv(path)
        table = pd.concat([kept[~kept.cut.isin(table.cut)], table], ignore_index=True)
        table = table.sort_values("cut", key=lambda c: c.map(CUTS.index)).reset_index(drop=True)
    table.round(4).to_csv(path, index=False)


def run_cuts(cuts: list[str]) -> list[dict]:
    from rlhf_lab import artifacts, report_card
    from rlhf_lab.ppo import PPOConfig
    from rlhf_lab.pretraining import PretrainConfig, run_pretraining
    from rlhf_lab.ppo_stage import run_ppo
    from rlhf_lab.reward_model import RewardConfig, run_reward_model
    from rlhf_lab.sft import SFTConfig, run_sft

    now = report_card.load_evaluation("ppo")       # chapter 06's policy, as the card holds it
    now_iterations = artifacts.read_metadata("ppo")["config"]["steps"]
    now_rm = artifacts.read_metadata("reward_model")
    rows = []
    for cut in [c for c in cuts if c.startswith("ppo_")]:
        cfg = PPOConfig.for_mode(steps=int(cut.removeprefix("ppo_")))
        if cfg.steps == now_iterations:   # the recipe now: it would retrain chapter 06's policy
            print(f"{cut}: chapter 06 already trains {now_iterations} iterations; its row is kept")
            continue
        result = run_ppo(cfg, save=False, progress=False)
        rows.append(compare(cut, f"PPO {cfg.steps} iterations (now {now_iterations})",
                            cfg.steps / now_iterations, result.seconds, result.after, now, {}))
    if "reward_model_125" in cuts:
        rm_cfg = RewardConfig.for_mode(max_steps=125)
        rm = run_reward_model(rm_cfg, save=True)    # into the copy: PPO below loads it
        start = time.perf_counter()
        result = run_ppo(PPOConfig.for_mode(), save=False, progress=False)
        ppo_seconds = time.perf_counter() - start
        rows.append(compare(
            "reward_model_125", f"reward model {rm_cfg.max_steps} steps (now "
            f"{now_rm['config']['max_steps']}), then PPO as now", rm_cfg.max_steps /
            now_rm["config"]["max_steps"], rm.train_seconds, result.after, now,
            {"rm_accuracy": rm.accuracy, "rm_accuracy_now": now_rm["accuracy"],
             "ppo_seconds": round(ppo_seconds, 1)}))
    for cut in [c for c in cuts if c.startswith("pretrain_")]:      # last: replaces the SFT model
        now_sft, now_pre = report_card.load_evaluation("sft"), artifacts.read_metadata("pretrained")
        cfg = PretrainConfig.for_mode(max_steps=int(cut.removeprefix("pretrain_")))
        start = time.perf_counter()
        pre = run_pretraining(cfg)                  # into the copy: SFT below loads it
        pre_seconds = time.perf_counter() - start
        sft = run_sft(SFTConfig.for_mode(), progress=False)
        rows.append(compare(
            cut, f"pretraining {cfg.max_steps} steps (now {now_pre['config']['max_steps']}), "
            "then SFT as now", cfg.max_steps / now_pre["config"]["max_steps"], pre_seconds,
            sft.after, now_sft, {"heldout_perplexity": pre.perplexity,
                                 "heldout_perplexity_now": now_pre["heldout_perplexity"]}))
    return rows


if __name__ == "__main__":
    main()
