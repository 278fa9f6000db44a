"""The chat widget (chat.py): answers side by side, every thumb on disk at once and naming its
model, a failed save shown and never lost silently, bad questions refused with a message."""
import json

import pytest
from tiny_models import chat_models

from rlhf_lab import feedback
from rlhf_lab.chat import MAX_QUESTION_CHARS, ChatWidget
from rlhf_lab.gold import gold_score
from rlhf_lab.world import World

QUESTION = World().split("train")[0]


@pytest.fixture(scope="module")
def tiny_models():
    """Two untrained one-layer GPT-2s sharing a tokenizer trained on a few dialogues."""
    return chat_models()


def test_ask_answers_with_every_model_and_shows_gold_for_a_known_question(tiny_models, tmp_path):
    chat = ChatWidget(tiny_models, rater="ann", folder=tmp_path)
    assert all(b.disabled for t in chat.thumbs.values() for b in t.values())   # nothing to rate
    chat.ask(QUESTION.text)
    assert set(chat.answers) == {"one", "two"}
    for name, answer in chat.answers.items():
        expected = f"gold {gold_score(QUESTION, answer).total:.2f} of 4"
        assert expected in chat.bodies[name].value
        assert not any(b.disabled for b in chat.thumbs[name].values())
    chat.ask("what is the meaning of life?")                  # not a question of the world
    assert all("gold" not in chat.bodies[n].value for n in chat.models)


def test_each_thumb_is_on_disk_at_once_naming_its_model_and_the_file_holds_exactly_those(
        tiny_models, tmp_path):
    chat = ChatWidget(tiny_models, rater="ann", folder=tmp_path)
    chat.ask(QUESTION.text)
    chat.thumbs["two"]["down"].click()
    path = feedback.ratings_path("ann", tmp_path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["model"] == "two" and lines[0]["choice"] == "down"
    assert lines[0]["answer"] == chat.answers["two"] and lines[0]["prompt"] == QUESTION.text
    assert all(b.disabled for b in chat.thumbs["two"].values())      # one thumb per answer
    chat.thumbs["one"]["up"].click()
    chat.regenerate()
    chat.thumbs["one"]["up"].click()
    records = feedback.load_ratings(path)
    assert [(r["model"], r["choice"]) for r in records] == [("two", "down"), ("one", "up"),
                                                          ("one", "up")]
    assert records == chat.saved
    assert "Saved" in chat.notes["one"].value


def test_a_failed_save_is_shown_under_the_answer(tiny_models, tmp_path, monkeypatch):
    chat = ChatWidget(tiny_models, rater="ann", folder=tmp_path)
    chat.ask(QUESTION.text)

    def disk_full(record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(chat.writer, "append", disk_full)
    assert chat.thumb("one", "up") is None
    assert "Not saved" in chat.notes["one"].value and "No space left" in chat.notes["one"].value
    assert not chat.thumbs["one"]["up"].disabled                     # the student can retry
    assert chat.saved == []


def test_bad_questions_and_bad_set_up_get_a_message_not_a_dead_widget(tiny_models, tmp_path):
    chat = ChatWidget(tiny_models, rater="ann", folder=tmp_path)
    chat.ask("   ")
    assert "Type a question first" in chat.status.value and chat.answers == {}
    chat.ask("x" * (MAX_QUESTION_CHARS + 1))
    assert f"at most {MAX_QUESTION_CHARS}" in chat.status.value and chat.answers == {}
    chat.regenerate()
    assert "Ask a question first" in chat.status.value
    with pytest.raises(ValueError, match="at least one model"):
        ChatWidget({}, rater="ann", folder=tmp_path)
    with pytest.raises(ValueError):
        ChatWidget(tiny_models, rater="two words", folder=tmp_path)


def test_temperature_and_seed_reach_the_sampler(tiny_models, tmp_path):
    chat = ChatWidget(tiny_models, rater="ann", folder=tmp_path, seed=10)
    chat.temperature.value = 0.1
    chat.ask(QUESTION.text)
    assert chat.seed == 11 and "temperature 0.1" in chat.status.value
    first = dict(chat.answers)
    chat.seed = 10
    chat.ask(QUESTION.text)
    assert chat.answers == first                                 # same seed, same answers


def test_chat_thumbs_come_first_in_the_thumbs_kto_trains_on(tiny_models, tmp_path):
    import pandas as pd

    from rlhf_lab.raters import SimulatedRater
    from rlhf_lab.thumbs import own_thumbs, training_thumbs

    chat = ChatWidget(tiny_models, rater="ann", folder=tmp_path)
    chat.ask(QUESTION.text)
    chat.thumb("one", "down")
    chat.thumb("two", "up")
    mine = own_thumbs(tmp_path)
    assert [(r["model"], r["choice"]) for r in mine] == [("one", "down"), ("two", "up")]
    questions = World().split("train")[1:6]
    pairs = pd.DataFrame({"prompt": [q.text for q in questions], "answer_a": ["x"] * 5,
                          "answer_b": ["y"] * 5})
    thumbs, report = training_thumbs(pairs, SimulatedRater("simulated"), seed=0, own=mine)
    assert len(thumbs) == 5
    assert thumbs.iloc[:2][["answer", "up"]].values.tolist() == [[chat.answers["one"], False],
                                                                 [chat.answers["two"], True]]
    assert report.set_index("rater").loc["ann", "source"] == "you"
