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
     does not forget; this round's repeated to half of the draws, so it learns them), then
     re-normalised on the current policy's answers
  4. PPO from the current policy, with a fresh value head; the reference stays the SFT model,
     so the KL on the plots is always the distance from where RLHF started

The chapter's experiment (`fixed_versus_iterated`): under chapter 07's hard setting, where
PPO against a fixed reward model over-optimises, the same PPO rounds run once against the
fixed reward model and once with the reward model retrained between rounds.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import pandas as pd

from . import artifacts, report_card
from .comparisons import sample_comparisons
from .config import Settings, get_device, seed_everything, setting
from .evaluation import Evaluation, curve_questions, evaluate_model
from .feedback import pair_id
from .ppo import PPOConfig, ValueHead
from .ppo_stage import train_ppo
from .preferences import ratings_to_examples, split_ratings, training_ratings
from .raters import SimulatedRater, fill_ratings
from .reward_model import (
    RewardConfig,
    load_reward_model,
    noise_ceiling,
    pair_fit,
    reward_stats,
    set_normalisation,
    train_reward_model,
)
from .workers import side_by_side
from .world import World


@dataclass
class IterateConfig(Settings):
    """Chapter 09: rounds of rate -> retrain the reward model -> PPO."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    rounds: int = setting(2, "rounds of the loop", range=(1, 100))
    pairs_per_round: int = setting(700, "pairs of the current policy's answers rated per round "
                                   "(fewer come back when the policy repeats itself)",
                                   range=(10, 100000), quick=100)
    heldout_pairs: int = setting(200, "of each round's rated pairs, kept out of training to "
                                 "measure the reward model (at most half of them)",
                                 range=(1, 100000), quick=30)
    new_share: float = setting(0.5, "share of each round's reward-model training drawn from "
                               "that round's new ratings (the rest from all earlier ratings)",
                               range=(0.0, 0.95))
    reward_steps: int = setting(60, "optimiser steps of further reward-model training per "
                                "round", range=(1, 10**6), quick=20)
    reward_lr: float = setting(3e-4, "peak learning rate of that training (3x chapter 04's: "
                               "a short run on new answers)",
                               range=(1e-8, 1.0))
    ppo_steps: int = setting(10, "PPO iterations per round", range=(1, 10**6), quick=5)
    rater_temperature: float = setting(0.5, "noise of the simulated rater (0: always the "
                                       "gold choice)", range=(0.0, 100.0))


def own_comparisons(policy, tokenizer, questions, n_pairs: int, name: str,
                    seed: int) -> list[dict]:
    """`n_pairs` comparisons of two answers sampled from `policy` (temperature 1) to the same
    random question, labelled `name`: what raters see in this round. Identical answers, and
    comparisons that repeat an earlier one, are dropped (`sample_comparisons`)."""
    return sample_comparisons({name: (policy, tokenizer)}, questions, n_pairs,
                              temperatures=(1.0,), seed=seed)


def round_rater(cfg: IterateConfig, round_number: int) -> SimulatedRater:
    """The simulated rater of a round: the rubric with cfg.rater_temperature of noise."""
    return SimulatedRater(f"simulated-round-{round_number}", temperature=cfg.rater_temperature,
                          seed=cfg.seed + round_number)


def simulated_ratings(pairs: list[dict], cfg: IterateConfig, round_number: int) -> list[dict]:
    """A simulated rater (chapter 03) rates every different pair once: records in the
    chapter-03 schema. (A pair given twice is rated once; see `feedback.pair_id`.)"""
    rater = round_rater(cfg, round_number)
    different = {pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs}
    records, _ = fill_ratings(pairs, [], len(different), rater)
    return records


def retraining_set(earlier: pd.DataFrame, new_train: pd.DataFrame,
                   new_share: float) -> pd.DataFrame:
    """The examples a round trains the reward model on: every earlier rating, so it does not
    forget, and this round's new ones repeated until they are about `new_share` of the set.
    A few hundred new ratings beside a few thousand old ones would otherwise be a small
    share of every batch, and a short retraining would barely learn them."""
    if new_share == 0 or new_train.empty:
        return pd.concat([earlier, new_train], ignore_index=True)
    repeats = max(1, round(new_share / (1 - new_share) * len(earlier) / len(new_train)))
    return pd.concat([earlier] + [new_train] * repeats, ignore_index=True)


def retrain_reward_model(reward_model, rm_tokenizer, earlier_records: list[dict],
                         new_records: list[dict], cfg: IterateConfig, reward_cfg: RewardConfig,
                         round_number: int, progress: bool = True,
                         rater: SimulatedRater | None = None) -> dict:
    """Step 3: train the reward model further on every rating so far, then re-normalise it on
    the current policy's answers (this round's pairs).

    `cfg.heldout_pairs` of the new pairs (at most half) are held out and never trained on: the
    reward model's accuracy and loss on them before retraining say how well the old reward
    model judges the new policy's answers, which it never saw; after retraining, whether the
    new ratings fixed that. Returns those numbers and the sizes of the sets; given the
    simulated `rater` of the new ratings, also the noise ceiling of the held-out pairs
    (chapter 04: the best accuracy any reward model can expect there, given the rater's
    noise)."""
    new = ratings_to_examples(new_records)
    if len(new) < 2:
        raise ValueError(f"Round {round_number} has {len(new)} rated pair(s): retraining needs at "
                         "least 2, one to train on and one held out to measure it. Rate more "
                         "pairs (IterateConfig.pairs_per_round).")
    n_heldout = min(cfg.heldout_pairs, len(new) // 2)
    # + 0.5: split_ratings keeps int(len * fraction) out, which must come to n_heldout exactly
    new_train, new_val = split_ratings(new, (n_heldout + 0.5) / len(new), cfg.seed + round_number)
    heldout_keys = set(zip(new_val.prompt, new_val.answer_a, new_val.answer_b))
    earlier = ratings_to_examples(earlier_records)
    earlier = earlier[[(p, a, b) not in heldout_keys for p, a, b in
                       zip(earlier.prompt, earlier.answer_a, earlier.answer_b)]]
    train = retraining_set(earlier.reset_index(drop=True), new_train, cfg.new_share)
    before = pair_fit(reward_model, rm_tokenizer, new_val)
    round_cfg = replace(reward_cfg, max_steps=cfg.reward_steps, lr=cfg.reward_lr,
                        warmup_steps=min(reward_cfg.warmup_steps, cfg.reward_steps),
                        eval_every=cfg.reward_steps, seed=cfg.seed + round_number)
    history = train_reward_model(reward_model, rm_tokenizer, train, new_val, round_cfg,
                                 progress=progress)
    after = history.iloc[-1]                 # its last row measures new_val after training
    prompts = list(new.prompt) + list(new.prompt)
    answers = list(new.answer_a) + list(new.answer_b)
    set_normalisation(reward_model, *reward_stats(reward_model, rm_tokenizer, prompts, answers))
    ceiling = noise_ceiling(new_val, rater) if rater is not None else float("nan")
    return {"new_pairs": len(new), "train_pairs": len(earlier) + len(new_train),
            "heldout_new_pairs": len(new_val), "noise_ceiling": ceiling,
            "rm_accuracy_before": before["accuracy"], "rm_loss_before": before["loss"],
            "rm_accuracy_after": after["val_accuracy"], "rm_loss_after": after["val_loss"]}


@dataclass
class Round:
    """One round's outcome: its metrics row, the PPO history and graded held-out answers."""

    summary: dict
    history: pd.DataFrame
    graded: pd.DataFrame


def ppo_round(round_number: int, policy, reference, tokenizer, reward_model, rm_tokenizer,
              cfg: IterateConfig, ppo_cfg: PPOConfig, live_plot=None,
              progress: bool = True) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Step 4: cfg.ppo_steps PPO iterations from the current policy under `ppo_cfg`, with a
    fresh value head and the round's own seed (cfg.seed + round_number); the reference stays
    the SFT model. Returns `train_ppo`'s history and graded held-out answers."""
    value_head = ValueHead(policy.config.hidden_size).to(get_device())
    round_ppo = replace(ppo_cfg, steps=cfg.ppo_steps, seed=cfg.seed + round_number,
                        eval_every=min(ppo_cfg.eval_every, cfg.ppo_steps))
    return train_ppo(policy, value_head, reference, reward_model, rm_tokenizer, tokenizer,
                     World().split("train"), curve_questions(ppo_cfg.eval_questions), round_ppo,
                     live_plot, progress)


def run_round(round_number: int, policy, reference, tokenizer, reward_model, rm_tokenizer,
              earlier_records: list[dict], new_records: list[dict], cfg: IterateConfig,
              ppo_cfg: PPOConfig, reward_cfg: RewardConfig, live_plot=None,
              progress: bool = True, rater: SimulatedRater | None = None) -> Round:
    """Steps 3 and 4 of a round, once its ratings are in: retrain the reward model on
    `earlier_records` and `new_records` (rated by `rater`, if simulated), then PPO from the
    current policy."""
    rm = retrain_reward_model(reward_model, rm_tokenizer, earlier_records, new_records, cfg,
                              reward_cfg, round_number, progress, rater)
    history, graded = ppo_round(round_number, policy, reference, tokenizer, reward_model,
                                rm_tokenizer, cfg, ppo_cfg, live_plot, progress)
    last = graded[cfg.ppo_steps]
    summary = {"round": round_number, "ratings": len(earlier_records) + len(new_records), **rm,
               "gold": last.total.mean(), "reward": last.reward.mean(), "kl": last.kl.mean()}
    return Round(summary, history, last)


# --- the experiment: a fixed reward model against an iterated one ----------------------------

@dataclass
class Arms:
    """One seed of chapter 09's experiment. Both policies ran the same PPO rounds under the
    same setting and seeds from the same SFT model; round 1 they share. `fixed` was
    optimised against chapter 04's reward model throughout; `iterated` against a reward model
    retrained before every later round on ratings of its own answers. `curves`: the held-out
    measurements of `train_ppo` by arm, round and iteration (counted from the start);
    `reward_model`: one row per retraining (`retrain_reward_model`'s numbers)."""

    fixed: object
    iterated: object
    curves: pd.DataFrame
    reward_model: pd.DataFrame


def fixed_versus_iterated(sft, tokenizer, reward_model, rm_tokenizer, records: list[dict],
                          cfg: IterateConfig, ppo_cfg: PPOConfig,
                          reward_cfg: RewardConfig | None = None,
                          progress: bool = True, tick=None) -> Arms:
    """Run cfg.rounds rounds of cfg.ppo_steps PPO iterations twice from the SFT model (which
    is also the reference): once against `reward_model` as it is, once retraining a copy of
    it before every round after the first on a simulated rater's ratings of the current
    policy's own answers, added to `records` (the ratings it was trained on). The models
    passed in are not changed. It starts by seeding everything with cfg.seed (round 1's
    value head is drawn before its PPO seeds itself), so it gives the same numbers whatever
    ran before it, in this process or a fresh one (`run_seeds`). `tick()`, if given, is
    called after each PPO round and each retraining (`experiment_steps`). Taught in
    notebooks/09_iterate.ipynb."""
    seed_everything(cfg.seed)
    reward_cfg = reward_cfg or RewardConfig.for_mode()
    tick = tick or (lambda: None)
    curves, retrained = [], []

    def measured(history: pd.DataFrame, arms: tuple[str, ...], round_number: int) -> None:
        rows = history.dropna(subset=["gold"])
        if round_number > 1:                 # its start is the end of the round before
            rows = rows[rows.iteration > 0]
        rows = rows.assign(round=round_number,
                           iteration=rows.iteration + (round_number - 1) * cfg.ppo_steps)
        curves.extend(rows.assign(arm=arm) for arm in arms)

    fixed = copy.deepcopy(sft)
    history, _ = ppo_round(1, fixed, sft, tokenizer, reward_model, rm_tokenizer, cfg, ppo_cfg,
                           progress=progress)
    measured(history, ("fixed", "iterated"), 1)
    tick()
    iterated, iterated_rm = copy.deepcopy(fixed), copy.deepcopy(reward_model)
    for number in range(2, cfg.rounds + 1):
        history, _ = ppo_round(number, fixed, sft, tokenizer, reward_model, rm_tokenizer, cfg,
                               ppo_cfg, progress=progress)
        measured(history, ("fixed",), number)
        tick()
        pairs = own_comparisons(iterated, tokenizer, World().split("train"),
                                cfg.pairs_per_round, f"round-{number}", seed=cfg.seed + number)
        new_records = simulated_ratings(pairs, cfg, number)
        retrained.append({"round": number, **retrain_reward_model(
            iterated_rm, rm_tokenizer, records, new_records, cfg, reward_cfg, number,
            progress, rater=round_rater(cfg, number))})
        tick()
        records = records + new_records
        history, _ = ppo_round(number, iterated, sft, tokenizer, iterated_rm, rm_tokenizer, cfg,
                               ppo_cfg, progress=progress)
        measured(history, ("iterated",), number)
        tick()
    columns = ["arm", "round", "iteration", "gold", "gold_low", "gold_high", "heldout_reward",
               "heldout_kl"]
    return Arms(fixed, iterated, pd.concat(curves, ignore_index=True)[columns],
                pd.DataFrame(retrained))


def experiment_steps(cfg: IterateConfig) -> int:
    """The `tick`s of one seed of `seed_run`: round 1, then a fixed round, a retraining and
    an iterated round for every later round, then the two evaluations."""
    return 1 + 3 * (cfg.rounds - 1) + 2


@dataclass
class SeedRun:
    """One seed of chapter 09's experiment, start to verdict: both arms and the report card's
    evaluation of each final policy ({"fixed": ..., "iterated": ...}, named hard_fixed and
    hard_iterated)."""

    arms: Arms
    finals: dict[str, Evaluation]


def seed_run(seed: int, sft, tokenizer, reward_model, rm_tokenizer, records: list[dict],
             cfg: IterateConfig, ppo_cfg: PPOConfig, tick=None) -> SeedRun:
    """`fixed_versus_iterated` with cfg.seed = `seed`, then `evaluate_model` of both final
    policies (reference: the SFT model; reward: `reward_model`, chapter 04's)."""
    tick = tick or (lambda: None)
    arms = fixed_versus_iterated(sft, tokenizer, reward_model, rm_tokenizer, records,
                                 replace(cfg, seed=seed), ppo_cfg, progress=False, tick=tick)
    finals = {}
    for arm in ("fixed", "iterated"):
        finals[arm] = evaluate_model(getattr(arms, arm), tokenizer, f"hard_{arm}", reference=sft,
                                     reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                                     progress=False)
        tick()
    return SeedRun(arms, finals)


def run_seeds(seeds, sft, tokenizer, reward_model, rm_tokenizer, records: list[dict],
              cfg: IterateConfig, ppo_cfg: PPOConfig, processes: int | None = None
              ) -> dict[int, SeedRun]:
    """Chapter 09's experiment for every seed of `seeds`: {seed: `seed_run`}. The seeds do not
    depend on each other, so on a CPU they run side by side, one process each
    (`workers.side_by_side`, one thread each on two cores); each seed gives the numbers
    `seed_run` gives for it here."""
    seeds = list(seeds)
    jobs = [(seed, sft, tokenizer, reward_model, rm_tokenizer, records, cfg, ppo_cfg)
            for seed in seeds]
    done = side_by_side(seed_run, jobs, steps_per_job=experiment_steps(cfg),
                        desc=f"{len(seeds)} seed(s), side by side", processes=processes)
    return dict(zip(seeds, done))


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
        results[number] = run_round(number, policy, reference, tokenizer, reward_model,
                                    rm_tokenizer, all_records, new_records, cfg, ppo_cfg,
                                    reward_cfg, live_plot=live_plot,
                                    rater=round_rater(cfg, number))
        all_records = all_records + new_records
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
