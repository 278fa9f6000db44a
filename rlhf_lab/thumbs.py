"""Thumbs up and down: a reward model from one-answer ratings, and what a click is worth.

Taught in notebooks/12_thumbs.ipynb. Chat products ask for a thumb under one answer, not for a
choice between two. This module turns thumbs into training data, trains chapter 04's reward
model on them with a binary likelihood (`kto.thumbs_reward_loss`: the reward is the log-odds
of a thumb up), and measures, at equal numbers of clicks, which kind of feedback teaches a
reward model more.

- Thumbs come first from people (single-answer records in data/feedback/, chapter 03's
  schema), then a simulated rater fills up: it rates one answer, picked at random, of each of
  the pairs chapter 04's reward model trained on. So both reward models see the same
  questions and the same number of clicks.
- Both are measured on the same yardstick: held-out pairs labelled by the gold rubric
  (`gold_pairs`), the share a reward model orders as gold does.
- The learning curves (`click_curve`) fit the reward head alone on the SFT model's frozen
  features, many times over (sizes x seeds x two kinds) in seconds; the chapter sets the
  fully trained reward models of both kinds beside them at one budget.
"""
from __future__ import annotations

import itertools
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import artifacts, distributed, feedback
from .causal_lm import context_length
from .class_ratings import gold_choice
from .config import seed_everything
from .evaluation import mean_ci
from .gold import words
from .kto import thumbs_reward_loss
from .plots import redraw_due
from .preferences import (
    SAMPLE_FILE,
    ratings_to_examples,
    split_ratings,
    training_ratings,
)
from .raters import SimulatedRater
from .reward_model import (
    RewardConfig,
    new_reward_model,
    normalise_on_sft_answers,
    pair_fit,
    pooled_features,
    reward_inputs,
    rewards,
)
from .training import lr_at, make_optimizer, optimizer_step

THUMBS = {"up": True, "down": False}      # what a thumb says about the answer
THUMBS_COLUMNS = ["prompt", "answer", "up", "rater"]

# Rater time per click, assumed: silent reading at 238 words per minute (the mean over
# adults in Brysbaert's 2019 meta-analysis of reading rates), plus a fixed time to decide
# and click. A pair click reads the question and two answers, a thumb one answer.
READING_WORDS_PER_SECOND = 238 / 60
DECISION_SECONDS = 1.5
BREAK_SECONDS = 60.0                      # a longer gap between clicks is a pause, not a click


# --- the data -----------------------------------------------------------------------------

def thumbs_examples(records) -> pd.DataFrame:
    """Single-answer ratings -> one row per answer: prompt, answer, up (bool), rater.
    Pair ratings, skips and undo records are left out."""
    frame = pd.DataFrame(records)
    if frame.empty or "kind" not in frame:
        return pd.DataFrame(columns=THUMBS_COLUMNS)
    frame = frame[(frame["kind"] == "single") & frame["choice"].isin(list(THUMBS))]
    return (frame.assign(up=frame["choice"].map(THUMBS).astype(bool))[THUMBS_COLUMNS]
            .reset_index(drop=True))


def own_thumbs(folder=None) -> list[dict]:
    """Your own thumbs: the single-answer records saying up or down in every file of
    data/feedback/ (or `folder`) but the shipped sample, after the duplicate rule (the latest
    per rater and answer; an undo removes a thumb)."""
    records = []
    for path in sorted(Path(folder or feedback.FEEDBACK_DIR).glob("*.jsonl")):
        if path.name != SAMPLE_FILE:
            records.extend(feedback.load_ratings(path))
    return [r for r in feedback.latest_per_item(records)
            if r["kind"] == "single" and r["choice"] in THUMBS]


def thumbs_on_pairs(pairs: pd.DataFrame, rater: SimulatedRater, seed: int) -> list[dict]:
    """One thumb per pair: answer A or B of each row of `pairs` (prompt, answer_a, answer_b),
    picked by a coin seeded with `seed`, rated by `rater`. Returns single records."""
    coin = random.Random(f"{seed}|side")
    items = [{"prompt": row.prompt, "answer": row.answer_a if coin.random() < 0.5
              else row.answer_b} for row in pairs.itertuples()]
    return [rater.rate_single(item, model="simulated") for item in items]


def training_thumbs(pairs: pd.DataFrame, rater: SimulatedRater, seed: int,
                    own: list[dict] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """As many thumbs as there are `pairs` (chapter 04's training pairs): all of your own
    first (even beyond that number, since clicks are never thrown away), then the simulated
    `rater`'s thumbs on one answer of each remaining pair. Returns (thumbs, report): the
    examples (`thumbs_examples`) and how many came from whom."""
    own = own_thumbs() if own is None else own
    filled = thumbs_on_pairs(pairs.iloc[len(own):], rater, seed) if len(own) < len(pairs) else []
    examples = thumbs_examples(own + filled)
    report = (examples.groupby("rater").agg(thumbs=("up", "size"), share_up=("up", "mean"))
              .reset_index())
    report["source"] = ["simulated" if r == rater.name else "you" for r in report["rater"]]
    return examples, report


def gold_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """`pairs` (prompt, answer_a, answer_b, ...) with target 1.0 where the gold rubric prefers
    A and 0.0 where B (`class_ratings.gold_choice`); pairs gold calls a tie (totals less than
    0.05 apart, chapter 03's rule) are dropped. The yardstick of both kinds of reward model:
    does it order two answers as the rubric does?"""
    gold = [gold_choice(r.prompt, r.answer_a, r.answer_b) for r in pairs.itertuples()]
    out = pairs[["prompt", "answer_a", "answer_b"]].assign(
        target=[float(g == "a") for g in gold], rater="gold")
    return out[[g != "tie" for g in gold]].reset_index(drop=True)


def reward_model_pairs(cfg: RewardConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chapter 04's rated pairs, split as chapter 04 splits them: (train, held-out)."""
    cfg = cfg or RewardConfig.for_mode()
    records, _ = training_ratings(cfg)
    return split_ratings(ratings_to_examples(records), cfg.heldout_fraction, cfg.seed)


# --- a reward model from thumbs -----------------------------------------------------------

def train_thumbs_reward_model(model, tokenizer, thumbs: pd.DataFrame, val_pairs: pd.DataFrame,
                              cfg: RewardConfig, live_plot=None,
                              progress: bool = True) -> pd.DataFrame:
    """Chapter 04's recipe (steps, batch, learning rate, schedule) with the thumbs loss:
    each step scores cfg.batch_size random thumbed answers (one click each, as a pair step
    takes cfg.batch_size pair clicks) and minimises `thumbs_reward_loss`. Every cfg.eval_every
    steps and at the end a history row: step, train_loss, val_accuracy and val_loss (the
    Bradley-Terry loss) on `val_pairs` (gold-labelled pairs, `gold_pairs`), lr."""
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    max_tokens = context_length(model)
    history, losses = [], []
    model.train()
    bar = tqdm(range(cfg.max_steps), desc="training the reward model on thumbs",
               disable=not (progress and distributed.is_main_process()))
    for step in bar:
        lr = lr_at(step, cfg)
        idx = torch.randint(len(thumbs), (cfg.batch_size,), generator=generator)
        batch = thumbs.iloc[distributed.shard(idx).tolist()]
        inputs = reward_inputs(tokenizer, list(batch["prompt"]), list(batch["answer"]),
                               max_tokens)
        with distributed.autocast():
            r = rewards(model, **{k: v.to(device) for k, v in inputs.items()})   # (batch,)
        loss = thumbs_reward_loss(r, torch.tensor(batch["up"].to_numpy(), device=device))
        optimizer_step(model, optimizer, loss, cfg, step, lr, what="thumbs reward loss")
        losses.append(distributed.mean(loss))
        if (step + 1) % cfg.eval_every == 0 or step == cfg.max_steps - 1:
            val = pair_fit(model, tokenizer, val_pairs)
            history.append({"step": step + 1, "train_loss": sum(losses) / len(losses),
                            "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": lr})
            losses = []
            bar.set_postfix(accuracy=f"{history[-1]['val_accuracy']:.2f}")
            if live_plot is not None and redraw_due(final=step == cfg.max_steps - 1,
                                                    measured=True):
                live_plot(pd.DataFrame(history))
    model.eval()
    return pd.DataFrame(history)


@dataclass
class ThumbsRewardResult:
    """Chapter 12's reward model from thumbs: the model, its history, what it trained on and
    its accuracy on gold-labelled held-out pairs (the same pairs chapter 04's is measured on)."""

    cfg: RewardConfig
    model: torch.nn.Module
    tokenizer: object
    history: pd.DataFrame
    thumbs: pd.DataFrame
    report: pd.DataFrame
    val: pd.DataFrame
    accuracy: float
    seconds: float


def run_thumbs_reward_model(cfg: RewardConfig | None = None, thumbs=None, val_pairs=None,
                            save: bool = True, live_plot=None,
                            name: str = "thumbs_reward_model") -> ThumbsRewardResult:
    """Train chapter 04's reward model (the SFT model plus a scalar head, same settings) on
    thumbs, measure it on gold-labelled held-out pairs, normalise it on SFT answers as
    chapter 04 does, and save artifact `name` unless `save` is False. Default data: a thumb
    on one answer of each of chapter 04's training pairs (`training_thumbs`, your own first)
    and chapter 04's held-out pairs labelled by gold."""
    cfg = cfg or RewardConfig.for_mode()
    seed_everything(cfg.seed)
    report = None
    if thumbs is None or val_pairs is None:
        train_pairs, heldout = reward_model_pairs(cfg)
        if thumbs is None:
            rater = SimulatedRater("simulated", temperature=cfg.rater_temperature, seed=cfg.seed)
            thumbs, report = training_thumbs(train_pairs, rater, cfg.seed)
        val_pairs = gold_pairs(heldout) if val_pairs is None else val_pairs
    model, tokenizer = new_reward_model(artifacts.require("sft"))
    start = time.perf_counter()
    history = train_thumbs_reward_model(model, tokenizer, thumbs, val_pairs, cfg, live_plot)
    seconds = time.perf_counter() - start
    accuracy = pair_fit(model, tokenizer, val_pairs)["accuracy"]
    normalise_on_sft_answers(model, tokenizer, cfg)
    if save:
        artifacts.save_model(model, tokenizer, name, {
            "config": cfg.__dict__, "gold_pair_accuracy": accuracy, "thumbs": len(thumbs),
            "share_up": float(thumbs["up"].mean()), "heldout_pairs": len(val_pairs),
            "seconds": seconds})
    return ThumbsRewardResult(cfg, model, tokenizer, history, thumbs, report, val_pairs,
                              accuracy, seconds)


# --- what a click is worth ----------------------------------------------------------------

@torch.no_grad()
def answer_features(model, tokenizer, prompts: list[str], answers: list[str],
                    batch_size: int = 64) -> torch.Tensor:
    """The frozen features the reward head reads (`pooled_features`) of each answer to its
    prompt: (n, d) on the CPU. `model`: a reward model built on the SFT model."""
    device = next(model.parameters()).device
    model.eval()
    max_tokens = context_length(model)
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = reward_inputs(tokenizer, prompts[start:start + batch_size],
                              answers[start:start + batch_size], max_tokens)
        out.append(pooled_features(model, **{k: v.to(device) for k, v in batch.items()})
                   .float().cpu())
    return torch.cat(out)


def fit_head(features: torch.Tensor, labels: torch.Tensor, l2: float,
             features_b: torch.Tensor | None = None) -> torch.Tensor:
    """A reward head w (d,) on frozen features, by L-BFGS on a convex loss plus l2 * |w|^2:
    thumbs (features_b None): binary cross-entropy of w . f + b with labels 1 (up) / 0 (down),
    the bias b appended as a last weight; pairs: Bradley-Terry, binary cross-entropy of
    w . (f_a - f_b) with labels P(A preferred) (ties 0.5). Returns w (with b last for thumbs)."""
    x = features - features_b if features_b is not None else torch.cat(
        [features, torch.ones(len(features), 1)], dim=1)
    w = torch.zeros(x.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(x @ w, labels)
                + l2 * (w[:features.shape[1]] ** 2).sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def head_accuracy(w: torch.Tensor, features_a: torch.Tensor, features_b: torch.Tensor,
                  target: torch.Tensor) -> float:
    """Share of decided pairs the head orders as `target` says (its bias cancels in pairs)."""
    d = features_a.shape[1]
    r_a, r_b = features_a @ w[:d], features_b @ w[:d]
    return ((r_a > r_b) == (target == 1.0)).float().mean().item()


def choose_l2(x_a: torch.Tensor, labels: torch.Tensor, x_b: torch.Tensor | None = None,
              grid=(1e-3, 1e-2, 1e-1, 1.0), folds: int = 3, seed: int = 0) -> float:
    """The l2 of `grid` with the lowest held-out loss in `folds`-fold cross-validation on the
    clicks themselves (no gold label is used): each kind gets its own best regularisation."""
    n = len(labels)
    if n < 2 * folds:
        return grid[len(grid) // 2]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    losses = {}
    for l2 in grid:
        total = 0.0
        for k in range(folds):
            held = order[k::folds]
            keep = torch.ones(n, dtype=torch.bool)
            keep[held] = False
            w = fit_head(x_a[keep], labels[keep], l2, None if x_b is None else x_b[keep])
            x = (x_a[held] - x_b[held] if x_b is not None
                 else torch.cat([x_a[held], torch.ones(len(held), 1)], dim=1))
            total += torch.nn.functional.binary_cross_entropy_with_logits(
                x @ w, labels[held]).item()
        losses[l2] = total
    return min(losses, key=losses.get)


def click_curve(pool: pd.DataFrame, features: dict[tuple[str, str], torch.Tensor],
                val: pd.DataFrame, sizes: list[int], seeds: list[int],
                rater_temperature: float = 0.5, progress: bool = True) -> pd.DataFrame:
    """Learning curves at equal clicks. For each seed and size n: n pairs drawn from `pool`
    (prompt, answer_a, answer_b), rated twice by a fresh simulated rater (that seed, noise
    `rater_temperature`): once as pairs (n pair clicks) and once as thumbs on one answer of
    each (n thumb clicks). A reward head is fitted on each (`fit_head`, l2 by cross-validation)
    and scored on `val`, gold-labelled pairs. `features[(prompt, answer)]`: the frozen
    features of every answer in pool and val (`answer_features`).
    Returns one row per kind, size and seed: kind ('pairs' or 'thumbs'), clicks, seed,
    accuracy, l2, seconds (rater time, `click_seconds`)."""
    too_big = [n for n in sizes if n > len(pool)]
    if too_big:
        raise ValueError(f"sizes {too_big} exceed the {len(pool)} pairs of the pool; choose "
                         f"sizes up to {len(pool)}.")
    def feat(prompts, answers) -> torch.Tensor:                     # (n, d)
        return torch.stack([features[(p, a)] for p, a in zip(prompts, answers, strict=True)])

    val_a = feat(val["prompt"], val["answer_a"])
    val_b = feat(val["prompt"], val["answer_b"])
    val_target = torch.tensor(val["target"].to_numpy(), dtype=torch.float32)
    rows = []
    for seed in tqdm(seeds, desc="learning curves", disable=not progress):
        order = random.Random(f"{seed}|pool").sample(range(len(pool)), len(pool))
        for n in sizes:
            drawn = pool.iloc[order[:n]].reset_index(drop=True)
            rater = SimulatedRater("simulated", temperature=rater_temperature, seed=seed)
            pairs = ratings_to_examples([rater.rate_pair(p, model="pool") for p in
                                         drawn[["prompt", "answer_a", "answer_b"]]
                                         .to_dict("records")])
            thumbs = thumbs_examples(thumbs_on_pairs(drawn, rater, seed))
            fits = {"pairs": (feat(pairs["prompt"], pairs["answer_a"]),
                              torch.tensor(pairs["target"].to_numpy(), dtype=torch.float32),
                              feat(pairs["prompt"], pairs["answer_b"])),
                    "thumbs": (feat(thumbs["prompt"], thumbs["answer"]),
                               torch.tensor(thumbs["up"].to_numpy(), dtype=torch.float32),
                               None)}
            for kind, (x_a, labels, x_b) in fits.items():
                l2 = choose_l2(x_a, labels, x_b, seed=seed)
                w = fit_head(x_a, labels, l2, x_b)
                seconds = sum(click_seconds(p, [a, b] if kind == "pairs" else [a])
                              for p, a, b in zip(drawn["prompt"], drawn["answer_a"],
                                                 drawn["answer_b"]))
                rows.append({"kind": kind, "clicks": n, "seed": seed, "l2": l2,
                             "accuracy": head_accuracy(w, val_a, val_b, val_target),
                             "rater_minutes": seconds / 60})
    return pd.DataFrame(rows)


def curve_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over seeds with a 95 % CI for each kind and number of clicks, and the
    mean rater minutes those clicks take."""
    rows = []
    for (kind, clicks), group in curve.groupby(["kind", "clicks"]):
        ci = mean_ci(group["accuracy"].to_numpy())
        rows.append({"kind": kind, "clicks": clicks, "seeds": len(group), "accuracy": ci.mean,
                     "low": ci.low, "high": ci.high,
                     "rater_minutes": group["rater_minutes"].mean()})
    return pd.DataFrame(rows)


# --- rater time ---------------------------------------------------------------------------

def click_seconds(prompt: str, answers: list[str]) -> float:
    """Assumed seconds for one click: read the question and the answers at
    READING_WORDS_PER_SECOND, then DECISION_SECONDS to decide and click."""
    n_words = len(words(prompt)) + sum(len(words(a)) for a in answers)
    return n_words / READING_WORDS_PER_SECOND + DECISION_SECONDS


def measured_click_seconds(records: list[dict]) -> dict[str, float]:
    """Median seconds between one click and the next, from the `time` of your own records,
    for each kind ('pair', 'single'); gaps over BREAK_SECONDS (a pause) and undo records
    are left out. A kind with no timed gap is missing from the result."""
    by_kind: dict[str, list[float]] = {}
    timed = sorted((feedback.record_time(r), r["kind"]) for r in records
                   if r.get("kind") in ("pair", "single"))
    for (before, _), (after, kind) in itertools.pairwise(timed):
        gap = (after - before).total_seconds()
        if 0 < gap <= BREAK_SECONDS:
            by_kind.setdefault(kind, []).append(gap)
    return {kind: statistics.median(gaps) for kind, gaps in by_kind.items()}
