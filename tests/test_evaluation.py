"""The course's one evaluation: questions, seeds, statistics and paired comparisons."""
import math
import subprocess
import sys

import pandas as pd
import pytest

from rlhf_lab import evaluation
from rlhf_lab.evaluation import (
    COLUMNS,
    Evaluation,
    curve_questions,
    evaluate_model,
    evaluation_questions,
    mean_ci,
    paired_difference,
    samples_per_question,
    stratified_subset,
    t_quantile,
    win_rate,
)
from rlhf_lab.world import World

UNANSWERABLE = {"unknown_animal", "big_sum"}


def fake(name: str, totals: list[list[float]]) -> Evaluation:
    """An evaluation with chosen gold totals: totals[i][j] for question i, sample j."""
    rows = []
    for i, per_sample in enumerate(totals):
        for j, total in enumerate(per_sample):
            rows.append({c: 0.0 for c in COLUMNS} | {
                "question": f"q{i}", "question_kind": "colour", "answerable": True,
                "sample": j, "answer": "", "total": float(total), "wrong": False,
                "rude": False, "rambling": False, "admits": False, "hedges": False})
    return Evaluation(name, pd.DataFrame(rows, columns=list(COLUMNS)))


# --- statistics ------------------------------------------------------------------------------

@pytest.mark.parametrize("confidence, df, expected", [
    (0.95, 1, 12.706205), (0.95, 2, 4.302653), (0.95, 3, 3.182446), (0.95, 10, 2.228139),
    (0.95, 30, 2.042272), (0.99, 5, 4.032143), (0.90, 365, 1.649039)])
def test_t_quantile_matches_the_tables(confidence, df, expected):
    assert t_quantile(confidence, df) == pytest.approx(expected, abs=2e-6)


def test_mean_ci_by_hand():
    ci = mean_ci([1, 2, 3, 4])
    half = 3.182446 * 1.290994 / 2          # t(0.975, 3) * sd / sqrt(n)
    assert ci.mean == 2.5
    assert ci.low == pytest.approx(2.5 - half, abs=1e-5)
    assert ci.high == pytest.approx(2.5 + half, abs=1e-5)
    mean, low, high = mean_ci([2.0, 2.0, 2.0])
    assert (mean, low, high) == (2.0, 2.0, 2.0)
    one = mean_ci([3.0])
    assert one.mean == 3.0 and math.isnan(one.low) and math.isnan(one.high)


def test_paired_difference_by_hand():
    # per-question differences a - b, averaged over the two samples: 1, 2, 3, 4
    a = fake("a", [[2, 2], [3, 5], [4, 4], [4, 6]])
    b = fake("b", [[1, 1], [1, 3], [1, 1], [0, 2]])
    d = paired_difference(a, b)
    half = 3.182446 * 1.290994 / 2
    assert d["difference"] == pytest.approx(2.5)
    assert d["low"] == pytest.approx(2.5 - half, abs=1e-5)
    assert d["high"] == pytest.approx(2.5 + half, abs=1e-5)
    assert d["within_noise"] is False and d["n_questions"] == 4
    close = paired_difference(fake("c", [[1, 1], [2, 2], [3, 3]]),
                              fake("d", [[1.1, 1.1], [1.8, 1.8], [3.1, 3.1]]))
    assert close["within_noise"] is True
    assert close["low"] < 0 < close["high"]


def test_win_rate_counts_ties_half():
    a = fake("a", [[3, 2], [1, 4]])
    b = fake("b", [[1, 2], [2, 4]])      # a wins, tie, loses, tie
    assert win_rate(a, b) == pytest.approx(0.5)
    assert win_rate(fake("a", [[3, 3]]), fake("b", [[1, 3]])) == pytest.approx(0.75)


@pytest.mark.parametrize("other", [
    [[1, 1], [2, 2]],                    # fewer questions
    [[1, 1, 1], [2, 2, 2], [3, 3, 3]],   # more samples per question
])
def test_unpaired_evaluations_are_refused(other):
    a = fake("a", [[1, 2], [2, 3], [3, 4]])
    with pytest.raises(ValueError, match="same questions and samples"):
        paired_difference(a, fake("b", other))
    with pytest.raises(ValueError, match="same questions and samples"):
        win_rate(a, fake("b", other))


# --- the questions ---------------------------------------------------------------------------

def test_full_mode_asks_every_heldout_question():
    questions = evaluation_questions(quick=False)
    assert len(questions) == 366
    assert questions == World().split("heldout")
    assert sum(not q.answerable for q in questions) == 61
    assert samples_per_question(quick=False) == 4


def test_quick_subset_is_small_stratified_and_fixed(monkeypatch):
    quick = evaluation_questions(quick=True)
    kinds = {q.kind for q in World().split("heldout")}
    assert len(kinds) == 12
    assert {q.kind for q in quick} == kinds                      # every kind ...
    assert {q.kind for q in quick if not q.answerable} == UNANSWERABLE   # ... unanswerable too
    counts = pd.Series([q.kind for q in quick]).value_counts()
    assert (counts == evaluation.QUICK_PER_KIND).all()
    assert len(quick) <= 100
    assert set(quick) <= set(World().split("heldout"))
    assert len(set(quick)) == len(quick)
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    assert evaluation_questions() == quick                       # the mode picks it; fixed
    assert samples_per_question() == 2


def test_stratified_subset_keeps_all_of_a_small_kind():
    questions = World().split("heldout")
    subset = stratified_subset(questions, 20)
    counts = pd.Series([q.kind for q in subset]).value_counts()
    assert counts["big_sum"] == 16 and counts["plus"] == 20


@pytest.mark.parametrize("n", [12, 50, 120, 365, 366, 1000])
def test_curve_questions_cover_every_kind_in_proportion(n):
    heldout = World().split("heldout")
    questions = curve_questions(n)
    assert len(questions) == min(n, 366) and len(set(questions)) == len(questions)
    assert {q.kind for q in questions} == {q.kind for q in heldout}
    assert set(questions) <= set(heldout)
    assert curve_questions(n) == questions
    if n == 120:
        counts = pd.Series([q.kind for q in questions]).value_counts()
        assert counts["plus"] > counts["big_sum"]          # 75 against 16 held out
    with pytest.raises(ValueError, match="n >= 12"):
        curve_questions(11)


# --- grading -------------------------------------------------------------------------------

def _question(kind: str, answerable: bool = True):
    return next(q for q in World().split("heldout") if q.kind == kind
                and q.answerable == answerable)


def test_from_answers_grades_and_flags_each_answer():
    colour, unknown = _question("colour"), _question("unknown_animal", answerable=False)
    right = f"A {colour.subject} is {colour.answer}."
    rude = f"Ugh, obviously a {colour.subject} is {colour.answer}."
    long = " ".join([f"A {colour.subject} is {colour.answer} and lovely"] * 6) + "."
    hedge = "I do not know."
    ev = Evaluation.from_answers("m", [colour, colour, colour, colour, unknown],
                                 [[right, rude, long, hedge, hedge], [""] * 5],
                                 kl=0.5, reward=[[1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    df = ev.answers
    assert list(df.columns) == list(COLUMNS) and len(df) == 10 and ev.k == 2
    first = df[df["sample"] == 0].reset_index(drop=True)
    assert first["correct"].tolist() == [1, 1, 1, 0, 1]
    assert first["wrong"].tolist() == [False, False, False, True, False]
    assert first["rude"].tolist() == [False, True, False, False, False]
    assert first["rambling"].tolist() == [False, False, True, False, False]
    assert first["admits"].tolist() == [False, False, False, True, True]
    assert first["hedges"].tolist() == [False, False, False, True, False]
    assert first["words"].tolist() == [4, 6, 36, 4, 4]
    assert first["reward"].tolist() == [1, 2, 3, 4, 5]
    assert (df["kl"] == 0.5).all()
    empty = df[df["sample"] == 1]
    assert (empty["total"] == 0).all() and not (empty["rambling"] | empty["rude"]).any()
    assert empty["wrong"].tolist() == [True, True, True, True, False]
    assert math.isnan(Evaluation.from_answers("m", [colour], [right]).answers["kl"][0])


def test_summary_by_hand():
    colour, unknown = _question("colour"), _question("unknown_animal", answerable=False)
    right, dunno = f"A {colour.subject} is {colour.answer}.", "I do not know."
    ev = Evaluation.from_answers("m", [colour, unknown], [[right, dunno], [dunno, "Blue."]])
    s = ev.summary()
    totals = ev.answers["total"]
    per_question = ev.per_question()
    assert len(per_question) == 2 and (per_question["samples"] == 2).all()
    assert s["gold"] == pytest.approx(totals.mean())
    assert (s["gold_low"], s["gold_high"]) == pytest.approx(
        tuple(mean_ci(per_question["total"]))[1:])
    assert s["wrong"] == 0.5                       # of the answerable question's two answers
    assert s["hedges_answerable"] == 0.5
    assert s["admits_unanswerable"] == 0.5
    assert s["gold_answerable"] == pytest.approx(totals[ev.answers["answerable"]].mean())
    assert s["n_questions"] == 2 and s["k"] == 2
    assert math.isnan(s["reward"]) and math.isnan(s["kl"])
    for key in ("correct", "kind", "concise", "on_topic", "rude", "rambling",
                "gold_unanswerable", "words"):
        assert key in s


def test_grading_needs_no_torch():
    code = ("import sys; from rlhf_lab import evaluation as e; "
            "ev = e.Evaluation.from_answers('m', e.evaluation_questions(True)[:3], ['a', 'b', 'c']); "
            "ev.summary(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- on a real tiny model ---------------------------------------------------------------------

def test_evaluate_model_is_paired_reproducible_and_harmless(sft_trained):
    import torch

    model, tokenizer = sft_trained.model, sft_trained.tokenizer
    questions = stratified_subset(evaluation_questions(quick=True), 2)     # 24 questions
    model.train()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = evaluate_model(model, tokenizer, "sft", reference=model, questions=questions, k=2,
                           progress=False)
    assert torch.equal(torch.rand(3), expected_next)       # caller's random state untouched
    assert model.training                                  # and its training mode
    again = evaluate_model(model, tokenizer, "sft", questions=questions, k=2, progress=False)

    df = first.answers
    assert len(df) == 2 * len(questions) == 48
    assert df.groupby("question").size().eq(2).all()
    assert first.answers["answer"].tolist() == again.answers["answer"].tolist()
    assert df["answer"][df["sample"] == 0].tolist() != df["answer"][df["sample"] == 1].tolist()
    assert df["kl"].abs().max() < 1e-5                     # a model against itself: KL 0
    assert again.answers["kl"].isna().all() and df["reward"].isna().all()
    d = paired_difference(first, again)
    assert d["difference"] == 0 and d["within_noise"]
    assert win_rate(first, again) == 0.5
    s = first.summary()
    assert s["n_questions"] == 24 and s["k"] == 2 and 0 <= s["gold"] <= 4
    with pytest.raises(ValueError, match="k = 9"):
        evaluate_model(model, tokenizer, "x", questions=questions, k=9)
