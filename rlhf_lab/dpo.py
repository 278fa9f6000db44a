"""Direct preference optimisation (DPO, Rafailov et al., 2023): the policy learns from rated
pairs directly, with no reward model and no sampling during training.

Taught in notebooks/08_dpo.ipynb. It trains on the very ratings, and measures on the very
held-out split, that chapter 04's reward model uses, so the two can be compared.

The idea in three steps:
- RLHF maximises E[r(x, y)] - beta * KL(pi || pi_ref). The policy that does it best is
  pi*(y | x) = pi_ref(y | x) * exp(r(x, y) / beta) / Z(x).
- Turned round, every policy defines an implicit reward:
  r(x, y) = beta * (log pi(y | x) - log pi_ref(y | x)) + beta * log Z(x).
- In Bradley-Terry's P(chosen preferred) = sigmoid(r(chosen) - r(rejected)), chapter 04,
  beta * log Z(x) cancels, because both answers answer the same x. So the reward model's
  loss, applied to the implicit rewards, trains the policy itself.

`beta` plays the part of PPO's KL coefficient: the smaller it is, the further the policy
may move from its reference to fit the ratings. Log-probabilities of a whole answer are
sums over its tokens, the end-of-text token included (an answer's length is part of it).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import artifacts, distributed, report_card
from .causal_lm import check_model, context_length, load_causal_lm
from .config import Settings, seed_everything, setting
from .evaluation import Evaluation, evaluate_model
from .kl import token_logprobs
from .plots import redraw_due
from .preferences import preference_split, training_ratings
from .reward_model import RewardConfig, load_reward_model, preference_loss
from .sft import sft_data
from .training import IGNORE, LMData, lr_at, make_optimizer, optimizer_step


@dataclass
class DPOConfig(Settings):
    """Chapter 08: DPO on chapter 04's ratings, starting from the SFT model, which stays the
    frozen reference."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    beta: float = setting(0.3, "strength of the implicit KL leash: small beta lets the policy "
                          "move far from the reference (measured in full mode: 0.3 gave the "
                          "best gold score, 0.03 over-optimises)", range=(1e-3, 10.0))
    batch_size: int = setting(32, "rated pairs per optimiser step", range=(1, 4096))
    max_steps: int = setting(50, "optimiser steps (full mode: about one pass over the "
                             "ratings)", range=(1, 10**7), quick=40)
    lr: float = setting(2e-4, "peak learning rate of AdamW", range=(1e-7, 1.0))
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak",
                                  range=(0.0, 1.0))
    warmup_steps: int = setting(10, "steps of linear warm-up", range=(0, 10**6), quick=5)
    weight_decay: float = setting(0.0, "AdamW weight decay on matrices (0: the reference "
                                  "alone holds the policy back)", range=(0.0, 1.0))
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)",
                               range=(0.0, 100.0))
    max_tokens: int = setting(96, "longest prompt + answer in tokens; longer ones are cut",
                              range=(16, 4096))
    eval_every: int = setting(10, "steps between held-out measurements", range=(1, 10**6))


# --- the data -----------------------------------------------------------------------------

def reward_model_preferences() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The preferences chapter 04's reward model trained on, and its held-out split, read
    with the settings saved with the reward model (artifact 'reward_model'). Ratings added
    since it was trained are included, as chapter 04 would include them if run again."""
    saved = artifacts.read_metadata("reward_model")["config"]
    cfg = RewardConfig(**{f.name: saved[f.name] for f in dataclasses.fields(RewardConfig)
                          if f.name in saved})
    records, _ = training_ratings(cfg)
    return preference_split(records, cfg.heldout_fraction, cfg.seed)


def answer_data(tokenizer, prompts: list[str], answers: list[str], max_tokens: int) -> LMData:
    """Each prompt + answer + end-of-text tokenised as in SFT (chapter 02's `sft_data`):
    labels are IGNORE on the prompt and the padding, so they mark the answer tokens."""
    demos = [{"prompt": p, "response": a} for p, a in zip(prompts, answers, strict=True)]
    return sft_data(tokenizer, demos, max_tokens)


# --- log-probabilities of whole answers ---------------------------------------------------

def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log pi(answer | prompt): the sum of the log-probs of the answer tokens, end-of-text
    included, one number per row: (batch, seq) each -> (batch,).

    Answer tokens are those whose label is not IGNORE (see `answer_data`). Chapter 05's
    `token_logprobs` counts positions from the attention mask, so left and right padding
    give the same numbers. `temperature`: that of sampling (chapter 11). Gradients flow;
    the caller picks torch.no_grad.
    """
    logprobs = token_logprobs(model, input_ids, attention_mask, temperature)  # (batch, seq-1)
    answer = labels[:, 1:] != IGNORE                                 # (batch, seq-1)
    return torch.where(answer, logprobs, 0.0).sum(-1)                # (batch,)


def trimmed_batch(data: LMData, rows: torch.Tensor, device) -> dict[str, torch.Tensor]:
    """Rows of `data` on `device`, without the columns that are padding in every row."""
    batch = data.batch(rows, device)
    keep = batch["attention_mask"].bool().any(0)                     # (seq,)
    return {name: tensor[:, keep] for name, tensor in batch.items()}


@torch.no_grad()
def all_sequence_logprobs(model, data: LMData, batch_size: int = 64,
                          temperature: float = 1.0) -> torch.Tensor:
    """`sequence_logprobs` of every row of `data`, without gradients: (rows,) on the CPU.
    Rows go in batches of similar length, so little time is spent on padding. The model is
    put in eval mode and back."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = data.attention_mask.sum(-1).argsort()                    # (rows,) shortest first
    out = torch.zeros(len(data))
    for start in range(0, len(data), batch_size):
        rows = order[start:start + batch_size]
        out[rows] = sequence_logprobs(model, **trimmed_batch(data, rows, device),
                                      temperature=temperature).float().cpu()
    model.train(was_training)
    return out


# --- the loss -----------------------------------------------------------------------------

def implicit_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                     beta: float) -> torch.Tensor:
    """beta * (log pi(y | x) - log pi_ref(y | x)): the reward the policy implicitly assigns
    to answer y, up to beta * log Z(x), which every answer to x shares. 0 where pi = pi_ref."""
    return beta * (logprobs - ref_logprobs)


def dpo_loss(chosen_logprobs: torch.Tensor, rejected_logprobs: torch.Tensor,
             ref_chosen_logprobs: torch.Tensor, ref_rejected_logprobs: torch.Tensor,
             beta: float, target: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss: chapter 04's Bradley-Terry loss on the implicit rewards.

    All inputs (batch,): log-probs of whole answers under the policy and the reference.
    loss = mean of -log sigmoid(chosen_rewards - rejected_rewards) for decided pairs
    (target 1, the default). Tie rule, as in `reward_model.preference_loss`: a tie has
    target 0.5 and counts as half a win each way, so its loss is the mean of both orders
    and is smallest when the two implicit rewards are equal.
    Returns (loss, chosen_rewards, rejected_rewards); the rewards are detached, for watching.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, not {beta}; DPOConfig.beta's range is [1e-3, 10].")
    chosen_rewards = implicit_rewards(chosen_logprobs, ref_chosen_logprobs, beta)
    rejected_rewards = implicit_rewards(rejected_logprobs, ref_rejected_logprobs, beta)
    if target is None:
        target = torch.ones_like(chosen_rewards)
    loss = preference_loss(chosen_rewards, rejected_rewards, target)
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


def implicit_reward_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                             target: torch.Tensor) -> float:
    """Share of decided pairs (target 1; ties left out) whose chosen answer gets the higher
    implicit reward. Equal rewards count half, a coin flip: the policy has no preference. So
    at the start, when the policy is its reference and every implicit reward is 0, it is 0.5."""
    decided = target == 1.0
    if not decided.any():
        return float("nan")
    right = (chosen_rewards > rejected_rewards).float() + 0.5 * (chosen_rewards == rejected_rewards)
    return right[decided].mean().item()


# --- training -----------------------------------------------------------------------------

@dataclass
class TokenizedPreferences:
    """Preferences, tokenised: rows 0..n-1 of `data` are the chosen answers, rows n..2n-1 the
    rejected ones; `ref_logprobs` (2n,) are the reference's, computed once (it never changes)."""

    data: LMData
    target: torch.Tensor           # (n,) 1.0 decided, 0.5 tie
    ref_logprobs: torch.Tensor     # (2n,)

    def __len__(self) -> int:
        return len(self.target)


def tokenize_preferences(reference, tokenizer, pairs: pd.DataFrame,
                         max_tokens: int) -> TokenizedPreferences:
    """Tokenise chosen and rejected answers into one LMData and score them under `reference`."""
    prompts = list(pairs["prompt"]) * 2
    data = answer_data(tokenizer, prompts, list(pairs["chosen"]) + list(pairs["rejected"]),
                       max_tokens)
    target = torch.tensor(pairs["target"].to_numpy(), dtype=torch.float32)
    return TokenizedPreferences(data, target, all_sequence_logprobs(reference, data))


def preference_metrics(policy, pairs: TokenizedPreferences, beta: float) -> dict[str, float]:
    """Loss, accuracy, mean implicit rewards of chosen and rejected answers, and their mean
    margin, of the policy on all of `pairs`, without gradients."""
    logprobs = all_sequence_logprobs(policy, pairs.data)             # (2n,)
    n = len(pairs)
    loss, chosen, rejected = dpo_loss(logprobs[:n], logprobs[n:], pairs.ref_logprobs[:n],
                                      pairs.ref_logprobs[n:], beta, pairs.target)
    return {"loss": loss.item(),
            "accuracy": implicit_reward_accuracy(chosen, rejected, pairs.target),
            "chosen_reward": chosen.mean().item(), "rejected_reward": rejected.mean().item(),
            "margin": (chosen - rejected).mean().item()}


def train_dpo(policy, reference, tokenizer, train_pairs: pd.DataFrame,
              val_pairs: pd.DataFrame, cfg: DPOConfig, live_plot=None,
              progress: bool = True) -> pd.DataFrame:
    """Train `policy` with the DPO loss for cfg.max_steps steps; `reference` stays frozen.

    Each step takes cfg.batch_size random pairs (a seeded generator picks them) and scores
    their chosen and rejected answers in one batch. The history has a row at step 0 (policy
    = reference: val_loss log 2, val_accuracy 0.5), every cfg.eval_every steps and at the
    end: step, lr, train_loss and train_accuracy (means since the last row), and on the
    held-out pairs val_loss, val_accuracy, chosen_reward, rejected_reward and margin (means).
    A NaN or infinite loss raises TrainingDiverged with advice. `live_plot(history)` is
    called at every row (only at the last where live plots are off: `plots.redraw_due`).
    Under `accelerate launch`, each process takes its share of a batch.
    """
    device = next(policy.parameters()).device
    max_tokens = min(cfg.max_tokens, context_length(policy))
    train = tokenize_preferences(reference, tokenizer, train_pairs, max_tokens)
    val = tokenize_preferences(reference, tokenizer, val_pairs, max_tokens)
    optimizer = make_optimizer(policy, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    n = len(train)
    history, losses, accuracies = [], [], []

    def measure(step: int, lr: float) -> None:
        val_metrics = preference_metrics(policy, val, cfg.beta)
        history.append({"step": step, "lr": lr,
                        "train_loss": sum(losses) / len(losses) if losses else float("nan"),
                        "train_accuracy": sum(accuracies) / len(accuracies) if accuracies
                        else float("nan"),
                        "val_loss": val_metrics.pop("loss"),
                        "val_accuracy": val_metrics.pop("accuracy"), **val_metrics})
        losses.clear()
        accuracies.clear()
        if live_plot is not None and redraw_due(final=step == cfg.max_steps, measured=True):
            live_plot(pd.DataFrame(history))

    measure(0, 0.0)
    policy.train()
    bar = tqdm(range(cfg.max_steps), desc="DPO",
               disable=not (progress and distributed.is_main_process()))
    for step in bar:
        lr = lr_at(step, cfg)
        idx = distributed.shard(torch.randint(n, (cfg.batch_size,), generator=generator))
        rows = torch.cat([idx, idx + n])                                # chosen, then rejected
        with distributed.autocast():
            logprobs = sequence_logprobs(policy, **trimmed_batch(train.data, rows, device))  # (2k,)
        ref, target = train.ref_logprobs[rows].to(device), train.target[idx].to(device)
        k = len(idx)
        loss, chosen, rejected = dpo_loss(logprobs[:k].float(), logprobs[k:].float(), ref[:k],
                                          ref[k:], cfg.beta, target)
        optimizer_step(policy, optimizer, loss, cfg, step, lr,
                       what=f"DPO loss (beta {cfg.beta:g})")
        losses.append(distributed.mean(loss))
        accuracies.append(distributed.mean(
            implicit_reward_accuracy(chosen.cpu(), rejected.cpu(), target.cpu())))
        if (step + 1) % cfg.eval_every == 0 or step == cfg.max_steps - 1:
            measure(step + 1, lr)
            bar.set_postfix(loss=f"{history[-1]['val_loss']:.3f}",
                            accuracy=f"{history[-1]['val_accuracy']:.2f}")
    policy.eval()
    return pd.DataFrame(history)


# --- the whole chapter --------------------------------------------------------------------

@dataclass
class DPOResult:
    """What chapter 08 shows: settings, the trained policy and its frozen reference, the
    history, the pairs, and the report card's evaluation of the starting (SFT) model and of
    the DPO policy (the same questions and seeds as every other model), so DPO, PPO and
    best-of-n share one frontier."""

    cfg: DPOConfig
    policy: torch.nn.Module
    reference: torch.nn.Module
    tokenizer: object
    history: pd.DataFrame
    train: pd.DataFrame            # preference pairs trained on
    val: pd.DataFrame              # held-out preference pairs
    before: Evaluation             # the starting (SFT) model on the report card's evaluation
    after: Evaluation              # the DPO policy: same questions, same seeds
    accuracy: float                # implicit-reward accuracy on held-out decided pairs
    seconds: float                 # training time

    @property
    def kl(self) -> float:
        """Mean KL of the DPO policy from its reference, nats per held-out answer."""
        return self.after.summary()["kl"]


def run_dpo(cfg: DPOConfig | None = None, pairs: tuple[pd.DataFrame, pd.DataFrame] | None = None,
            save: bool = True, live_plot=None, build_missing: bool = False, start_from=None,
            progress: bool = True, before: Evaluation | None = None,
            name: str = "dpo") -> DPOResult:
    """Chapter 08 end to end: the SFT model becomes the policy and, frozen, its reference;
    DPO trains on `pairs` (train, held-out), by default `reward_model_preferences()`; the
    starting model (unless `before` is given: its evaluation, e.g. from an earlier run) and
    the trained policy are measured with the report card's evaluation. The reward model only
    grades, as in chapter 06: DPO never sees it. Saves artifact 'dpo' (the policy, its
    tokenizer and history.csv) and puts `name` on the report card, unless `save` is False
    (a beta sweep). `build_missing` builds missing artifacts first, in quick mode;
    `start_from`: a model folder or hub name to start from instead of the 'sft' artifact
    (the command line's `python -m rlhf_lab dpo --model`)."""
    cfg = cfg or DPOConfig.for_mode()
    seed_everything(cfg.seed)
    policy, tokenizer = (load_causal_lm(check_model(start_from)) if start_from else
                         artifacts.load_model("sft", build_if_missing=build_missing))
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    reward_model, rm_tokenizer = load_reward_model(build_if_missing=build_missing)
    train, val = pairs if pairs is not None else reward_model_preferences()
    models = dict(reference=reference, reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                  progress=progress)
    if before is None:
        before = evaluate_model(policy, tokenizer, "sft", **models)
    start = time.perf_counter()
    history = train_dpo(policy, reference, tokenizer, train, val, cfg, live_plot, progress)
    seconds = time.perf_counter() - start
    after = evaluate_model(policy, tokenizer, name, **models)
    result = DPOResult(cfg, policy, reference, tokenizer, history, train, val, before, after,
                       float(history.val_accuracy.iloc[-1]), seconds)
    if save:
        def write(folder) -> None:
            policy.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            history.to_csv(folder / "history.csv", index=False)
        summary, start_summary = after.summary(), before.summary()
        artifacts.save_dir("dpo", write, {
            "config": cfg.__dict__, "accuracy": result.accuracy, "kl": result.kl,
            "gold_before": start_summary["gold"], "gold_after": summary["gold"],
            "reward_before": start_summary["reward"], "reward_after": summary["reward"],
            "train_pairs": len(train), "heldout_pairs": len(val), "seconds": seconds})
        report_card.record(after, notebook="08_dpo",
                           setting=f"beta {cfg.beta:g}, {len(train)} rated pairs, "
                                   f"{cfg.max_steps} steps")
    return result
