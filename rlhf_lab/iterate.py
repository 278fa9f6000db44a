"""Chapter 09: the loop. Rate the new policy's answers, retrain the reward model on every
rating so far, run PPO again, and measure the gold score round after round.

Taught in notebooks/09_iterate.ipynb. Why it helps: the reward model learned from answers of
the pretrained and SFT models; PPO moves the policy to answers it has seldom seen, where the
reward model is least reliable. Rating the new policy's own answers puts training data
exactly there (Bai et al., 2022, "iterated online RLHF").

One round:
  1. pairs: two sampled answers of the current policy to each of `pairs_per_round` questions
  2. ratings: by a person in the widget, a whole class (class_ratings.py) or a simulated rater
  3. the reward model is trained further on all ratings so far (old ones included, so it
     does not forget), then re-normalised on the current policy's answers
  4. PPO from the current policy, with a fresh value head; the reference stays the SFT model,
     so the KL on the plots is always the distance from where RLHF started
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from . import artifacts, report_card
from .comparisons import sample_comparisons
from .config import Settings, get_device, seed_everything, setting
from .evaluation import curve_questions, evaluate_model
from .feedback import pair_id
from .ppo import PPOConfig, ValueHead
from .ppo_stage import train_ppo
from .preferences import ratings_to_examples, split_ratings, training_ratings
from .raters import SimulatedRater, fill_ratings
from .reward_model import (
    RewardConfig,
    load_reward_model,
    pair_accuracy,
    reward_stats,
    set_normalisation,
    train_reward_model,
)
from .world import World


@dataclass
class IterateConfig(Settings):
    """Chapter 09: rounds of rate -> retrain the reward model -> PPO."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    rounds: int = setting(2, "rounds of the loop", range=(1, 100))
    pairs_per_round: int = setting(300, "pairs of the current policy's answers rated per round",
                                   range=(10, 100000), quick=150)
    reward_steps: int = setting(120, "optimiser steps of further reward-model training per "
                                "round", range=(1, 10**6), quick=60)
    reward_lr: float = setting(5e-5, "peak learning rate of that training (below chapter "
                               "04's: the model is already trained)", range=(1e-8, 1.0))
    ppo_steps: int = setting(50, "PPO iterations per round", range=(1, 10**6), quick=30)
    rater_temperature: float = setting(0.5, "noise of the simulated rater (0: always the "
                                       "gold choice)", range=(0.0, 100.0))


def own_comparisons(policy, tokenizer, questions, n_pairs: int, name: str,
                    seed: int) -> list[dict]:
    """`n_pairs` comparisons of two answers sampled from `policy` (temperature 1) to the same
    random question, labelled `name`: what raters see in this round. Identical answers, and
    comparisons that repeat an earlier one, are dropped (`sample_comparisons`)."""
    return sample_comparisons({name: (policy, tokenizer)}, questions, n_pairs,
                              temperatures=(1.0,), seed=seed)


def simulated_ratings(pairs: list[dict], cfg: IterateConfig, round_number: int) -> list[dict]:
    """A simulated rater (chapter 03) rates every different pair once: records in the
    chapter-03 schema. (A pair given twice is rated once; see `feedback.pair_id`.)"""
    rater = SimulatedRater(f"simulated-round-{round_number}", temperature=cfg.rater_temperature,
                           seed=cfg.seed + round_number)
    different = {pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs}
    records, _ = fill_ratings(pairs, [], len(different), rater)
    return records


def retrain_reward_model(reward_model, rm_tokenizer, all_records: list[dict],
                         new_records: list[dict], cfg: IterateConfig, reward_cfg: RewardConfig,
                         round_number: int) -> dict:
    """Step 3: train the reward model further on every rating so far; re-normalise it on the
    current policy's answers (this round's pairs). Returns the size of the training set and
    the accuracy on this round's held-out new pairs before and after: before is how well the
    old reward model judges the new policy's answers, which it never saw."""
    new = ratings_to_examples(new_records)
    _, new_val = split_ratings(new, reward_cfg.heldout_fraction, cfg.seed + round_number)
    new_val_keys = set(zip(new_val.prompt, new_val.answer_a, new_val.answer_b))
    everything = ratings_to_examples(all_records)
    keep = [(p, a, b) not in new_val_keys
            for p, a, b in zip(everything.prompt, everything.answer_a, everything.answer_b)]
    train = everything[keep].reset_index(drop=True)
    before = pair_accuracy(reward_model, rm_tokenizer, new_val)
    round_cfg = replace(reward_cfg, max_steps=cfg.reward_steps, lr=cfg.reward_lr,
                        warmup_steps=min(reward_cfg.warmup_steps, cfg.reward_steps),
                        eval_every=cfg.reward_steps, seed=cfg.seed + round_number)
    train_reward_model(reward_model, rm_tokenizer, train, new_val, round_cfg)
    after = pair_accuracy(reward_model, rm_tokenizer, new_val)
    prompts = list(new.prompt) + list(new.prompt)
    answers = list(new.answer_a) + list(new.answer_b)
    set_normalisation(reward_model, *reward_stats(reward_model, rm_tokenizer, prompts, answers))
    return {"train_pairs": len(train), "heldout_new_pairs": len(new_val),
            "rm_accuracy_before": before, "rm_accuracy_after": after}


@dataclass
class Round:
    """One round's outcome: its metrics row, the PPO history and graded held-out answers."""

    summary: dict
    history: pd.DataFrame
    graded: pd.DataFrame


def run_round(round_number: int, policy, reference, tokenizer, reward_model, rm_tokenizer,
              all_records: list[dict], new_records: list[dict], cfg: IterateConfig,
              ppo_cfg: PPOConfig, reward_cfg: RewardConfig, live_plot=None,
              progress: bool = True) -> Round:
    """Steps 3 and 4 of a round, once its ratings are in: retrain the reward model on
    `all_records` (which include `new_records`), then PPO from the current policy."""
    rm = retrain_reward_model(reward_model, rm_tokenizer, all_records, new_records, cfg,
                              reward_cfg, round_number)
    world = World()
    value_head = ValueHead(policy.config.hidden_size).to(get_device())
    round_ppo = replace(ppo_cfg, steps=cfg.ppo_steps, seed=cfg.seed + round_number,
                        eval_every=min(ppo_cfg.eval_every, cfg.ppo_steps))
    history, graded = train_ppo(policy, value_head, reference, reward_model, rm_tokenizer,
                                tokenizer, world.split("train"),
                                curve_questions(ppo_cfg.eval_questions), round_ppo,
                                live_plot, progress)
    last = graded[round_ppo.steps]
    summary = {"round": round_number, "ratings": len(all_records), **rm,
               "gold": last.total.mean(), "reward": last.reward.mean(), "kl": last.kl.mean()}
    return Round(summary, history, last)


@dataclass
class IterateResult:
    """The loop run unattended: one summary row per round (round 0 is chapter 06's policy) and
    each round's outcome."""

    rounds: pd.DataFrame
    results: dict[int, Round]


def run_iterate(cfg: IterateConfig | None = None, save: bool = True, live_plot=None,
                build_missing: bool = False) -> IterateResult:
    """Chapter 09's loop with a simulated rater every round: start from chapter 06's policy
    (artifact 'ppo'), the SFT reference and chapter 04's reward model and ratings; each round
    rates the current policy's own answers, retrains the reward model and runs PPO again.
    Saves the final policy as artifact 'iterated'. Notebook 09 runs the same rounds, and lets
    you, or a class, rate instead of the simulated rater. `build_missing` builds missing
    artifacts first, in quick mode."""
    cfg = cfg or IterateConfig.for_mode()
    seed_everything(cfg.seed)
    ppo_cfg, reward_cfg = PPOConfig.for_mode(), RewardConfig.for_mode()
    policy, tokenizer = artifacts.load_model("ppo", build_if_missing=build_missing)
    reference, _ = artifacts.load_model("sft", build_if_missing=build_missing)
    reward_model, rm_tokenizer = load_reward_model(build_if_missing=build_missing)
    all_records, _ = training_ratings(reward_cfg)
    train_questions = World().split("train")
    rows, results = [{"round": 0, "ratings": len(all_records)}], {}
    for number in range(1, cfg.rounds + 1):
        pairs = own_comparisons(policy, tokenizer, train_questions, cfg.pairs_per_round,
                                f"round-{number}", seed=cfg.seed + number)
        new_records = simulated_ratings(pairs, cfg, number)
        all_records = all_records + new_records
        results[number] = run_round(number, policy, reference, tokenizer, reward_model,
                                    rm_tokenizer, all_records, new_records, cfg, ppo_cfg,
                                    reward_cfg, live_plot=live_plot)
        rows.append(results[number].summary)
    if save:
        artifacts.save_model(policy, tokenizer, "iterated", {"config": cfg.__dict__,
                                                              "rounds": rows})
        card_rm, card_rm_tokenizer = load_reward_model()    # chapter 04's, as in every row
        report_card.record(
            evaluate_model(policy, tokenizer, "iterated", reference=reference,
                           reward_model=card_rm, rm_tokenizer=card_rm_tokenizer),
            notebook="09_iterate",
            setting=f"{cfg.rounds} rounds of {cfg.pairs_per_round} simulated ratings and "
                    f"{cfg.ppo_steps} PPO iterations after chapter 06")
    return IterateResult(pd.DataFrame(rows), results)
