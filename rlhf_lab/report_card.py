"""The report card: one row per stage of the course, every row measured the same way.

notebooks/02_sft.ipynb writes its first rows (pretrained, sft); chapters 06-09 add theirs
(ppo, ppo_overoptimised, best_of_n, dpo, hard_fixed, hard_iterated, iterated); chapter 08
draws the frontier from it, and the README shows the full-mode card.
`python -m rlhf_lab report` prints it.

Every row comes from `rlhf_lab.evaluation`: the same questions, the same seeds, mean gold
with a 95 % CI over questions, behaviour shares, reward and KL from SFT, and the paired
difference from SFT with its CI. A difference whose CI contains 0 is printed as "no
measurable difference": the evaluation cannot tell it from seed-to-seed noise.

Files, under artifacts/<mode>/ (each written atomically: a temporary file, then a rename):
- report_card.csv: the card, one row per model, in the course's order;
- evaluations/<name>.jsonl: every graded answer of that model, so that a later chapter can
  compute paired differences without evaluating again (`load_evaluation`).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings
from pathlib import Path

import pandas as pd

from .artifacts import MissingArtifactError
from .config import artifacts_dir, environment, mode_name
from .evaluation import COLUMNS, FLAGS, Evaluation, paired_difference, win_rate

ORDER = ("pretrained", "sft", "ppo", "ppo_overoptimised", "best_of_n", "dpo", "hard_fixed",
         "hard_iterated", "iterated", "ppo_short", "rloo", "grpo", "grpo_hard",
         "grpo_hard_verifiable", "grpo_hard_both", "sft_no_admissions", "sft_few_admissions",
         "ppo_no_admissions", "dpo_no_admissions", "ppo_offpolicy", "dpo_admission_pairs",
         "ppo_thumbs", "kto", "dpo_judge", "dpo_human", "ppo_likes_long")
FIRST_NOTEBOOK = "02_sft"
# which notebook records each row, for messages about a missing one
NOTEBOOK_OF = {"pretrained": "02_sft", "sft": "02_sft", "ppo": "06_ppo",
               "ppo_overoptimised": "07_reward_hacking", "best_of_n": "07_reward_hacking",
               "dpo": "08_dpo", "hard_fixed": "09_iterate", "hard_iterated": "09_iterate",
               "iterated": "09_iterate", "ppo_short": "10_beyond_ppo", "rloo": "10_beyond_ppo",
               "grpo": "10_beyond_ppo", "grpo_hard": "10_beyond_ppo",
               "grpo_hard_verifiable": "10_beyond_ppo", "grpo_hard_both": "10_beyond_ppo",
               **dict.fromkeys(["sft_no_admissions", "sft_few_admissions", "ppo_no_admissions",
                                "dpo_no_admissions", "ppo_offpolicy", "dpo_admission_pairs"],
                               "11_exploration"),
               "ppo_thumbs": "12_thumbs", "kto": "12_thumbs",
               **dict.fromkeys(["dpo_judge", "dpo_human", "ppo_likes_long"],
                               "13_feedback_limits")}
COMPARISON = ("baseline", "vs_sft", "vs_sft_low", "vs_sft_high", "vs_sft_within_noise",
              "win_rate_vs_sft")
TEXT = ("name", "notebook", "setting", "baseline")


class MissingReportCardError(MissingArtifactError):
    """The report card, or one model's evaluation, has not been written yet; the message
    names the notebook that writes it."""

    def __init__(self, what: str, path: Path, advice: str):
        self.name, self.path = what, path
        where = f"artifacts/{mode_name()}/{path.relative_to(artifacts_dir()).as_posix()}"
        FileNotFoundError.__init__(
            self, f"The {what} is missing ({mode_name()} mode, looked in {where}). {advice}")


# --- where things live -------------------------------------------------------------------------

def card_path() -> Path:
    return artifacts_dir() / "report_card.csv"


def evaluation_path(name: str) -> Path:
    """artifacts/<mode>/evaluations/<name>.jsonl; `name` must be usable as a file name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"{name!r} cannot name a report-card row: use letters, digits, "
                         "'_', '-' and '.' (e.g. 'ppo' or 'dpo_beta0.5').")
    return artifacts_dir() / "evaluations" / f"{name}.jsonl"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` atomically: readers see the old file or the new one, never
    half of one. Under `accelerate launch` only the main process (RANK 0) writes."""
    _write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))


def _write_atomically(path: Path, write) -> None:
    """`write(tmp)` fills a temporary file, which then replaces `path` in one step."""
    if os.environ.get("RANK", "0") != "0":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


# --- per-answer tables ------------------------------------------------------------------------

def save_evaluation(evaluation: Evaluation) -> Path:
    """Keep every graded answer of `evaluation` as artifacts/<mode>/evaluations/<name>.jsonl,
    one JSON object per answer: any text a model writes (commas, quotes, line breaks, control
    characters) reads back exactly, which a CSV file does not promise."""
    path = evaluation_path(evaluation.name)
    frame = evaluation.answers[list(COLUMNS)]
    _write_atomically(path, lambda tmp: frame.to_json(tmp, orient="records", lines=True,
                                                      force_ascii=False))
    return path


def load_evaluation(name: str) -> Evaluation:
    """The evaluation recorded under `name`, read back from its per-answer JSON lines."""
    path = evaluation_path(name)
    if not path.exists():
        raise MissingReportCardError(
            f"evaluation '{name}'", path,
            f"Run notebooks/{NOTEBOOK_OF[name]}.ipynb first: it evaluates '{name}' and records "
            "it on the report card." if name in NOTEBOOK_OF else
            f"No notebook records '{name}'; report_card.record(...) an evaluation of that name "
            "first.")
    # dtype=False: every value as JSON wrote it, so an answer "None", "7" or "" stays text
    answers = pd.read_json(path, lines=True, dtype=False)
    answers = answers.astype({"question": str, "question_kind": str, "answer": str,
                              "reward": float, "kl": float})
    for column in ("answerable", *FLAGS):
        answers[column] = answers[column].map(_as_bool)
    return Evaluation(name, answers)


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


# --- the card ---------------------------------------------------------------------------------

def load_card() -> pd.DataFrame:
    """The report card of the current mode, one row per model in the course's order."""
    path = card_path()
    if not path.exists():
        raise MissingReportCardError(
            "report card", path,
            f"Run notebooks/{FIRST_NOTEBOOK}.ipynb first: it evaluates the pretrained and SFT "
            "models and writes the card's first rows "
            "(from a terminal: python -m rlhf_lab sft, with --quick for a one-minute "
            "quick-mode run); chapters 06-09 add theirs.")
    card = pd.read_csv(path, dtype={column: str for column in TEXT})
    for column in TEXT:
        if column in card:
            card[column] = card[column].map(lambda v: "" if pd.isna(v) else v)
    return card


def order_rows(card: pd.DataFrame) -> pd.DataFrame:
    """The course's stages first, in the course's order, then any other rows in the order
    they were first recorded."""
    rank = {name: i for i, name in enumerate(ORDER)}
    position = [(rank.get(name, len(ORDER)), i) for i, name in enumerate(card["name"])]
    order = [i for _, i in sorted(position)]
    return card.iloc[order].reset_index(drop=True)


def comparison(name: str, baseline: str | None) -> dict:
    """The row's comparison with `baseline` from the stored evaluations: paired difference in
    gold with its 95 % CI and the win rate. Blank when there is no baseline to compare with;
    0 with a blank CI for the baseline itself."""
    blank = {c: math.nan for c in COMPARISON} | {"baseline": baseline or ""}
    if baseline is None:
        return blank
    if name == baseline:
        return blank | {"vs_sft": 0.0}
    if not evaluation_path(baseline).exists() or not evaluation_path(name).exists():
        return blank
    a, b = load_evaluation(name), load_evaluation(baseline)
    try:
        diff = paired_difference(a, b)
    except ValueError as error:
        warnings.warn(f"No comparison of '{name}' with '{baseline}' on the report card: {error}",
                      stacklevel=3)
        return blank
    return blank | {"vs_sft": diff["difference"], "vs_sft_low": diff["low"],
                    "vs_sft_high": diff["high"], "vs_sft_within_noise": diff["within_noise"],
                    "win_rate_vs_sft": win_rate(a, b)}


def record(evaluation: Evaluation, *, notebook: str, setting: str = "",
           baseline: str | None = "sft") -> pd.DataFrame:
    """Put `evaluation` on the report card: add its row, or replace the row of that name.
    The row holds the summary (`Evaluation.summary`), the notebook and setting that made it,
    and its paired difference and win rate against `baseline` (the SFT model) when that
    evaluation is stored. The per-answer table is kept too (`load_evaluation`). Rows that
    compare with this one are brought up to date. Returns the card.
    Called by notebooks/02_sft.ipynb first, then by chapters 06-09."""
    save_evaluation(evaluation)
    name = evaluation.name
    row = {"name": name, "notebook": notebook, "setting": setting, **evaluation.summary(),
           **comparison(name, baseline)}
    try:
        card = load_card()
    except MissingReportCardError:
        card = pd.DataFrame(columns=list(row))
    records = card.to_dict("records")
    names = [r["name"] for r in records]
    if name in names:
        records[names.index(name)] = row
    else:
        records.append(row)
    for r in records:      # rows measured against this one: compare with the new evaluation
        if r["name"] != name and r.get("baseline") == name:
            r.update(comparison(r["name"], name))
    card = order_rows(pd.DataFrame(records, columns=_columns(records)))
    _write_csv(card, card_path())
    return card


def _columns(records: list[dict]) -> list[str]:
    columns: list[str] = []
    for r in records:
        columns += [c for c in r if c not in columns]
    return columns


# --- reading it -------------------------------------------------------------------------------

def _number(x, fmt: str = "{:.2f}") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) or x == "" \
        else fmt.format(float(x))


def _share(x) -> str:
    return _number(x, "{:.0%}")


def _is_true(x) -> bool:
    return x is True or str(x).strip().lower() == "true"


def _delta(row: pd.Series) -> str:
    """'+0.15 ± 0.06' (the t-interval is symmetric), '(baseline)' for the baseline itself,
    blank without a comparison; 'no measurable difference' when the interval contains 0."""
    if row.get("name") == row.get("baseline"):
        return "(baseline)"
    if _number(row.get("vs_sft")) == "":
        return ""
    text = _number(row["vs_sft"], "{:+.2f}")
    if _number(row.get("vs_sft_low")):
        text += f" ± {(float(row['vs_sft_high']) - float(row['vs_sft_low'])) / 2:.2f}"
    if _is_true(row.get("vs_sft_within_noise")):
        text += " no measurable difference"
    if row.get("baseline") not in ("", "sft", None):
        text += f" (vs {row['baseline']})"
    return text


def format_card(card: pd.DataFrame | None = None) -> str:
    """The report card as a text table: gold ± its 95 % CI, the paired difference from SFT
    with its CI ("no measurable difference" when the CI contains 0), the win rate against
    SFT, behaviour shares, answer length, reward and KL from SFT."""
    card = load_card() if card is None else card
    header = ["model", "gold ± 95% CI", "Δ gold vs SFT ± 95% CI", "wins", "wrong",
              "admits|unans.", "hedges|ans.", "rude", "rambling", "words", "reward", "KL"]
    lines = []
    for _, row in card.iterrows():
        gold = _number(row["gold"])
        if _number(row.get("gold_low")):
            gold += f" ± {(float(row['gold_high']) - float(row['gold_low'])) / 2:.2f}"
        lines.append([str(row["name"]), gold, _delta(row), _share(row.get("win_rate_vs_sft")),
                      _share(row.get("wrong")), _share(row.get("admits_unanswerable")),
                      _share(row.get("hedges_answerable")), _share(row.get("rude")),
                      _share(row.get("rambling")), _number(row.get("words"), "{:.1f}"),
                      _number(row.get("reward")), _number(row.get("kl"))])
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    table = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *lines]]
    sizes = ", ".join(sorted({f"{int(n)} questions x {int(k)} samples"
                              for n, k in zip(card.get("n_questions", []), card.get("k", []))}))
    title = f"Report card ({mode_name()} mode: {sizes or 'empty'})"
    notes = ("gold: mean gold score per answer (0-4) ± the half-width of its 95 % CI over "
             "questions. Δ: paired difference from SFT on the same questions and seeds; "
             "wins: share of answers "
             "better than SFT's, ties half. wrong: of answerable questions; admits: of "
             "unanswerable ones (good); hedges: admits although an answer exists. "
             "reward: reward model, normalised; KL: from SFT, nats per answer.")
    rule = "-" * len(table[0])
    return "\n".join([title, rule, table[0], rule, *table[1:], rule, *_wrap(notes, len(rule))])


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, max(width, 60))


def plot_card(card: pd.DataFrame | None = None, *, save: bool = True):
    """Two panels side by side, one row per model in the card's order: mean gold with its
    95 % CI, and KL from SFT. Saved as artifacts/<mode>/figures/report_card.png when `save`.
    Drawn by notebooks/02_sft.ipynb onwards; chapter 08 reads the frontier off it."""
    import matplotlib.pyplot as plt
    import numpy as np

    card = load_card() if card is None else card
    y = np.arange(len(card))
    gold = card["gold"].astype(float).to_numpy()
    low = (gold - card["gold_low"].astype(float)).fillna(0).to_numpy()
    high = (card["gold_high"].astype(float) - gold).fillna(0).to_numpy()
    kl = card["kl"].astype(float).to_numpy()
    fig, (left, right) = plt.subplots(1, 2, sharey=True,
                                      figsize=(10, 1.2 + 0.45 * max(len(card), 2)))
    left.errorbar(gold, y, xerr=[low, high], fmt="o", capsize=4, color="C0")
    if "sft" in set(card["name"]):
        sft_gold = float(card.loc[card["name"] == "sft", "gold"].iloc[0])
        left.axvline(sft_gold, color="grey", linestyle="--", linewidth=1, zorder=0)
        left.text(sft_gold, 0.99, " SFT", transform=left.get_xaxis_transform(), va="top",
                  ha="left", fontsize="small", color="grey")
    left.set_xlabel("gold score per answer (0-4 points), mean with 95 % CI")
    left.set_title("Gold score")
    right.barh(y, np.nan_to_num(kl), color="C1")
    for yi, value in zip(y, kl):
        if np.isnan(value):
            right.text(0, yi, " not measured", va="center", fontsize="small", color="grey")
    right.set_xlabel("KL from SFT (nats per answer)")
    right.set_title("Distance from SFT")
    left.set_yticks(y, card["name"].tolist())
    left.invert_yaxis()
    left.set_ylabel("model")
    fig.suptitle(f"Report card ({mode_name()} mode)")
    fig.tight_layout()
    if save:
        from .plots import save_figure
        save_figure(fig, "report_card")
    return fig


# --- the command line ---------------------------------------------------------------------------

def _shown(path: Path) -> Path:
    """`path` relative to the working folder when it lies inside it, else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    """`python -m rlhf_lab report [--quick] [--artifacts DIR]`: print the report card and
    save its figure. A missing card ends with status 1 and the notebook to run."""
    parser = argparse.ArgumentParser(
        prog="python -m rlhf_lab report",
        description="Print the report card (one row per stage, all measured the same way) and "
                    "save its figure under artifacts/<mode>/figures/report_card.png.")
    parser.add_argument("--quick", action="store_true",
                        help="the quick-mode card (artifacts/quick/) instead of the full one")
    parser.add_argument("--artifacts", metavar="DIR",
                        help="artifacts folder to read instead of ./artifacts")
    args = parser.parse_args(argv)
    with environment(args.quick, args.artifacts):
        try:
            card = load_card()
        except MissingReportCardError as error:
            parser.exit(1, f"{parser.prog}: {error}\n")
        print(format_card(card))
        import matplotlib
        if "matplotlib.pyplot" not in sys.modules:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from .plots import figure_path
        fig = plot_card(card)
        plt.close(fig)
        print(f"\nFigure: {_shown(figure_path('report_card'))}")
    return card


if __name__ == "__main__":
    main()
