"""The language-model training loop: next-token prediction with cross-entropy.

Taught in notebooks/01_pretraining.ipynb, reused unchanged for supervised fine-tuning in
notebooks/02_sft.ipynb (there, the labels of prompt tokens are -100, so only answers count).

The loop is the one every LM uses: sample a batch, compute the loss, backpropagate, clip the
gradient norm, take an AdamW step with a learning rate that warms up and then decays, and
every so often measure the loss on held-out data that training never sees.

The same loop runs under `accelerate launch` on several processes (README "Going further"):
the `distributed` calls below do nothing in a notebook; there, each process trains on its
share of every batch and the gradients are averaged (see rlhf_lab/distributed.py).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import distributed
from .plots import redraw_due

IGNORE = -100  # label value that cross-entropy skips (padding, and prompts during SFT)


@dataclass
class LMData:
    """Rows of token ids ready for a causal LM. Shapes: (rows, seq) each.

    `labels` equal `input_ids` where the token is to be predicted and IGNORE elsewhere;
    the model shifts them by one position itself.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def batch(self, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[idx].to(device),
                "labels": self.labels[idx].to(device),
                "attention_mask": self.attention_mask[idx].to(device)}

    @property
    def target_tokens(self) -> torch.Tensor:
        """The tokens the model is asked to predict (every label but each row's first)."""
        targets = self.labels[:, 1:]
        return targets[targets != IGNORE]


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each next token: the logits at position t predict the label at t+1.

    logits: (batch, seq, vocab); labels: (batch, seq), IGNORE where nothing is predicted.
    The labels are shifted left (the last position gets IGNORE), not the logits: shifting the
    logits would copy all of them, forward and backward.
    """
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
        reduction=reduction)


def blocks_from_stream(token_ids: list[int], block_size: int) -> LMData:
    """Cut one long stream of tokens into rows of `block_size` (the last partial row dropped)."""
    n = len(token_ids) // block_size
    if n == 0:
        raise ValueError(f"{len(token_ids)} tokens cannot fill one block of {block_size}; "
                         "use more text or a smaller block_size.")
    ids = torch.tensor(token_ids[: n * block_size], dtype=torch.long).view(n, block_size)
    return LMData(ids, ids.clone(), torch.ones_like(ids))


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to cfg.lr over cfg.warmup_steps, then cosine decay to
    cfg.lr * cfg.min_lr_ratio at cfg.max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only, not on biases and layer-norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, data: LMData, batch_size: int,
                  max_batches: int | None = None) -> float:
    """Mean cross-entropy per predicted token over the first `max_batches` batches of `data`."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n_rows = len(data) if max_batches is None else min(len(data), max_batches * batch_size)
    for start in range(0, n_rows, batch_size):
        batch = data.batch(torch.arange(start, min(start + batch_size, n_rows)), device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += next_token_loss(logits, batch["labels"], reduction="sum").item()
        count += (batch["labels"][:, 1:] != IGNORE).sum().item()
    model.train(was_training)
    return total / max(count, 1)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says what to change."""


def pad_rows(rows: list[tuple[list[int], list[int]]], pad_token_id: int) -> LMData:
    """(token ids, labels) of each row, right-padded to the longest: padding is never a
    label and is masked out. Used for demonstrations (chapter 02) and answer prefixes (11)."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, :len(labs)] = torch.tensor(labs)
        mask[row, :len(ids)] = 1
    return LMData(input_ids, labels, mask)


def split_heldout(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Shuffle `items` with `seed` and keep `fraction` of them (at least one) out of training.
    Returns (train, held-out)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(items) * fraction))
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   cfg, step: int, lr: float, what: str = "training loss") -> None:
    """One step at learning rate `lr`: backpropagate `loss`, clip the gradient norm to
    cfg.grad_clip (0: no clipping), update. A NaN or infinite loss stops training with advice.
    On several processes the gradients are averaged over them before clipping."""
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"The {what} became {loss.item()} at step {step} (learning rate {lr:.2g}). "
            f"Lower cfg.lr (e.g. to {cfg.lr / 3:.1g}) or keep grad_clip > 0.")
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(model.parameters())
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()


def train_lm(model: torch.nn.Module, train: LMData, val: LMData, cfg, *,
             live_plot=None, desc: str = "training") -> pd.DataFrame:
    """Train `model` on `train` for cfg.max_steps steps; return the loss history.

    Every cfg.eval_every steps (and at the end) one row is added to the history: the mean
    training loss since the last row, the held-out loss on `val`, and the learning rate.
    `live_plot`, if given, is called with the history so far after the first and the last
    evaluation, and in between at most every `plots.LIVE_PLOT_SECONDS` (`plots.redraw_due`).
    """
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    history, running, n_running = [], 0.0, 0
    model.train()
    bar = tqdm(range(cfg.max_steps), desc=desc, disable=not distributed.is_main_process())
    drawn = None                                   # when the live figure was last redrawn
    for step in bar:
        lr = lr_at(step, cfg)
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
        batch = train.batch(distributed.shard(idx), device)   # several processes: a share each
        with distributed.autocast():                          # bf16 only if launched with it
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        loss = next_token_loss(logits, batch["labels"])
        optimizer_step(model, optimizer, loss, cfg, step, lr)
        running, n_running = running + distributed.mean(loss), n_running + 1
        last = step == cfg.max_steps - 1
        if (step + 1) % cfg.eval_every == 0 or last:
            val_loss = evaluate_loss(model, val, cfg.batch_size, cfg.eval_batches)
            history.append({"step": step + 1, "train_loss": running / n_running,
                            "val_loss": val_loss, "lr": lr})
            running, n_running = 0.0, 0
            bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{val_loss:.3f}")
            if live_plot is not None and redraw_due(drawn, final=last):
                live_plot(pd.DataFrame(history))
                drawn = time.perf_counter()
    model.eval()
    return pd.DataFrame(history)
