"""Configuration: quick mode, seeding, device, project paths and the base of every stage's settings.

Taught in notebooks/00_setup.ipynb; every later notebook starts from here.

- Quick mode (`RLHF_LAB_QUICK=1`, set by `make test` and CI) shrinks every stage so a
  notebook runs in about a minute. It picks smaller values; it is never a second code path.
- One seeding helper, `seed_everything`, makes the same seed give the same numbers on a CPU.
- `get_device` picks CUDA, then Apple's MPS, then the CPU; `RLHF_LAB_DEVICE` overrides it.
- torch is imported only where it is used, so that modules which need none of it (the
  class server's rating path, `rlhf_lab.class_server`) start in a fraction of a second.
- `Settings` is the base of every stage's settings dataclass, which lives beside its algorithm
  (`PretrainConfig` in `pretraining`, `SFTConfig` in `sft`, `RewardConfig` in `reward_model`,
  `PPOConfig` in `ppo`, ...). Every field carries its help text and its valid range, and a bad
  value raises `SettingsError` naming the field and the range.
"""
from __future__ import annotations

import contextlib
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
# the class app's files, written by `make class-pairs` and `make rate`
CLASS_DIR = DATA_DIR / "class"
CLASS_PAIRS = CLASS_DIR / "pairs.jsonl"        # made by the instructor before class
CLASS_RATINGS = CLASS_DIR / "ratings"          # one <name>.jsonl per student: chapter 09 reads it


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


@contextlib.contextmanager
def environment(quick: bool = False, artifacts: str | None = None, device: str | None = None):
    """Inside the `with` block, the command line's options as the variables this module reads:
    `quick` sets RLHF_LAB_QUICK, `artifacts` RLHF_LAB_ARTIFACTS (made absolute), `device`
    RLHF_LAB_DEVICE; options left unset leave their variable alone. Restored after the block."""
    variables = {}
    if quick:
        variables["RLHF_LAB_QUICK"] = "1"
    if artifacts:
        variables["RLHF_LAB_ARTIFACTS"] = os.path.abspath(artifacts)
    if device:
        variables["RLHF_LAB_DEVICE"] = device
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    choices, and the value quick mode uses instead (None: same in both modes): a smaller size
    or budget, or, for a smaller model trained for fewer steps, a larger learning rate."""
    meta = {"help": help, "range": range, "choices": choices, "quick": quick}
    return field(default=default, metadata=meta)


def setting_of(settings_class, name: str) -> Any:
    """The field `name` of another settings class, declared again with the same default, help,
    range and quick value: for a stage that shares a setting with another (chapter 10's GRPO
    and RLOO take chapter 06's), so the two can never drift apart."""
    template = {f.name: f for f in dataclasses.fields(settings_class)}[name]
    return field(default=template.default, metadata=template.metadata)


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
