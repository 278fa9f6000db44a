"""The rating widgets, driven by button clicks in Python, read back from the file."""
import pytest

from rlhf_lab.feedback import load_ratings, pair_id, read_records
from rlhf_lab.gold import RUBRIC
from rlhf_lab.widget import RatingWidget, SingleRatingWidget

PAIRS = [{"prompt": f"question {i}?", "answer_a": f"answer {i} a", "answer_b": f"answer {i} b"}
         for i in range(5)]


def shown(widget):
    """The pair on screen, as the learner sees it (None when nothing is left)."""
    return widget.current and (widget.current["prompt"], widget.current["answer_a"])


def test_shows_rubric_prompt_and_escaped_answers_side_by_side(tmp_path):
    pair = {"prompt": "Is 2 < 3?", "answer_a": "<script>x</script>", "answer_b": "Yes & no"}
    widget = RatingWidget([pair], "ann", "sft", folder=tmp_path)
    html = widget.children[0].value
    assert "Correct" in html and "On topic" in html and html.count("\n") >= RUBRIC.count("\n") - 1
    assert "Is 2 &lt; 3?" in widget.prompt.value
    assert "&lt;script&gt;x&lt;/script&gt;" in widget.answer_a.value
    assert "<script>" not in widget.answer_a.value
    assert "Yes &amp; no" in widget.answer_b.value
    assert [b.description for b in widget.buttons.values()] == [
        "A better", "B better", "Tie", "Skip", "Undo"]
    assert widget.progress_label.value == "rated 0 / 1"
    # a real widget: its model is open, so a notebook front end can display it
    assert widget.comm is not None and widget.model_id


def test_each_click_is_on_disk_at_once_and_moves_on(tmp_path):
    widget = RatingWidget(PAIRS, "ann", "sft", target=3, folder=tmp_path)
    path = tmp_path / "ann.jsonl"
    for expected, button in zip(["a", "b", "tie", "skip"], ["a", "b", "tie", "skip"]):
        widget.buttons[button].click()
        assert load_ratings(path)[-1]["choice"] == expected   # written before the next click
    records = load_ratings(path)
    assert [r["prompt"] for r in records] == [p["prompt"] for p in PAIRS[:4]]
    assert {r["model"] for r in records} == {"sft"} and {r["rater"] for r in records} == {"ann"}
    assert records[0]["pair_id"] == pair_id(*PAIRS[0].values())
    assert widget.progress.value == 3
    assert widget.progress_label.value.startswith("rated 3 / 3 (target reached")  # skip not counted
    assert shown(widget) == ("question 4?", "answer 4 a")


def test_undo_appends_an_undo_record_and_shows_the_pair_again(tmp_path):
    widget = RatingWidget(PAIRS, "ann", "sft", folder=tmp_path)
    widget.buttons["a"].click()
    widget.buttons["b"].click()
    widget.buttons["undo"].click()
    records = read_records(tmp_path / "ann.jsonl")
    assert [r["kind"] for r in records] == ["pair", "pair", "undo"]
    assert records[2]["undoes"] == records[1]["id"]
    assert shown(widget) == ("question 1?", "answer 1 a")
    assert widget.progress_label.value == "rated 1 / 5"
    widget.buttons["tie"].click()
    assert [r["choice"] for r in load_ratings(tmp_path / "ann.jsonl")] == ["a", "tie"]
    widget.buttons["undo"].click()
    widget.buttons["undo"].click()
    assert shown(widget) == ("question 0?", "answer 0 a") and widget.buttons["undo"].disabled
    widget.buttons["undo"].click()                         # nothing left: nothing written
    assert len(read_records(tmp_path / "ann.jsonl")) == 6   # a, b, undo, tie, undo, undo
    assert load_ratings(tmp_path / "ann.jsonl") == []


def test_a_new_widget_on_the_same_file_resumes_and_never_repeats_a_pair(tmp_path):
    first = RatingWidget(PAIRS, "ann", "sft", target=4, folder=tmp_path)
    first.buttons["a"].click()
    first.buttons["skip"].click()
    first.buttons["b"].click()
    first.buttons["undo"].click()                          # pair 2 is open again
    # the kernel restarts; the notebook builds the widget again, pairs now in another order
    again = RatingWidget(PAIRS[::-1] + PAIRS[:1], "ann", "sft", target=4, folder=tmp_path)
    assert again.progress_label.value == "rated 1 / 4"
    seen = []
    while again.current is not None:
        seen.append(shown(again))
        again.buttons["tie"].click()
    assert seen == [("question 4?", "answer 4 a"), ("question 3?", "answer 3 a"),
                    ("question 2?", "answer 2 a")]
    assert all(b.disabled for name, b in again.buttons.items() if name != "undo")
    assert "No pairs left" in again.prompt.value
    assert again.progress_label.value.startswith("rated 4 / 4")
    ids = [r["pair_id"] for r in load_ratings(tmp_path / "ann.jsonl")]
    assert len(ids) == len(set(ids)) == 5
    # undo after the restart reaches the ratings made before it
    again.buttons["undo"].click()
    again.buttons["undo"].click()
    again.buttons["undo"].click()
    again.buttons["undo"].click()
    assert shown(again) == ("question 1?", "answer 1 a")   # the skip, from the first session


def test_typing_a_letter_in_the_keys_box_presses_its_button(tmp_path):
    widget = RatingWidget(PAIRS, "ann", "sft", folder=tmp_path)
    for letter in "abtsu":
        widget.key_box.value += letter                     # what typing one key does
        assert widget.key_box.value == ""
    widget.key_box.value = "x"
    assert "does nothing" in widget.status.value
    choices = [r["choice"] for r in load_ratings(tmp_path / "ann.jsonl")]
    assert choices == ["a", "b", "tie"]                    # the skip was undone
    assert shown(widget) == ("question 3?", "answer 3 a")


def test_pairs_from_two_policies_record_both_names(tmp_path):
    pair = PAIRS[0] | {"model": "sft", "model_b": "ppo"}
    RatingWidget([pair], "ann", "ignored", folder=tmp_path).buttons["a"].click()
    record = load_ratings(tmp_path / "ann.jsonl")[0]
    assert (record["model"], record["model_b"]) == ("sft", "ppo")


def test_bad_rater_or_target_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rater name"):
        RatingWidget(PAIRS, "../ann", "sft", folder=tmp_path)
    with pytest.raises(ValueError, match="target"):
        RatingWidget(PAIRS, "ann", "sft", target=0, folder=tmp_path)
    with pytest.raises(ValueError, match="No pairs to rate"):
        RatingWidget([], "ann", "sft", folder=tmp_path)


def test_thumbs_widget_rates_single_answers_and_resumes(tmp_path):
    items = [{"prompt": f"question {i}?", "answer": f"answer {i}"} for i in range(3)]
    widget = SingleRatingWidget(items, "ann", "sft", folder=tmp_path)
    assert "answer 0" in widget.answer.value
    widget.buttons["up"].click()
    widget.key_box.value = "-"
    records = load_ratings(tmp_path / "ann.jsonl")
    assert [(r["kind"], r["answer"], r["choice"]) for r in records] == [
        ("single", "answer 0", "up"), ("single", "answer 1", "down")]
    again = SingleRatingWidget(items, "ann", "sft", folder=tmp_path)
    assert again.progress_label.value == "rated 2 / 3"
    assert again.current == items[2]
    # pair and thumbs ratings share the file without mixing
    pairs = RatingWidget(PAIRS, "ann", "sft", folder=tmp_path)
    assert pairs.progress_label.value == "rated 0 / 5" and pairs.buttons["undo"].disabled


def test_a_failed_save_is_shown_and_the_item_stays(tmp_path, monkeypatch):
    widget = RatingWidget(PAIRS, rater="ann", model="sft", folder=tmp_path)
    first = widget.current

    def disk_full(record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(widget.writer, "append", disk_full)
    widget.buttons["a"].click()
    assert widget.status.value.startswith("NOT SAVED") and "No space left" in widget.status.value
    assert widget.current == first and widget.history == []
    monkeypatch.undo()
    widget.buttons["a"].click()
    assert widget.status.value.startswith("Saved") and widget.current != first
