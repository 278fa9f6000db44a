"""Preferences: ratings turned into training data, shared by the reward model (chapter 04),
DPO (chapter 08) and the loop (chapter 09).

Taught in notebooks/04_reward_model.ipynb. A rating (`rlhf_lab.feedback`) says which of two
answers someone chose; here it becomes a row (prompt, answer_a, answer_b, target), target =
P(A preferred): 1 for A, 0 for B, 0.5 for a tie; or, for DPO, a row (prompt, chosen, rejected,
target). Ratings come first from people (your files in data/feedback/), then the shipped
sample, then a simulated rater fills up on chapter 03's comparisons.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import feedback
from .comparisons import load_comparisons
from .config import DATA_DIR
from .raters import SimulatedRater, fill_ratings
from .training import split_heldout

SAMPLE_FILE = "sample.jsonl"   # the shipped ratings in data/feedback/, used after your own
SHIPPED_SAMPLE = DATA_DIR / "feedback" / SAMPLE_FILE
SAMPLE_TEMPERATURE = 0.5       # the noise of the simulated rater who made them (rlhf_lab.corpus)
TARGETS = {"a": 1.0, "b": 0.0, "tie": 0.5}   # P(A preferred) that each choice stands for


def sample_path() -> Path:
    """The shipped sample ratings: the copy in the ratings folder if it holds one, otherwise
    data/feedback/sample.jsonl, where they ship, so that a ratings folder moved elsewhere
    (RLHF_LAB_FEEDBACK) still trains with them."""
    in_folder = Path(feedback.FEEDBACK_DIR) / SAMPLE_FILE
    return in_folder if in_folder.exists() else SHIPPED_SAMPLE


def ratings_to_examples(records_or_frame) -> pd.DataFrame:
    """Pair ratings -> one row per pair: prompt, answer_a, answer_b, target, rater.

    target is 1.0 when A was chosen, 0.0 for B and 0.5 for a tie (see `preference_loss`).
    Skips, single-answer ratings and undo records are left out.
    """
    frame = pd.DataFrame(records_or_frame)
    if frame.empty:
        return pd.DataFrame(columns=["prompt", "answer_a", "answer_b", "target", "rater"])
    frame = frame[(frame["kind"] == "pair") & frame["choice"].isin(list(TARGETS))]
    examples = frame[["prompt", "answer_a", "answer_b", "rater"]].assign(
        target=frame["choice"].map(TARGETS).astype(float))
    return examples[["prompt", "answer_a", "answer_b", "target", "rater"]].reset_index(drop=True)


def training_ratings(cfg):
    """The pairwise ratings to train on, and a report of how many came from whom. `cfg`:
    chapter 04's `RewardConfig` (its ratings, rater_temperature and seed are read).

    In order: (1) your own ratings, every file in data/feedback/ (or RLHF_LAB_FEEDBACK) but
    the shipped sample, all of them, even beyond cfg.ratings, since clicks are never thrown
    away; (2) the shipped sample (scripted answers rated by a simulated rater, `sample_path`),
    only up to cfg.ratings in all;
    (3) a simulated rater (temperature cfg.rater_temperature) rates chapter 03's pairs that
    nobody rated, answers of our own models, until there are cfg.ratings.
    Returns (records, report), as `fill_ratings` does; the report names the shipped sample
    as what it is, not as people.

    The sample holds about 1500 ratings, so full mode's 1800 leave about 300 to the
    simulated rater: answers like those PPO will write. Measured once (seed 0, 306 fresh
    pairs of our models' answers): trained so, the reward model orders 77% of them as the
    gold score does, against 75% when trained on the sample alone.
    """
    own = [r for path in sorted(Path(feedback.FEEDBACK_DIR).glob("*.jsonl"))
           if path.name != SAMPLE_FILE for r in feedback.load_ratings(path)]
    sample_file = sample_path()
    sample = feedback.load_ratings(sample_file) if sample_file.exists() else []
    own, sample = _pair_ratings(own), _pair_ratings(sample)
    human = own + sample[: max(0, cfg.ratings - len(own))]
    rater = SimulatedRater("simulated", temperature=cfg.rater_temperature, seed=cfg.seed)
    try:
        records, report = fill_ratings(load_comparisons(), human, cfg.ratings, rater)
    except ValueError as error:
        raise ValueError(f"{error} Or lower RewardConfig.ratings (now {cfg.ratings}).") from None
    shipped = report["rater"] == SAMPLE_FILE.removesuffix(".jsonl")
    report.loc[shipped, "source"] = "shipped sample (a simulated rater)"
    return records, report


def _pair_ratings(records: list[dict]) -> list[dict]:
    """Pair ratings that say a, b or tie, after the duplicate rule (latest per rater and pair)."""
    return [r for r in feedback.latest_per_item(records)
            if r["kind"] == "pair" and r["choice"] in TARGETS]


def split_ratings(examples: pd.DataFrame, fraction: float,
                  seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held-out): a seeded shuffle, then the first `fraction` of rows are held out."""
    train_rows, val_rows = split_heldout(list(range(len(examples))), fraction, seed)
    return (examples.iloc[train_rows].reset_index(drop=True),
            examples.iloc[val_rows].reset_index(drop=True))


def chosen_rejected(examples: pd.DataFrame) -> pd.DataFrame:
    """Chapter 04's examples (prompt, answer_a, answer_b, target) as prompt, chosen, rejected,
    target: the answer the rater chose becomes `chosen`, with target 1.0. A tie keeps A as
    `chosen` and its target 0.5 (see `dpo.dpo_loss` for what a tie asks of the policy)."""
    b_won = examples["target"] == 0.0
    return pd.DataFrame({
        "prompt": examples["prompt"],
        "chosen": examples["answer_a"].where(~b_won, examples["answer_b"]),
        "rejected": examples["answer_b"].where(~b_won, examples["answer_a"]),
        "target": examples["target"].where(~b_won, 1.0)}).reset_index(drop=True)


def preference_split(records: list[dict], heldout_fraction: float,
                     seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair ratings -> (train, held-out) preferences (`chosen_rejected`), split as chapter 04
    splits its examples (`split_ratings`: a seeded shuffle, then the first share held out)."""
    train, val = split_ratings(ratings_to_examples(records), heldout_fraction, seed)
    return chosen_rejected(train), chosen_rejected(val)
