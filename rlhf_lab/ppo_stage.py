"""Chapter 06 as one stage: PPO on the SFT model against the reward model, with live curves.

Taught in notebooks/06_ppo.ipynb; the algorithm itself (one function per idea) is in ppo.py.
The policy starts as the SFT model; a frozen copy of it is the reference of the KL penalty.
Every iteration samples a batch of training questions and runs `ppo.ppo_iteration`; every
`eval_every` iterations the policy answers the same held-out questions and is graded by the
gold scorer, which PPO never sees, and by the reward model, which it optimises.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import artifacts, report_card
from .causal_lm import load_causal_lm
from .config import get_device, seed_everything
from .evaluation import (
    SEEDS,
    Evaluation,
    curve_questions,
    evaluate_model,
    evaluate_with_reward,
    mean_ci,
)
from .plots import LivePlot, redraw_due
from .ppo import (
    PPOConfig,
    ValueHead,
    lr_at_iteration,
    make_kl_controller,
    make_ppo_optimizer,
    ppo_iteration,
)
from .reward_model import load_reward_model
from .world import World

PANELS = {
    "reward-model reward": ["score"],
    "gold score, held out": ["gold"],
    "KL from SFT (nats per answer)": ["kl"],
    "entropy (nats per token)": ["entropy"],
}


def ppo_live_plot(name: str | None = "ppo_curves") -> LivePlot:
    """The live figure of chapter 06: reward, gold score, KL and entropy by iteration."""
    return LivePlot(PANELS, x="iteration", name=name)


def train_ppo(policy, value_head: ValueHead, reference, reward_model, rm_tokenizer, tokenizer,
              train_questions, eval_questions, cfg: PPOConfig, live_plot=None,
              progress: bool = True, offpolicy=None
              ) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Run cfg.steps PPO iterations; return the metrics, one row per iteration, and the
    graded held-out answers of every measurement, by iteration (0: the starting policy).

    Row 0 is the starting policy (held-out measurements only). Columns: iteration, lr,
    the metrics of `ppo_iteration` (score, kl, kl_coef, entropy, clipfrac, approx_kl, ...),
    seconds, and the held-out measurements of `rl_loop` (gold, gold_low, gold_high,
    heldout_reward, heldout_kl) every cfg.eval_every iterations and at the end.
    `live_plot(history)` is called as `rl_loop` says. `offpolicy`: an object whose
    `mix(batch)` returns the batch and {row: answer} to put answers the policy did not
    write in every rollout (chapter 11's `exploration.OffPolicyAnswers`).
    """
    seed_everything(cfg.seed)
    optimizer = make_ppo_optimizer(policy, value_head, cfg)
    kl_controller = make_kl_controller(cfg)
    generator = torch.Generator().manual_seed(cfg.seed)

    def iteration(batch: list) -> dict:
        batch, replace = offpolicy.mix(batch) if offpolicy is not None else (batch, None)
        return ppo_iteration(policy, value_head, reference, reward_model, rm_tokenizer,
                             tokenizer, batch, optimizer, kl_controller, cfg, generator,
                             replace=replace)
    return rl_loop(policy, tokenizer, reference, reward_model, rm_tokenizer, train_questions,
                   eval_questions, cfg, optimizer, iteration, batch_size=cfg.batch_size,
                   desc="PPO", live_plot=live_plot, progress=progress)


def rl_loop(policy, tokenizer, reference, reward_model, rm_tokenizer, train_questions,
            eval_questions, cfg, optimizer: torch.optim.Optimizer, iteration, *,
            batch_size: int, desc: str, live_plot=None, progress: bool = True, tick=None
            ) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """The loop PPO (chapter 06) and the critic-free methods (chapter 10) share: cfg.steps
    times, set the learning rate (`lr_at_iteration`: cfg.lr, cfg.lr_schedule, cfg.steps),
    draw `batch_size` training questions (each once while there are enough; seeded by
    cfg.seed) and call `iteration(batch)` for that iteration's metrics.

    Every cfg.eval_every iterations, at the end and before the first, the policy answers
    `eval_questions` once each, sampled with the report card's first seed
    (`evaluation.SEEDS[0]`), graded by the gold scorer: columns gold with gold_low and
    gold_high (its 95 % CI over questions), heldout_reward (mean reward-model score of those
    answers) and heldout_kl (their mean KL from the reference, nats per answer). Returns the
    metrics, one row per iteration (row 0: the starting policy), and the graded answers of
    every measurement by iteration. `live_plot(history)` is called after the first iteration,
    every measurement and the last iteration, and in between at most every
    `plots.LIVE_PLOT_SECONDS`; only after the last where live plots are off
    (`plots.redraw_due`). `tick()`, if given, is called after every iteration
    (`workers.side_by_side` counts them).
    """
    sampler = random.Random(cfg.seed)
    graded: dict[int, pd.DataFrame] = {}

    def measure(row: dict) -> None:
        answers = evaluate_with_reward(policy, tokenizer, reward_model, rm_tokenizer,
                                       reference, eval_questions, SEEDS[0])
        row["gold"], row["gold_low"], row["gold_high"] = mean_ci(answers.total)
        row["heldout_reward"] = answers.reward.mean()
        row["heldout_kl"] = answers.kl.mean()
        graded[row["iteration"]] = answers

    rows = [{"iteration": 0}]
    measure(rows[0])
    drawn = None                                   # when the live figure was last redrawn
    for i in tqdm(range(cfg.steps), desc=desc, disable=not progress):
        lr = lr_at_iteration(i, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sampler.sample(train_questions, min(batch_size, len(train_questions)))
        batch += sampler.choices(train_questions, k=batch_size - len(batch))
        start = time.perf_counter()
        stats = iteration(batch)
        row = {"iteration": i + 1, "lr": lr, **stats, "seconds": time.perf_counter() - start}
        measured = (i + 1) % cfg.eval_every == 0 or i + 1 == cfg.steps
        if measured:
            measure(row)
        rows.append(row)
        if live_plot is not None and redraw_due(drawn, final=i + 1 == cfg.steps,
                                                measured=measured):
            live_plot(pd.DataFrame(rows))
            drawn = time.perf_counter()
        if tick is not None:
            tick()
    return pd.DataFrame(rows), graded


@dataclass
class PPOResult:
    """What chapter 06 shows: settings, the trained policy, its reference, the metrics by
    iteration, and the report card's evaluation of the SFT model and of the PPO policy."""

    cfg: PPOConfig
    policy: object
    reference: object
    tokenizer: object
    history: pd.DataFrame
    before: Evaluation             # the SFT model on the report card's evaluation
    after: Evaluation              # the PPO policy: same questions, same seeds
    seconds: float


def load_ppo_models(build_missing: bool = False, start_from=None):
    """policy (the SFT model, trainable), reference (a frozen copy), the SFT tokenizer, the
    reward model and its tokenizer. `build_missing` builds missing artifacts in quick mode.
    `start_from`: a model folder or hub name (any causal LM) instead of the 'sft' artifact."""
    policy, tokenizer = (load_causal_lm(start_from) if start_from else
                         artifacts.load_model("sft", build_if_missing=build_missing))
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    reward_model, rm_tokenizer = load_reward_model(build_if_missing=build_missing)
    reward_model.requires_grad_(False)
    return policy, reference, tokenizer, reward_model, rm_tokenizer


def run_ppo(cfg: PPOConfig | None = None, save: bool = True, live_plot=None,
            build_missing: bool = False, progress: bool = True, start_from=None) -> PPOResult:
    """Chapter 06 end to end: load, train with PPO (curves graded on `cfg.eval_questions`
    held-out questions of every kind), measure the SFT model and the policy with the report
    card's evaluation, save artifact 'ppo' (the policy, its tokenizer and metrics.csv) and
    put 'sft' and 'ppo' on the report card."""
    cfg = cfg or PPOConfig.for_mode()
    seed_everything(cfg.seed)
    policy, reference, tokenizer, reward_model, rm_tokenizer = load_ppo_models(build_missing,
                                                                                start_from)
    value_head = ValueHead(policy.config.hidden_size).to(get_device())
    world = World()
    train_questions = world.split("train")
    eval_questions = curve_questions(cfg.eval_questions)
    start = time.perf_counter()
    history, graded = train_ppo(policy, value_head, reference, reward_model, rm_tokenizer,
                                tokenizer, train_questions, eval_questions, cfg, live_plot,
                                progress)
    seconds = time.perf_counter() - start
    models = dict(reference=reference, reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                  progress=progress)
    before = evaluate_model(reference, tokenizer, "sft", **models)
    after = evaluate_model(policy, tokenizer, "ppo", **models)
    if save:
        summary = after.summary()
        artifacts.save_model(
            policy, tokenizer, "ppo",
            {"config": cfg.__dict__, "gold_before": before.summary()["gold"],
             "gold_after": summary["gold"], "reward_before": before.summary()["reward"],
             "reward_after": summary["reward"], "final_kl": summary["kl"], "seconds": seconds},
            write_more=lambda folder: history.to_csv(folder / "metrics.csv", index=False))
        report_card.record(before, notebook="02_sft", setting="SFT on the demonstrations")
        report_card.record(after, notebook="06_ppo",
                           setting=f"{cfg.steps} iterations x {cfg.batch_size} answers, "
                                   f"lr {cfg.lr:g}, adaptive kl_coef from {cfg.kl_coef:g}")
    return PPOResult(cfg, policy, reference, tokenizer, history, before, after, seconds)
