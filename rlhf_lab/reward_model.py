"""The reward model: the SFT model with a scalar head, trained on pairwise ratings.

Taught in notebooks/04_reward_model.ipynb; chapter 06 (PPO) scores its answers with
`score_answers`, and chapter 09 retrains it on a class's ratings.

- The model reads `User: <question>\\nAssistant: <answer><|endoftext|>` and maps the hidden
  state of the last real token (the end-of-text token) to one number, the reward.
- The Bradley-Terry model says P(A preferred to B) = sigmoid(r(A) - r(B)); training
  minimises the negative log of that probability on the raters' choices.
- Accuracy is measured on held-out pairs against two baselines: chance (0.5) and the noise
  ceiling, the best any model could reach when the raters themselves are noisy.
- Rewards are normalised to mean 0 and standard deviation 1 on answers of the SFT policy,
  so that chapter 06 starts from rewards of a known scale.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import artifacts, distributed
from .causal_lm import check_model, context_length, load_causal_lm
from .config import Settings, get_device, seed_everything, setting
from .generation import generate
from .model import position_ids
from .plots import redraw_due
from .preferences import (
    SAMPLE_FILE,
    SAMPLE_TEMPERATURE,
    ratings_to_examples,
    split_ratings,
    training_ratings,
)
from .raters import SimulatedRater
from .tokenizer import load_tokenizer
from .training import lr_at, make_optimizer, optimizer_step
from .world import World, format_dialogue

CHANCE = 0.5                   # accuracy of a coin flip on pairs that are not ties


# --- the model ----------------------------------------------------------------------------

def build_reward_model(path_or_name: str | Path):
    """The SFT model's transformer plus a new scalar head `score` (hidden size -> 1, random
    init). Any causal LM whose `...ForSequenceClassification` has a `score` head works
    (GPT-2, Llama, Mistral, Qwen, ...).

    The language-model head is dropped; `transformers` reports `score.weight` as newly
    initialised. A model without a padding token (GPT-2 from the hub) pads with end-of-text.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()      # the new head is meant to be missing from the checkpoint
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path_or_name), num_labels=1)
    finally:
        logging.set_verbosity(verbosity)
    if not isinstance(getattr(model, "score", None), torch.nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear `score` head, which rewards() "
                         "reads; use a causal LM whose sequence classifier has one (GPT-2, "
                         "Llama, Mistral, Qwen, ...).")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return model


def new_reward_model(sft_path: str | Path):
    """(model, tokenizer): the SFT model at `sft_path` with a new scalar head
    (`build_reward_model`), on the device, and its tokenizer."""
    return build_reward_model(sft_path).to(get_device()), load_tokenizer(sft_path)


@dataclass
class RewardConfig(Settings):
    """Chapter 04: a reward model (the SFT model plus a scalar head) trained on pairwise ratings."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    ratings: int = setting(1800, "pairwise ratings to train on: all of yours, then the shipped "
                           "sample, then the simulated rater fills up on chapter 03's pairs",
                           range=(20, 1_000_000), quick=300)
    heldout_fraction: float = setting(0.15, "share of ratings kept out of training to measure "
                                      "accuracy", range=(0.05, 0.5))
    batch_size: int = setting(32, "rated pairs per optimiser step", range=(1, 4096))
    max_steps: int = setting(250, "optimiser steps", range=(1, 10**7), quick=60)
    lr: float = setting(1e-4, "peak learning rate of AdamW (lower than SFT's: a new head on "
                        "a trained body, and few ratings to overfit)", range=(1e-6, 1.0),
                        quick=2e-4)
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak",
                                  range=(0.0, 1.0))
    warmup_steps: int = setting(20, "steps of linear warm-up", range=(0, 10**6), quick=10)
    weight_decay: float = setting(0.1, "AdamW weight decay on matrices", range=(0.0, 1.0))
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)",
                               range=(0.0, 100.0))
    eval_every: int = setting(25, "steps between held-out evaluations", range=(1, 10**6),
                              quick=20)
    rater_temperature: float = setting(0.5, "noise of the simulated rater who fills up the "
                                       "ratings (0: always the gold choice)", range=(0.0, 10.0))
    normalise_samples: int = setting(400, "answers of the SFT model whose rewards set the "
                                     "normalisation (mean 0, std 1)", range=(2, 100_000),
                                     quick=100)


def load_reward_model(build_if_missing: bool = False, device=None):
    """The reward model and tokenizer saved by `run_reward_model` (artifact 'reward_model')."""
    from transformers import AutoModelForSequenceClassification

    path = artifacts.require("reward_model", build_if_missing)
    artifacts.quiet_transformers()
    model = AutoModelForSequenceClassification.from_pretrained(path).to(device or get_device())
    model.eval()
    return model, load_tokenizer(path)


def reward_inputs(tokenizer, prompts: list[str], answers: list[str],
                  max_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """Token ids of each dialogue plus the end-of-text token, padded into one batch.

    The end-of-text token closes the answer, so the reward is read where the model has seen
    all of it. A row longer than `max_tokens` keeps its first max_tokens - 1 tokens and the
    end-of-text token. Padding goes where `tokenizer.padding_side` says (left by default).
    Returns input_ids and attention_mask, (batch, seq) each.
    """
    texts = [format_dialogue(p, a) for p, a in zip(prompts, answers, strict=True)]
    rows = [ids[: max_tokens - 1] if max_tokens else ids for ids in tokenizer(texts).input_ids]
    rows = [ids + [tokenizer.eos_token_id] for ids in rows]
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    left = tokenizer.padding_side == "left"
    for i, ids in enumerate(rows):
        cols = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[i, cols] = torch.tensor(ids)
        attention_mask[i, cols] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One raw reward per row: the head applied to the hidden state of the last real token.

    Why not `model(...).logits`? GPT2ForSequenceClassification pools there at the rightmost
    token that is not `pad_token_id`. That is right for our tokenizer, whose padding token is
    its own, but wrong for a model that pads with end-of-text (GPT-2 from the hub: the
    end-of-text token closing the answer would count as padding), so we pool by the
    attention mask, which says exactly which tokens are real, whatever the padding side.
    Position ids count real tokens only, so a left-padded row gets the reward it gets alone.
    """
    return model.score(pooled_features(model, input_ids, attention_mask)).squeeze(-1).float()


def pooled_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token, what the head reads: (batch, d).
    Chapter 12's learning curves fit a head alone on these features of the SFT model."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids(attention_mask)).last_hidden_state
    columns = torch.arange(input_ids.shape[1], device=input_ids.device)        # (seq,)
    last = (columns * attention_mask).argmax(-1)                               # (batch,)
    return hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]


def normalised(model, r: torch.Tensor) -> torch.Tensor:
    """(r - mean) / std with the statistics `set_normalisation` stored (none stored: r)."""
    mean = getattr(model.config, "reward_mean", 0.0)
    return (r - mean) / getattr(model.config, "reward_std", 1.0)


@torch.no_grad()
def score_answers(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 64,
                  normalise: bool = True) -> torch.Tensor:
    """The reward of each answer to its prompt, shape (n,), on the CPU, without gradients.

    `normalise` applies the stored normalisation (see `set_normalisation`); PPO uses that.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    max_tokens = context_length(model)
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = reward_inputs(tokenizer, prompts[start:start + batch_size],
                              answers[start:start + batch_size], max_tokens)
        out.append(rewards(model, **{k: v.to(device) for k, v in batch.items()}).cpu())
    model.train(was_training)
    r = torch.cat(out) if out else torch.zeros(0)
    return normalised(model, r) if normalise else r


# --- the loss -----------------------------------------------------------------------------

def preference_loss(r_a: torch.Tensor, r_b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss, the mean over pairs of -log P(the rater's choice).

    P(A preferred) = sigmoid(r_a - r_b). Target 1 (A chosen): -log sigmoid(r_a - r_b);
    target 0 (B chosen): -log sigmoid(r_b - r_a). Tie rule: a tie has target 0.5, half a
    win each way, so its loss is the mean of the two and is smallest when r_a = r_b. All
    three are binary cross-entropy on the logit r_a - r_b with a soft target.
    """
    return torch.nn.functional.binary_cross_entropy_with_logits(
        r_a - r_b, target.to(r_a.dtype))


# --- the data -----------------------------------------------------------------------------

# --- measuring ----------------------------------------------------------------------------

def pair_rewards(model, tokenizer, examples: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw rewards of answer A and of answer B of every example, (n,) each."""
    prompts = list(examples["prompt"])
    return (score_answers(model, tokenizer, prompts, list(examples["answer_a"]), normalise=False),
            score_answers(model, tokenizer, prompts, list(examples["answer_b"]), normalise=False))


def ordering_accuracy(r_a: torch.Tensor, r_b: torch.Tensor, target: torch.Tensor) -> float:
    """Share of decided pairs (target 0 or 1; ties left out) where r_a > r_b exactly when A won."""
    decided = target != 0.5
    right = (r_a > r_b) == (target == 1.0)
    return right[decided].float().mean().item() if decided.any() else float("nan")


def pair_fit(model, tokenizer, examples: pd.DataFrame) -> dict:
    """How well the reward model fits rated pairs it may never have seen, from one scoring
    pass: `accuracy`, the share of decided (non-tie) pairs it orders as the rater chose, and
    `loss`, the mean Bradley-Terry loss (ties included). Training measures its held-out pairs
    with it; chapter 09 measures a reward model before and after retraining."""
    r_a, r_b = pair_rewards(model, tokenizer, examples)
    target = torch.tensor(examples["target"].to_numpy())
    return {"accuracy": ordering_accuracy(r_a, r_b, target),
            "loss": preference_loss(r_a, r_b, target).item()}


def pair_accuracy(model, tokenizer, examples: pd.DataFrame) -> float:
    """Share of decided (non-tie) pairs that the reward orders as the rater chose."""
    return pair_fit(model, tokenizer, examples)["accuracy"]


def noise_ceiling(examples: pd.DataFrame,
                  rater: SimulatedRater | dict[str, SimulatedRater]) -> float:
    """The best expected accuracy any model can reach on the decided pairs of `examples`
    given the raters' noise: the mean over pairs of max(p, 1 - p), p = P(A chosen).

    A model that always picks the likelier side is right with probability max(p, 1 - p);
    no model can do better on average, because the rater's coin flip is unpredictable.
    p = rater.prob_a_preferred, the Bradley-Terry probability from the gold scores. A
    simulated rater calls a tie when the gold scores differ by less than its tie_margin,
    with no coin flipped, so on a pair that is not a tie p already is P(A | not a tie).
    `rater` made every choice, or is a dict from the examples' `rater` names to the
    simulated rater who made (or stands for) each one's choices: see `ceiling_raters`.
    The ceiling holds in expectation: on a few pairs, luck can take a model above it.
    """
    decided = examples[examples["target"] != 0.5]
    if decided.empty:
        return float("nan")
    p = torch.tensor([(rater[row.rater] if isinstance(rater, dict) else rater)
                      .prob_a_preferred(row.prompt, row.answer_a, row.answer_b)
                      for row in decided.itertuples()])
    return torch.maximum(p, 1 - p).mean().item()


def ceiling_raters(examples: pd.DataFrame, cfg: RewardConfig) -> dict[str, SimulatedRater]:
    """For each rater of `examples`, the simulated rater whose noise is theirs: the shipped
    sample's rater has temperature SAMPLE_TEMPERATURE, the rater who fills up has
    cfg.rater_temperature, and it also stands in for people, whose noise is unknown."""
    sample = SimulatedRater("sample", temperature=SAMPLE_TEMPERATURE)
    filling = SimulatedRater("simulated", temperature=cfg.rater_temperature)
    return {name: sample if name == SAMPLE_FILE.removesuffix(".jsonl") else filling
            for name in examples["rater"].unique()}


# --- training -----------------------------------------------------------------------------

def train_reward_model(model, tokenizer, train_examples: pd.DataFrame, val_examples: pd.DataFrame,
                       cfg: RewardConfig, live_plot=None, progress: bool = True) -> pd.DataFrame:
    """Train on `train_examples` for cfg.max_steps steps of the Bradley-Terry loss.

    Each step scores both answers of cfg.batch_size random pairs (a seeded generator picks
    them) in one batch. Every cfg.eval_every steps (and at the end) one history row is added:
    step, mean train_loss and train_accuracy since the last row, val_loss and val_accuracy
    on `val_examples`, and lr. `live_plot`, if given, is called with the history so far at
    each row (only at the last where live plots are off: `plots.redraw_due`);
    `progress` shows a progress bar.
    Under `accelerate launch`, each process scores its share of the pairs (distributed.py).
    """
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    max_tokens = context_length(model)
    history, losses, accuracies = [], [], []
    model.train()
    bar = tqdm(range(cfg.max_steps), desc="training the reward model",
               disable=not (progress and distributed.is_main_process()))
    for step in bar:
        lr = lr_at(step, cfg)
        idx = torch.randint(len(train_examples), (cfg.batch_size,), generator=generator)
        batch = train_examples.iloc[distributed.shard(idx).tolist()]
        answers = list(batch["answer_a"]) + list(batch["answer_b"])
        inputs = reward_inputs(tokenizer, list(batch["prompt"]) * 2, answers, max_tokens)
        with distributed.autocast():
            r = rewards(model, **{k: v.to(device) for k, v in inputs.items()})   # (2 * batch,)
        r_a, r_b = r[: len(batch)], r[len(batch):]
        target = torch.tensor(batch["target"].to_numpy(), device=device)
        loss = preference_loss(r_a, r_b, target)
        optimizer_step(model, optimizer, loss, cfg, step, lr, what="reward model's loss")
        losses.append(distributed.mean(loss))
        accuracies.append(distributed.mean(
            ordering_accuracy(r_a.detach().cpu(), r_b.detach().cpu(), target.cpu())))
        if (step + 1) % cfg.eval_every == 0 or step == cfg.max_steps - 1:
            val = pair_fit(model, tokenizer, val_examples)
            history.append({"step": step + 1, "train_loss": sum(losses) / len(losses),
                            "train_accuracy": pd.Series(accuracies).mean(),
                            "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": lr})
            losses, accuracies = [], []
            bar.set_postfix(loss=f"{history[-1]['val_loss']:.3f}",
                            accuracy=f"{history[-1]['val_accuracy']:.2f}")
            if live_plot is not None and redraw_due(final=step == cfg.max_steps - 1,
                                                    measured=True):
                live_plot(pd.DataFrame(history))
    model.eval()
    return pd.DataFrame(history)


# --- normalisation ------------------------------------------------------------------------

def reward_stats(model, tokenizer, prompts: list[str], answers: list[str]) -> tuple[float, float]:
    """Mean and standard deviation of the raw rewards of these answers."""
    r = score_answers(model, tokenizer, prompts, answers, normalise=False)
    return r.mean().item(), r.std().item()


def set_normalisation(model, mean: float, std: float) -> None:
    """Store the statistics in `model.config` (reward_mean, reward_std); `save_pretrained`
    writes them to config.json, so `normalised` and `score_answers` apply them after a reload."""
    if not std > 0:
        raise ValueError(f"std must be > 0, not {std}: every answer got the same reward; "
                         "train longer or score more varied answers.")
    model.config.reward_mean, model.config.reward_std = float(mean), float(std)


def normalise_on_sft_answers(model, tokenizer, cfg: RewardConfig,
                             start_from=None) -> tuple[float, float]:
    """Normalise the rewards to mean 0 and std 1 on cfg.normalise_samples answers of the SFT
    model (`start_from`: that model folder instead), as every reward model of the course is;
    returns the raw (mean, std)."""
    mean, std = reward_stats(model, tokenizer,
                             *sft_answers(cfg.normalise_samples, cfg.seed, start_from))
    set_normalisation(model, mean, std)
    return mean, std


# --- the whole chapter --------------------------------------------------------------------

@dataclass
class RewardResult:
    """Everything chapter 04 shows: the trained model, its history and its measurements."""

    cfg: RewardConfig
    model: torch.nn.Module
    tokenizer: object
    history: pd.DataFrame
    report: pd.DataFrame          # how many ratings came from whom
    train: pd.DataFrame           # training examples
    val: pd.DataFrame             # held-out examples
    accuracy: float               # on held-out decided pairs
    noise_ceiling: float          # the best expected accuracy on those pairs
    chance: float
    reward_mean: float            # raw reward statistics on SFT answers
    reward_std: float
    train_seconds: float


def run_reward_model(cfg: RewardConfig | None = None, save: bool = True, live_plot=None,
                     build_missing: bool = False, start_from=None) -> RewardResult:
    """Collect ratings, train the reward model, measure it, normalise it, save 'reward_model'.

    `build_missing` builds a missing SFT model or missing pairs first, in quick mode.
    `start_from`: a model folder or hub name to use instead of the 'sft' artifact (any causal
    LM; the command line's `python -m rlhf_lab reward-model --model`)."""
    cfg = cfg or RewardConfig.for_mode()
    seed_everything(cfg.seed)
    sft_path = (check_model(start_from) if start_from
                else artifacts.require("sft", build_if_missing=build_missing))
    artifacts.require("pairs", build_if_missing=build_missing)
    records, report = training_ratings(cfg)
    train, val = split_ratings(ratings_to_examples(records), cfg.heldout_fraction, cfg.seed)
    model, tokenizer = new_reward_model(sft_path)
    start = time.perf_counter()
    history = train_reward_model(model, tokenizer, train, val, cfg, live_plot=live_plot)
    train_seconds = time.perf_counter() - start
    accuracy = pair_accuracy(model, tokenizer, val)
    ceiling = noise_ceiling(val, ceiling_raters(val, cfg))
    mean, std = normalise_on_sft_answers(model, tokenizer, cfg, start_from)
    if save:
        artifacts.save_model(model, tokenizer, "reward_model", {
            "config": cfg.__dict__, "accuracy": accuracy, "noise_ceiling": ceiling,
            "chance": CHANCE, "ratings": report.to_dict("records"), "train_pairs": len(train),
            "heldout_pairs": len(val), "reward_mean": mean, "reward_std": std})
    return RewardResult(cfg, model, tokenizer, history, report, train, val, accuracy, ceiling,
                        CHANCE, mean, std, train_seconds)


def sft_answers(n: int, seed: int, start_from=None) -> tuple[list[str], list[str]]:
    """`n` training questions (a seeded sample) and the SFT model's answers at temperature 1
    (`start_from`: that model folder or hub name instead of the 'sft' artifact)."""
    policy, tokenizer = load_causal_lm(start_from) if start_from else artifacts.load_model("sft")
    questions = World().split("train")
    prompts = [q.text for q in random.Random(seed).sample(questions, min(n, len(questions)))]
    return prompts, generate(policy, tokenizer, prompts, temperature=1.0, seed=seed)


def fit_reward_model(train: pd.DataFrame, val: pd.DataFrame, cfg: RewardConfig | None = None,
                     live_plot=None, progress: bool = True):
    """A reward model trained as chapter 04 trains it, on other ratings (chapter 13: a biased
    rater's): the 'sft' model plus a new head, trained on `train`, measured on `val`,
    normalised on SFT answers. Nothing is saved. Returns (model, tokenizer, history)."""
    cfg = cfg or RewardConfig.for_mode()
    seed_everything(cfg.seed)
    model, tokenizer = new_reward_model(artifacts.require("sft"))
    history = train_reward_model(model, tokenizer, train, val, cfg, live_plot, progress)
    normalise_on_sft_answers(model, tokenizer, cfg)
    return model.requires_grad_(False), tokenizer, history
