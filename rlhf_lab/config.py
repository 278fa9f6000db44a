"""Configuration: quick mode, seeding, device, project paths and per-stage settings.

Taught in notebooks/00_setup.ipynb; every later notebook starts from here.

- Quick mode (`RLHF_LAB_QUICK=1`, set by `make test` and CI) shrinks every stage so a
  notebook runs in about a minute. It picks smaller values; it is never a second code path.
- One seeding helper, `seed_everything`, makes the same seed give the same numbers on a CPU.
- `get_device` picks CUDA, then Apple's MPS, then the CPU; `RLHF_LAB_DEVICE` overrides it.
- torch is imported only where it is used, so that modules which need none of it (the
  class rating app's kernel, `rlhf_lab.class_app`) start in a fraction of a second.
- Each stage has one dataclass of settings. Every field carries its help text and its valid
  range, and a bad value raises `SettingsError` naming the field and the range.
"""
from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"


def is_quick() -> bool:
    """True when `RLHF_LAB_QUICK` is set to 1/true/yes (tests and CI); False by default."""
    value = os.environ.get("RLHF_LAB_QUICK", "0").strip().lower()
    return value in {"1", "true", "yes", "on"}


def mode_name() -> str:
    return "quick" if is_quick() else "full"


def artifacts_dir() -> Path:
    """Where notebooks save their outputs: `artifacts/full/` or `artifacts/quick/`.

    The two modes never overwrite each other, so `make test` cannot clobber the models a
    learner trained in full mode. `RLHF_LAB_ARTIFACTS` moves the whole folder (tests use it).
    """
    root = Path(os.environ.get("RLHF_LAB_ARTIFACTS", PROJECT_ROOT / "artifacts"))
    return root / mode_name()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) so a cell gives the same numbers twice."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_device(override: str | None = None) -> torch.device:
    """CUDA if present, then MPS, then CPU. `override` or `RLHF_LAB_DEVICE` wins."""
    import torch

    choice = override or os.environ.get("RLHF_LAB_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK")    # accelerate launch: one GPU per process
        return torch.device("cuda", int(local_rank)) if local_rank else torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class SettingsError(ValueError):
    """A setting outside its valid range; the message names the field and the range."""


def setting(default: Any, help: str, range: tuple | None = None,
            choices: tuple | None = None, quick: Any = None) -> Any:
    """Declare a settings field: its default (full mode), help text, valid range or
    choices, and the smaller value quick mode uses instead (None: same in both modes)."""
    meta = {"help": help, "range": range, "choices": choices, "quick": quick}
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    """Base class of the per-stage settings. Validates every field on creation."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            self._check(f, getattr(self, f.name))

    def _check(self, f: dataclasses.Field, value: Any) -> None:
        name = f"{type(self).__name__}.{f.name}"
        lo_hi, choices = f.metadata.get("range"), f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise SettingsError(f"{name} = {value!r} is not valid; choose one of {choices}.")
        if lo_hi is not None:
            lo, hi = lo_hi
            expected = type(f.default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    expected is int and not isinstance(value, int)):
                raise SettingsError(
                    f"{name} = {value!r} must be a {expected.__name__} in [{lo}, {hi}].")
            if not lo <= value <= hi:
                raise SettingsError(
                    f"{name} = {value!r} is out of range; valid range is [{lo}, {hi}]. "
                    f"({f.metadata['help']})")

    @classmethod
    def for_mode(cls, quick: bool | None = None, **overrides: Any):
        """The settings for quick or full mode (default: the current mode), with overrides."""
        quick = is_quick() if quick is None else quick
        values = {}
        if quick:
            values = {f.name: f.metadata["quick"] for f in dataclasses.fields(cls)
                      if f.metadata.get("quick") is not None}
        values.update(overrides)
        return cls(**values)

    def describe(self):
        """A table of every field: value, valid range and what it means."""
        import pandas as pd

        rows = []
        for f in dataclasses.fields(self):
            valid = f.metadata.get("range") or f.metadata.get("choices") or ""
            rows.append({"field": f.name, "value": getattr(self, f.name),
                         "valid": str(valid), "meaning": f.metadata.get("help", "")})
        return pd.DataFrame(rows).set_index("field")


@dataclass
class PretrainConfig(Settings):
    """Chapter 01: the tokenizer, the tiny GPT and its pretraining run."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    corpus_chars: int = setting(0, "characters of cleaned corpus to use; 0 means all",
                                range=(0, 10**9), quick=500_000)
    vocab_size: int = setting(2048, "BPE vocabulary size, special tokens included",
                              range=(260, 65536), quick=512)
    n_layer: int = setting(4, "transformer blocks", range=(1, 48), quick=3)
    n_embd: int = setting(128, "width of the residual stream", range=(16, 4096), quick=64)
    n_head: int = setting(4, "attention heads; must divide n_embd", range=(1, 64), quick=2)
    block_size: int = setting(128, "context length in tokens", range=(16, 4096), quick=64)
    dropout: float = setting(0.0, "dropout probability", range=(0.0, 0.9))
    batch_size: int = setting(32, "sequences per optimiser step", range=(1, 4096))
    max_steps: int = setting(1200, "optimiser steps", range=(1, 10**7), quick=600)
    lr: float = setting(3e-3, "peak learning rate of AdamW", range=(1e-6, 1.0))
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak",
                                  range=(0.0, 1.0))
    warmup_steps: int = setting(100, "steps of linear warm-up", range=(0, 10**6), quick=15)
    weight_decay: float = setting(0.1, "AdamW weight decay on matrices", range=(0.0, 1.0))
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)",
                               range=(0.0, 100.0))
    eval_every: int = setting(100, "steps between held-out evaluations", range=(1, 10**6),
                              quick=25)
    eval_batches: int = setting(20, "batches per held-out evaluation", range=(1, 10**4),
                                quick=5)
    heldout_fraction: float = setting(0.05, "share of documents kept out of training",
                                      range=(0.01, 0.5))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise SettingsError(
                f"PretrainConfig.n_head = {self.n_head} must divide n_embd = {self.n_embd}.")


@dataclass
class SFTConfig(Settings):
    """Chapter 02: supervised fine-tuning on the demonstrations (loss on answer tokens only)."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    batch_size: int = setting(32, "demonstrations per optimiser step", range=(1, 4096))
    max_steps: int = setting(500, "optimiser steps", range=(1, 10**7), quick=150)
    lr: float = setting(1e-3, "peak learning rate of AdamW", range=(1e-6, 1.0))
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak",
                                  range=(0.0, 1.0))
    warmup_steps: int = setting(30, "steps of linear warm-up", range=(0, 10**6), quick=10)
    weight_decay: float = setting(0.1, "AdamW weight decay on matrices", range=(0.0, 1.0))
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)",
                               range=(0.0, 100.0))
    eval_every: int = setting(50, "steps between held-out evaluations", range=(1, 10**6),
                              quick=25)
    eval_batches: int = setting(10, "batches per held-out evaluation", range=(1, 10**4))
    heldout_fraction: float = setting(0.1, "share of demonstrations kept out of training",
                                      range=(0.01, 0.5))
    max_tokens: int = setting(96, "longest prompt + answer in tokens; longer ones are cut",
                              range=(16, 4096))
    eval_questions: int = setting(400, "held-out questions answered to compare models",
                                  range=(10, 100_000), quick=120)


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
    max_steps: int = setting(250, "optimiser steps", range=(1, 10**7), quick=120)
    lr: float = setting(1e-4, "peak learning rate of AdamW (lower than SFT's: a new head on "
                        "a trained body, and few ratings to overfit)", range=(1e-6, 1.0))
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
