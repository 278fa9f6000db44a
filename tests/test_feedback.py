"""Ratings storage: a killed writer loses nothing, bad lines are named, undos and duplicates."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from rlhf_lab import feedback
from rlhf_lab.feedback import (RatingsFileError, RatingsWriter, load_ratings, pair_id,
                               pair_record, ratings_frame, single_record,
                               undo_record)

PROMPT = "what colour is a cat?"
ROOT = Path(__file__).resolve().parent.parent


def write_lines(path: Path, records: list, tail: str = "\n") -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + tail)


def test_pair_id_ignores_order_and_depends_on_everything():
    assert pair_id(PROMPT, "x", "y") == pair_id(PROMPT, "y", "x")
    assert pair_id(PROMPT, "x", "y") != pair_id(PROMPT, "x", "z")
    assert pair_id(PROMPT, "x", "y") != pair_id("what colour is a dog?", "x", "y")
    assert pair_id("p", "a b", "c") != pair_id("p", "a", "b c")   # no ambiguous joining


def test_writer_appends_one_line_per_record_and_loader_applies_undo(tmp_path):
    writer = RatingsWriter(tmp_path, "ann")
    assert writer.path == tmp_path / "ann.jsonl"
    kept = writer.append(pair_record("ann", PROMPT, "A cat is grey.", "Ugh.", "a", "sft",
                                     model_b="pretrained"))
    undone = writer.append(pair_record("ann", PROMPT, "A cat is red.", "Ugh.", "b", "sft"))
    thumbs = writer.append(single_record("ann", PROMPT, "A cat is grey.", "up", "sft"))
    writer.append(undo_record("ann", undone["id"]))
    lines = writer.path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["schema"] == 1 for line in lines)
    assert writer.path.read_bytes().endswith(b"\n")
    assert load_ratings(writer.path) == [kept, thumbs]
    assert kept["model_b"] == "pretrained" and "model_b" not in undone


def test_writer_refuses_invalid_records(tmp_path):
    writer = RatingsWriter(tmp_path, "ann")
    with pytest.raises(ValueError, match="choice"):
        writer.append(pair_record("ann", PROMPT, "x", "y", "maybe", "sft"))
    with pytest.raises(ValueError, match="'bob'"):
        writer.append(pair_record("bob", PROMPT, "x", "y", "a", "sft"))
    assert not writer.path.exists()


@pytest.mark.parametrize("name", ["../x", "", "a" * 65, "a/b", "a\\b", "a b", ".", ".."])
def test_bad_rater_names_are_refused_with_the_rule(tmp_path, name):
    with pytest.raises(ValueError, match="1 to 64 characters"):
        RatingsWriter(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["ann", "a" * 64, "Team-3_b.v2"])
def test_good_rater_names_are_accepted(tmp_path, name):
    assert RatingsWriter(tmp_path, name).path.name == f"{name}.jsonl"


WRITER_SCRIPT = textwrap.dedent("""
    import sys
    from rlhf_lab.feedback import RatingsWriter, pair_record
    writer = RatingsWriter(sys.argv[1], "killed")
    i = 0
    while True:
        writer.append(pair_record("killed", "what colour is a cat?", f"answer {i}",
                                  "A cat is grey. " * 200, "a", "sft"))
        print(i, flush=True)
        i += 1
""")


def test_writer_killed_mid_session_loses_no_acknowledged_rating(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(tmp_path)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acknowledged = [int(process.stdout.readline()) for _ in range(40)]
    os.kill(process.pid, signal.SIGKILL)
    acknowledged += [int(line) for line in process.stdout.read().split()]
    assert process.wait() == -signal.SIGKILL
    path = tmp_path / "killed.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_ratings(path)
    answers = [r["answer_a"] for r in records]
    assert answers == [f"answer {i}" for i in range(len(records))]   # intact, in order
    assert len(records) >= max(acknowledged) + 1                     # every click that returned
    line_count = path.read_bytes().count(b"\n") + (not path.read_bytes().endswith(b"\n"))
    assert len(caught) <= 1 and len(records) >= line_count - 1
    for warning in caught:
        assert str(path) in str(warning.message) and f"line {line_count}" in str(warning.message)


def test_partial_last_line_is_warned_about_then_set_aside_by_the_next_writer(tmp_path):
    writer = RatingsWriter(tmp_path, "ann")
    first = [writer.append(pair_record("ann", PROMPT, f"answer {i}", "x", "a", "sft"))
             for i in range(3)]
    cut = json.dumps(pair_record("ann", PROMPT, "answer 3", "x", "a", "sft"))[:50]
    with open(writer.path, "a") as file:
        file.write(cut)                                   # a crash mid-write
    with pytest.warns(UserWarning, match=r"ann\.jsonl, line 4: the last line"):
        assert load_ratings(writer.path) == first
    with pytest.warns(UserWarning, match="moved to"):
        writer = RatingsWriter(tmp_path, "ann")           # after the kernel restarts
    assert (tmp_path / "ann.jsonl.partial").read_text() == cut + "\n"
    again = writer.append(pair_record("ann", PROMPT, "answer 3", "x", "b", "sft"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_ratings(writer.path) == first + [again]


def test_whole_record_without_final_newline_is_kept(tmp_path):
    path = tmp_path / "ann.jsonl"
    records = [pair_record("ann", PROMPT, f"answer {i}", "x", "a", "sft") for i in range(2)]
    write_lines(path, records, tail="")                   # e.g. saved by a text editor
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_ratings(path) == records
        RatingsWriter(tmp_path, "ann").append(records[0] | {"id": "f" * 32})
        assert len(load_ratings(path)) == 3


def _bad_lines():
    good = pair_record("ann", PROMPT, "x", "y", "a", "sft")
    without_choice = {k: v for k, v in good.items() if k != "choice"}
    return [
        ("not json", '{"schema": 1, "kind": "pair",', "not valid JSON"),
        ("blank line", "", "not valid JSON"),
        ("not an object", "[1, 2]", "expected a JSON object"),
        ("newer schema", good | {"schema": 2}, "newer rlhf_lab"),
        ("unknown schema", good | {"schema": 0}, "schema version is 0"),
        ("missing field", without_choice, "field 'choice' is missing"),
        ("bad choice", good | {"choice": "c"}, "choice is 'c'"),
        ("thumbs choice on a pair", good | {"choice": "up"}, "choice is 'up'"),
        ("wrong type", good | {"model": 3}, "field 'model' is 3"),
        ("unknown kind", good | {"kind": "triple"}, "kind is 'triple'"),
        ("unknown field", good | {"colour": "red"}, "unknown field 'colour'"),
        ("bad time", good | {"time": "yesterday"}, "not an ISO-8601 time in UTC"),
        ("local time", good | {"time": "2025-01-31T12:00:00+02:00"}, "in UTC"),
        ("bad id", good | {"id": "123"}, "32 lower-case hex"),
        ("edited answer", good | {"answer_b": "z"}, "pair_id .* does not match"),
        ("bad rater", good | {"rater": "../x"}, "rater '../x' is not valid"),
    ]


@pytest.mark.parametrize("case, line, message", _bad_lines(), ids=[c[0] for c in _bad_lines()])
def test_each_bad_line_is_reported_with_file_and_line_number(tmp_path, case, line, message):
    path = tmp_path / "ann.jsonl"
    around = [pair_record("ann", PROMPT, f"answer {i}", "y", "a", "sft") for i in range(2)]
    write_lines(path, [around[0], line, around[1]])
    with pytest.raises(RatingsFileError, match=message) as error:
        load_ratings(path)
    assert f"{path}, line 2:" in str(error.value)
    assert "fix or delete this line" in str(error.value)


def test_bad_last_line_with_its_newline_is_an_error_not_a_crash_fragment(tmp_path):
    path = tmp_path / "ann.jsonl"
    write_lines(path, [pair_record("ann", PROMPT, "x", "y", "a", "sft"), '{"schema": 1'])
    with pytest.raises(RatingsFileError, match="line 2: not valid JSON"):
        load_ratings(path)


def test_undo_must_name_an_earlier_rating_and_undoing_twice_changes_nothing(tmp_path):
    path = tmp_path / "ann.jsonl"
    rating = pair_record("ann", PROMPT, "x", "y", "a", "sft")
    other = pair_record("ann", PROMPT, "x", "z", "b", "sft")
    write_lines(path, [rating, other, undo_record("ann", rating["id"]),
                       undo_record("ann", rating["id"])])
    assert load_ratings(path) == [other]
    write_lines(path, [undo_record("ann", rating["id"]), rating])
    with pytest.raises(RatingsFileError, match="line 1: undoes .* not a rating on an earlier"):
        load_ratings(path)


def test_frame_merges_raters_applies_undo_and_keeps_the_latest_per_rater_and_pair(tmp_path):
    ann, bob = RatingsWriter(tmp_path, "ann"), RatingsWriter(tmp_path, "bob")
    ann.append(pair_record("ann", PROMPT, "x", "y", "a", "sft"))
    ann.append(pair_record("ann", PROMPT, "y", "x", "a", "sft"))   # same pair, later: wins
    undone = ann.append(pair_record("ann", PROMPT, "x", "z", "b", "sft"))
    ann.append(undo_record("ann", undone["id"]))
    bob.append(pair_record("bob", PROMPT, "x", "y", "tie", "sft"))  # another rater: kept
    bob.append(pair_record("bob", PROMPT, "x", "z", "skip", "sft"))
    bob.append(single_record("bob", PROMPT, "x", "down", "sft"))
    frame = ratings_frame(tmp_path)
    assert list(frame.columns) == feedback.FRAME_COLUMNS
    rows = {(r.rater, r.kind, r.answer_a, r.answer_b, r.answer, r.choice)
            for r in frame.astype(object).fillna("").itertuples()}
    assert rows == {("ann", "pair", "y", "x", "", "a"), ("bob", "pair", "x", "y", "", "tie"),
                    ("bob", "pair", "x", "z", "", "skip"), ("bob", "single", "", "", "x", "down")}
    assert str(frame["time"].dt.tz) == "UTC"
    assert ratings_frame([ann.path]).rater.tolist() == ["ann"]


def test_duplicate_at_the_same_time_keeps_the_one_written_later(tmp_path):
    first = pair_record("ann", PROMPT, "x", "y", "a", "sft")
    second = pair_record("ann", PROMPT, "x", "y", "b", "sft") | {"time": first["time"]}
    path = tmp_path / "ann.jsonl"
    write_lines(path, [first, second])
    assert ratings_frame(path).choice.tolist() == ["b"]


def test_hostile_lines_are_named_errors_never_raw_exceptions(tmp_path):
    path = tmp_path / "ann.jsonl"
    good = pair_record("ann", PROMPT, "x", "y", "a", "sft")
    write_lines(path, [good, json.dumps(good | {"kind": []})])
    with pytest.raises(RatingsFileError, match=r"line 2: kind is \[\]; it must be one of"):
        load_ratings(path)
    write_lines(path, [good, "[" * 100_000 + "]" * 100_000])
    with pytest.raises(RatingsFileError, match="line 2: JSON nested too deeply"):
        load_ratings(path)


def test_two_different_records_with_one_id_are_an_error_and_an_exact_copy_is_read_once(tmp_path):
    path = tmp_path / "ann.jsonl"
    first = pair_record("ann", PROMPT, "x", "y", "a", "sft")
    other = pair_record("ann", PROMPT, "x", "z", "b", "sft") | {"id": first["id"]}
    write_lines(path, [first, first])
    assert load_ratings(path) == [first]
    write_lines(path, [first, other])
    with pytest.raises(RatingsFileError, match="line 2: its id .* record on line 1"):
        load_ratings(path)
    # an undo names a rating, not another undo
    undo = undo_record("ann", first["id"])
    write_lines(path, [first, undo, undo_record("ann", undo["id"])])
    with pytest.raises(RatingsFileError, match="line 3: undoes"):
        load_ratings(path)
