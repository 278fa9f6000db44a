"""The report card: rows recorded, replaced, ordered, read back, printed and drawn."""
import math
from pathlib import Path

import pandas as pd
import pytest

from rlhf_lab import report_card
from rlhf_lab.artifacts import MissingArtifactError
from rlhf_lab.evaluation import (
    Evaluation,
    evaluation_questions,
    paired_difference,
    stratified_subset,
    win_rate,
)
from rlhf_lab.report_card import (
    MissingReportCardError,
    format_card,
    load_card,
    load_evaluation,
    plot_card,
    record,
)

DUNNO = "I do not know."


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    return tmp_path / "quick"


@pytest.fixture(scope="module")
def questions():
    return stratified_subset(evaluation_questions(quick=True), 1)     # one of each kind


def right(q) -> str:
    return f"{q.answer}." if q.answerable else DUNNO


def made(name, questions, answer, k=2, **kwargs) -> Evaluation:
    """An evaluation whose answer to question i, sample j is answer(i, j, question)."""
    return Evaluation.from_answers(name, questions,
                                   [[answer(i, j, q) for i, q in enumerate(questions)]
                                    for j in range(k)], **kwargs)


@pytest.fixture(scope="module")
def models(questions):
    sft = made("sft", questions, lambda i, j, q: DUNNO if i % 2 else right(q), kl=0.0,
               reward=0.5)
    return {
        "sft": sft,
        "pretrained": made("pretrained", questions, lambda i, j, q: "None" if j else ""),
        "ppo": made("ppo", questions, lambda i, j, q: right(q), kl=1.5),
        # like SFT but for one answer: no measurable difference
        "dpo": made("dpo", questions,
                    lambda i, j, q: right(q) if (i, j) == (1, 0) else sft.answers.loc[
                        (sft.answers["sample"] == j)].iloc[i]["answer"], kl=0.2),
    }


def test_missing_card_names_the_first_chapter(artifacts):
    with pytest.raises(MissingArtifactError, match=r"notebooks/02_sft\.ipynb") as error:
        load_card()
    assert isinstance(error.value, FileNotFoundError)
    assert "artifacts/quick/report_card.csv" in str(error.value)
    with pytest.raises(MissingReportCardError, match=r"notebooks/06_ppo\.ipynb"):
        load_evaluation("ppo")


def test_record_writes_rereads_replaces_and_orders(artifacts, models):
    record(models["ppo"], notebook="06_ppo")
    assert math.isnan(load_card().set_index("name").loc["ppo", "vs_sft"])   # no SFT yet
    record(models["sft"], notebook="02_sft")
    record(Evaluation("my_run", models["dpo"].answers), notebook="scratch")
    record(models["pretrained"], notebook="02_sft", baseline=None)
    record(Evaluation("another", models["sft"].answers), notebook="scratch")
    card = record(models["dpo"], notebook="08_dpo", setting="beta=0.1")
    assert card["name"].tolist() == ["pretrained", "sft", "ppo", "dpo", "my_run", "another"]

    again = record(models["dpo"], notebook="08_dpo", setting="beta=0.5")
    assert again["name"].tolist() == card["name"].tolist()             # replaced, not added
    reread = load_card()
    assert reread["name"].tolist() == card["name"].tolist()
    rows = reread.set_index("name")
    assert rows.loc["dpo", "setting"] == "beta=0.5" and rows.loc["dpo", "notebook"] == "08_dpo"
    assert rows.loc["pretrained", "setting"] == ""

    summary = models["ppo"].summary()
    for key, value in summary.items():
        assert rows.loc["ppo", key] == pytest.approx(value, nan_ok=True), key
    # the SFT row compares with nothing; PPO's comparison arrived when SFT was recorded
    assert rows.loc["sft", "vs_sft"] == 0 and math.isnan(rows.loc["sft", "vs_sft_low"])
    assert math.isnan(rows.loc["sft", "win_rate_vs_sft"])
    diff = paired_difference(models["ppo"], models["sft"])
    assert rows.loc["ppo", "vs_sft"] == pytest.approx(diff["difference"])
    assert rows.loc["ppo", "vs_sft_low"] == pytest.approx(diff["low"])
    assert rows.loc["ppo", "vs_sft_high"] == pytest.approx(diff["high"])
    assert rows.loc["ppo", "win_rate_vs_sft"] == pytest.approx(win_rate(models["ppo"],
                                                                         models["sft"]))
    assert not rows.loc["ppo", "vs_sft_within_noise"]
    assert rows.loc["dpo", "vs_sft_within_noise"]
    assert math.isnan(rows.loc["pretrained", "vs_sft"])                # baseline=None
    assert not [p for p in artifacts.rglob("*") if "tmp" in p.name]    # written atomically


def test_per_answer_file_gives_the_same_evaluation(artifacts, models):
    for name in ("sft", "pretrained"):
        record(models[name], notebook="02_sft")
        back = load_evaluation(name)
        assert back.summary() == pytest.approx(models[name].summary(), nan_ok=True)
        pd.testing.assert_frame_equal(back.answers, models[name].answers, check_dtype=False)
    assert load_evaluation("pretrained").answers["answer"].tolist()[-1] == "None"
    assert (artifacts / "evaluations" / "sft.jsonl").exists()


def test_any_text_a_model_writes_reads_back_exactly(artifacts, questions):
    """A small model writes anything: line breaks, a carriage return, commas, quotes, control
    characters, "7" or "nan". Each answer reads back as it was written (a CSV file once
    split such rows and broke the comparison with SFT)."""
    odd = ["a,b \"c\"", "line\nbreak", "carriage\rreturn", "\x00\x1b[0m\ttab", "7", "nan",
           "", "None", "\u00e9\u2019 \ufffd"]
    weird = made("weird", questions, lambda i, j, q: odd[(i + j) % len(odd)], kl=0.1)
    record(weird, notebook="02_sft", baseline=None)
    back = load_evaluation("weird")
    assert back.answers["answer"].tolist() == weird.answers["answer"].tolist()
    assert back.summary() == pytest.approx(weird.summary(), nan_ok=True)


def test_format_card_reads_like_a_report(artifacts, models):
    for name in ("sft", "ppo", "dpo"):
        record(models[name], notebook="nb")
    text = format_card(load_card())
    lines = {line.split()[0]: line for line in text.splitlines() if line.split()}
    assert "no measurable difference" in lines["dpo"]
    assert "no measurable difference" not in lines["ppo"]
    assert "(baseline)" in lines["sft"]
    assert "quick mode" in text and "12 questions x 2 samples" in text
    gold = load_card().set_index("name").loc["ppo", "gold"]
    assert f"{gold:.2f}" in lines["ppo"]


def test_plot_card_and_command_line(artifacts, models, tmp_path, capsys):
    for name in ("sft", "ppo", "pretrained"):
        record(models[name], notebook="nb")
    fig = plot_card(load_card(), save=False)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["pretrained", "sft", "ppo"]
    assert "KL" in fig.axes[1].get_xlabel() and "gold" in fig.axes[0].get_xlabel()

    card = report_card.main(["--quick", "--artifacts", str(tmp_path)])
    assert card["name"].tolist() == ["pretrained", "sft", "ppo"]
    out = capsys.readouterr().out
    assert "Report card" in out
    figure = artifacts / "figures" / "report_card.png"
    assert figure.exists()
    shown = out.rsplit("Figure: ", 1)[1].strip()             # the file it saved, not ./artifacts
    assert Path(shown).resolve() == figure.resolve()

    with pytest.raises(SystemExit) as exit_:
        report_card.main(["--quick", "--artifacts", str(tmp_path / "nothing")])
    assert exit_.value.code == 1
    assert "notebooks/02_sft.ipynb" in capsys.readouterr().err


def test_a_name_must_be_a_file_name(artifacts, models):
    with pytest.raises(ValueError, match="cannot name"):
        record(Evaluation("../sft", models["sft"].answers), notebook="nb")
