"""KTO: learning a policy straight from thumbs up and down (Ethayarajh et al., 2024).

Taught in notebooks/12_thumbs.ipynb. DPO (dpo.py) needs pairs: two
answers to one question and which one is better. A thumb rates one answer alone, as chat
products ask for. KTO turns that into a loss with the implicit reward DPO uses,
r(x, y) = log pi(y|x) - log pi_ref(y|x), measured against a reference point z_0: how far the
policy has moved from the reference on answers in general.

    value of a thumbs-up answer:    lambda_D * sigmoid(beta * (r - z_0))
    value of a thumbs-down answer:  lambda_U * sigmoid(beta * (z_0 - r))
    loss = mean over answers of (lambda_y - value)

So an answer with a thumb up is pushed to gain more log-probability than the policy gains on
average, and one with a thumb down to lose more. z_0 is the KL of the policy from the
reference, estimated on mismatched pairs (each question with another question's answer), clamped
at 0 and given no gradient, as in the paper and TRL.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import artifacts, distributed, report_card
from .causal_lm import context_length
from .config import seed_everything, setting
from .dpo import (
    DPOConfig,
    all_sequence_logprobs,
    answer_data,
    sequence_logprobs,
    trimmed_batch,
)
from .evaluation import Evaluation, evaluate_model
from .plots import redraw_due
from .reward_model import load_reward_model
from .training import LMData, lr_at, make_optimizer, optimizer_step


def kto_reference_point(mismatched_logratios: torch.Tensor) -> torch.Tensor:
    """z_0: the mean of log pi(y'|x) - log pi_ref(y'|x) over answers y' written for other
    questions (an estimate of KL(pi || pi_ref)), clamped at 0, with no gradient. (batch,) -> ()."""
    return mismatched_logratios.detach().mean().clamp(min=0.0)


def kto_loss(logratios: torch.Tensor, thumbs_up: torch.Tensor, reference_point: torch.Tensor,
             beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The KTO loss and each answer's value.

    logratios: (batch,) log pi(y|x) - log pi_ref(y|x) of each rated answer; thumbs_up:
    (batch,) bool, True for a thumb up; reference_point: z_0 (`kto_reference_point`). The loss
    is the mean of lambda_y - value over the batch (lambda_D = desirable_weight for thumbs up,
    lambda_U = undesirable_weight for thumbs down). Returns (loss, values (batch,))."""
    if beta <= 0:
        raise ValueError(f"beta = {beta} must be > 0 (the paper uses 0.1; try 0.1 to 1).")
    up = thumbs_up.bool()
    margin = beta * (logratios - reference_point)                  # (batch,)
    values = torch.where(up, desirable_weight * torch.sigmoid(margin),
                         undesirable_weight * torch.sigmoid(-margin))
    weights = torch.where(up, torch.full_like(values, desirable_weight),
                          torch.full_like(values, undesirable_weight))
    return (weights - values).mean(), values


def kto_weights(n_up: int, n_down: int, ratio: float = 1.0) -> tuple[float, float]:
    """lambda_D, lambda_U for n_up thumbs up and n_down thumbs down, such that
    lambda_D * n_up / (lambda_U * n_down) = ratio (the paper recommends 1 to 4/3), with
    lambda_U = 1. Unbalanced thumbs (most people press only one of the two) are reweighted."""
    if n_up < 1 or n_down < 1:
        raise ValueError(f"KTO needs at least one thumb up and one down; got {n_up} up and "
                         f"{n_down} down. Rate more answers, or use the other kind of thumb too.")
    if not 1.0 <= ratio <= 4 / 3:
        raise ValueError(f"ratio = {ratio} is outside the paper's range [1, 4/3].")
    return ratio * n_down / n_up, 1.0


def thumbs_reward_loss(rewards: torch.Tensor, thumbs_up: torch.Tensor) -> torch.Tensor:
    """A reward model from thumbs: the scalar head's reward read as the log-odds of a thumb
    up, trained by binary cross-entropy, -mean(log sigmoid(r)) on thumbs up and
    -mean(log sigmoid(-r)) on thumbs down. Chapter 04's Bradley-Terry loss is the same
    likelihood applied to a difference of two rewards. (batch,), (batch,) bool -> ()."""
    return F.binary_cross_entropy_with_logits(rewards, thumbs_up.to(rewards.dtype))


# --- training (chapter 12) ----------------------------------------------------------------

@dataclass
class KTOConfig(DPOConfig):
    """Chapter 12: KTO on thumbs, starting from the SFT model, which stays the frozen
    reference. DPO's settings (dpo.DPOConfig), but each step takes batch_size thumbed answers
    (one click each) instead of batch_size rated pairs."""

    beta: float = setting(1.0, "strength of the implicit KL leash, as DPO's beta (the paper "
                          "uses 0.1; chapter 08's sweep found 1.0 best for DPO; measured in "
                          "full mode on 1,530 thumbs: gold +0.09 over SFT at 1.0, -0.01 at "
                          "0.3, -0.18 at 0.1)", range=(1e-3, 10.0))
    ratio: float = setting(1.0, "lambda_D * ups / (lambda_U * downs), the weight of thumbs up "
                           "against thumbs down (the paper: 1 to 4/3)", range=(1.0, 4 / 3))


@dataclass
class TokenizedThumbs:
    """Thumbs, tokenised: each rated answer (rows of `data`) and, for the reference point,
    the same prompts with another row's answer (`mismatched`: row i gets answer i + 1), with
    the reference's log-probabilities of both, computed once."""

    data: LMData
    mismatched: LMData
    up: torch.Tensor               # (n,) bool
    ref_logprobs: torch.Tensor     # (n,)
    ref_mismatched: torch.Tensor   # (n,)

    def __len__(self) -> int:
        return len(self.up)


def tokenize_thumbs(reference, tokenizer, thumbs: pd.DataFrame, max_tokens: int) -> TokenizedThumbs:
    """Tokenise the thumbed answers of `thumbs` (prompt, answer, up) and their mismatched
    twins, and score both under `reference`."""
    prompts, answers = list(thumbs["prompt"]), list(thumbs["answer"])
    data = answer_data(tokenizer, prompts, answers, max_tokens)
    mismatched = answer_data(tokenizer, prompts, answers[1:] + answers[:1], max_tokens)
    return TokenizedThumbs(data, mismatched, torch.tensor(thumbs["up"].to_numpy(dtype=bool)),
                           all_sequence_logprobs(reference, data),
                           all_sequence_logprobs(reference, mismatched))


def kto_metrics(policy, thumbs: TokenizedThumbs, cfg: KTOConfig, weights) -> dict[str, float]:
    """On all of `thumbs`, without gradients: the KTO loss, z_0, the mean log-ratio of
    thumbs-up and of thumbs-down answers, and `accuracy`, the share of answers on the side of
    z_0 their thumb asks for (up above, down below; 0.5 at the start, where all equal z_0)."""
    logratios = all_sequence_logprobs(policy, thumbs.data) - thumbs.ref_logprobs
    z0 = kto_reference_point(all_sequence_logprobs(policy, thumbs.mismatched)
                             - thumbs.ref_mismatched)
    loss, _ = kto_loss(logratios, thumbs.up, z0, cfg.beta, *weights)
    side = torch.sign(logratios - z0) * torch.where(thumbs.up, 1.0, -1.0)
    return {"loss": loss.item(), "z0": z0.item(), "accuracy": ((side + 1) / 2).mean().item(),
            "up_logratio": logratios[thumbs.up].mean().item(),
            "down_logratio": logratios[~thumbs.up].mean().item()}


def train_kto(policy, reference, tokenizer, train_thumbs: pd.DataFrame,
              val_thumbs: pd.DataFrame, cfg: KTOConfig, live_plot=None,
              progress: bool = True) -> pd.DataFrame:
    """Train `policy` with the KTO loss for cfg.max_steps steps; `reference` stays frozen.

    Each step takes cfg.batch_size random thumbed answers and their mismatched twins, scores
    all 2 x batch_size answers in one batch, estimates z_0 from the twins and takes a step on
    `kto_loss`, with lambda_D and lambda_U from `kto_weights` on the training thumbs. The
    history has a row at step 0, every cfg.eval_every steps and at the end: step, lr,
    train_loss, and on `val_thumbs` val_loss, val_accuracy, z0, up_logratio, down_logratio."""
    device = next(policy.parameters()).device
    max_tokens = min(cfg.max_tokens, context_length(policy))
    train = tokenize_thumbs(reference, tokenizer, train_thumbs, max_tokens)
    val = tokenize_thumbs(reference, tokenizer, val_thumbs, max_tokens)
    weights = kto_weights(int(train.up.sum()), int((~train.up).sum()), cfg.ratio)
    optimizer = make_optimizer(policy, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    history, losses = [], []

    def measure(step: int, lr: float) -> None:
        metrics = kto_metrics(policy, val, cfg, weights)
        history.append({"step": step, "lr": lr,
                        "train_loss": sum(losses) / len(losses) if losses else float("nan"),
                        "val_loss": metrics.pop("loss"),
                        "val_accuracy": metrics.pop("accuracy"), **metrics})
        losses.clear()
        if live_plot is not None and redraw_due(final=step == cfg.max_steps, measured=True):
            live_plot(pd.DataFrame(history))

    measure(0, 0.0)
    policy.train()
    bar = tqdm(range(cfg.max_steps), desc="KTO",
               disable=not (progress and distributed.is_main_process()))
    for step in bar:
        lr = lr_at(step, cfg)
        idx = distributed.shard(torch.randint(len(train), (cfg.batch_size,),
                                              generator=generator))
        with distributed.autocast():
            rated = sequence_logprobs(policy, **trimmed_batch(train.data, idx, device)).float()
            twins = sequence_logprobs(policy, **trimmed_batch(train.mismatched, idx, device)).float()
        z0 = kto_reference_point(twins - train.ref_mismatched[idx].to(device))
        loss, _ = kto_loss(rated - train.ref_logprobs[idx].to(device), train.up[idx].to(device),
                           z0, cfg.beta, *weights)
        optimizer_step(policy, optimizer, loss, cfg, step, lr, what=f"KTO loss (beta {cfg.beta:g})")
        losses.append(distributed.mean(loss))
        if (step + 1) % cfg.eval_every == 0 or step == cfg.max_steps - 1:
            measure(step + 1, lr)
            bar.set_postfix(loss=f"{history[-1]['val_loss']:.3f}",
                            accuracy=f"{history[-1]['val_accuracy']:.2f}")
    policy.eval()
    return pd.DataFrame(history)


@dataclass
class KTOResult:
    """Chapter 12's KTO run: settings, the policy, its history, the thumbs it trained on and
    the report card's evaluation of the policy."""

    cfg: KTOConfig
    policy: torch.nn.Module
    reference: torch.nn.Module
    tokenizer: object
    history: pd.DataFrame
    train: pd.DataFrame
    val: pd.DataFrame
    after: Evaluation
    seconds: float


def run_kto(cfg: KTOConfig | None = None, thumbs: tuple[pd.DataFrame, pd.DataFrame] | None = None,
            save: bool = True, live_plot=None, progress: bool = True, name: str = "kto",
            notebook: str = "12_thumbs", setting_text: str | None = None) -> KTOResult:
    """KTO end to end, as `dpo.run_dpo`: the SFT model becomes the policy and, frozen, its
    reference; KTO trains on `thumbs` (train, held-out: DataFrames of prompt, answer, up);
    the policy is measured with the report card's evaluation (chapter 04's reward model only
    grades) and recorded as row `name` unless `save` is False. No artifact is written."""
    cfg = cfg or KTOConfig.for_mode()
    if thumbs is None:
        raise ValueError("run_kto needs thumbs=(train, held_out): DataFrames of prompt, answer, "
                         "up; thumbs.training_thumbs makes them (notebook 12_thumbs).")
    seed_everything(cfg.seed)
    policy, tokenizer = artifacts.load_model("sft")
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    reward_model, rm_tokenizer = load_reward_model()
    start = time.perf_counter()
    history = train_kto(policy, reference, tokenizer, *thumbs, cfg, live_plot, progress)
    seconds = time.perf_counter() - start
    after = evaluate_model(policy, tokenizer, name, reference=reference,
                           reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                           progress=progress)
    if save:
        report_card.record(after, notebook=notebook, setting=setting_text or (
            f"KTO beta {cfg.beta:g} on {len(thumbs[0])} thumbs, {cfg.max_steps} steps"))
    return KTOResult(cfg, policy, reference, tokenizer, history, *thumbs, after, seconds)
