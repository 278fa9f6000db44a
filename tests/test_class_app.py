"""The class round's data (rlhf_lab.class_app): the name rule, name claims, the pairs file, and
the commands that make it and refuse to serve a broken one (tests/test_class_server.py tests
the server itself)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from browser_tools import free_port, http_get
from class_pairs import write_pairs

from rlhf_lab import class_app, class_server, feedback
from rlhf_lab.class_app import NameTakenError, PairsFileError, claim_name, read_pairs_file



# --- the name rule -------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../ann", "..", ".", ".hidden", "a/b", "a\\b", "/etc/passwd", "ann/../../x",   # paths
    "", " ", "a b", "a\nb", "-rf", "_x", "ann;rm", "a*",                           # empty, odd
    "a" * 65, "x" * 10_000,                                                        # too long
    "Zoë", "名前", "ann\u200b", "аnn",                        # unicode (the last: Cyrillic а)
])
def test_the_name_rule_refuses_paths_empty_long_and_unicode_names(tmp_path, name):
    with pytest.raises(ValueError, match="1 to 64 characters"):
        feedback.check_rater_name(name)
    with pytest.raises(ValueError, match="1 to 64 characters"):
        claim_name(tmp_path, name)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []    # nothing written anywhere


def test_a_trailing_newline_does_not_slip_through_the_rule():
    with pytest.raises(ValueError, match="1 to 64 characters"):
        feedback.check_rater_name("ann\n")


def test_a_ratings_file_the_app_did_not_write_is_never_handed_out(tmp_path):
    feedback.RatingsWriter(tmp_path, "bob").append(
        feedback.pair_record("bob", "q?", "x", "y", "a", "sft"))
    with pytest.raises(NameTakenError):
        claim_name(tmp_path, "bob")
    assert len(feedback.load_ratings(tmp_path / "bob.jsonl")) == 1


def test_two_claims_of_one_new_name_give_it_to_one_rater(tmp_path):
    code = claim_name(tmp_path, "cy")
    with pytest.raises(NameTakenError):
        claim_name(tmp_path, "cy")
    assert claim_name(tmp_path, "cy", code) == code
    assert (tmp_path / ".claims" / "cy").read_text() == code
    assert feedback.ratings_frame(tmp_path).empty      # chapter 09 reads the folder as it is


def test_guessing_a_resume_code_is_locked_out_after_a_few_tries(tmp_path):
    from rlhf_lab.class_app import LOCKOUT_SECONDS, WRONG_CODES_ALLOWED

    code = claim_name(tmp_path, "dee", now=1000.0)
    wrong = "000000" if code != "000000" else "111111"
    for i in range(WRONG_CODES_ALLOWED):
        with pytest.raises(NameTakenError, match="is taken"):
            claim_name(tmp_path, "dee", wrong, now=1000.0 + i)
    # locked: even the right code is refused, with the time to wait, until the lockout ends
    with pytest.raises(NameTakenError, match="Too many wrong resume codes .* about 10 minutes"):
        claim_name(tmp_path, "dee", code, now=1010.0)
    last = 1000.0 + WRONG_CODES_ALLOWED - 1
    assert claim_name(tmp_path, "dee", code, now=last + LOCKOUT_SECONDS) == code
    # an empty code (someone else who chose the same name) is not a guess
    for _ in range(3 * WRONG_CODES_ALLOWED):
        with pytest.raises(NameTakenError, match="is taken"):
            claim_name(tmp_path, "dee", "", now=5000.0)
    assert claim_name(tmp_path, "dee", code, now=5000.0) == code
    # at most WRONG_CODES_ALLOWED guesses per LOCKOUT_SECONDS: the expected time to find one
    # of the million codes is over a year
    assert 10**6 / 2 / WRONG_CODES_ALLOWED * LOCKOUT_SECONDS / (365 * 24 * 3600) > 1


def test_one_student_locked_out_leaves_the_others_alone(tmp_path):
    from rlhf_lab.class_app import WRONG_CODES_ALLOWED

    claim_name(tmp_path, "eve", now=0.0)
    code = claim_name(tmp_path, "fay", now=0.0)
    for _ in range(WRONG_CODES_ALLOWED + 1):
        with pytest.raises(NameTakenError):
            claim_name(tmp_path, "eve", "123456x", now=1.0)
    assert claim_name(tmp_path, "fay", code, now=2.0) == code


# --- the pairs file --------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("", "holds no pairs"),
    ('{"prompt": "q?", "answer_a": "x", "answer_b": "y"}\n{"prompt": "q?", "answer_a": \n',
     "line 2: not valid JSON"),
    ('["q?", "x", "y"]\n', "line 1: expected a JSON object"),
    ('{"prompt": "q?", "answer_a": "x"}\n', "field 'answer_b' must be a non-empty string"),
    ('{"prompt": "q?", "answer_a": "x", "answer_b": ""}\n', "'answer_b' must be a non-empty"),
    ('{"prompt": "q?", "answer_a": "x", "answer_b": "y", "score": 1}\n', "unknown fields ['score']"),
    ('{"prompt": "q?", "answer_a": "x\\ud800", "answer_b": "y"}\n',
     "field 'answer_a' holds '\\ud800', half of a character (a lone surrogate)"),
])
def test_a_missing_or_malformed_pairs_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "pairs.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PairsFileError, match=re.escape(message)) as error:
        read_pairs_file(path)
    assert str(path) in str(error.value) and "make class-pairs" in str(error.value)


def test_make_pairs_writes_a_pairs_file_from_a_policy_and_never_replaces_one(sft_trained, tmp_path):
    path = class_app.write_pairs_file(tmp_path / "class" / "pairs.jsonl", 6, ["sft"])
    pairs = read_pairs_file(path)
    assert 1 <= len(pairs) <= 6 and all(p["model"].startswith("sft@T") for p in pairs)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        class_app.write_pairs_file(path, 6, ["sft"])
    assert path.read_bytes() == before


def test_make_pairs_without_the_policy_says_which_notebook_makes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    assert class_server.main(["make-pairs", "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "Run notebooks/02_sft.ipynb first" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_class_pairs_come_from_the_newest_policy_by_default(tmp_path, monkeypatch):
    """`make class-pairs` rates the current policy: the policy artifact saved last."""
    import os

    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    for age, name in enumerate(["ppo", "sft", "iterated"]):       # ppo saved last, iterated first
        folder = tmp_path / "quick" / name
        folder.mkdir(parents=True)
        (folder / "COMPLETE").write_text("")
        os.utime(folder / "COMPLETE", (1000 - age, 1000 - age))
    (tmp_path / "quick" / "dpo").mkdir()                           # incomplete: not a policy yet
    assert class_app.newest_policy() == "ppo"
    os.utime(tmp_path / "quick" / "iterated" / "COMPLETE", (2000, 2000))
    assert class_app.newest_policy() == "iterated"


def test_serve_refuses_a_bad_pairs_file_at_start_and_serves_nothing(tmp_path):
    port = free_port()
    bad = tmp_path / "pairs.jsonl"
    bad.write_text("not json\n")
    for pairs in [tmp_path / "missing.jsonl", bad]:
        done = subprocess.run([sys.executable, "-m", "rlhf_lab.class_server", "serve", "--pairs",
                               str(pairs), "--folder", str(tmp_path / "class"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith("error: ") and str(pairs) in done.stderr
        assert "make class-pairs" in done.stderr and "Traceback" not in done.stderr
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{port}/", timeout=2)


def test_serve_refuses_a_short_class_token(tmp_path, capsys):
    pairs = str(write_pairs(tmp_path / "p.jsonl"))
    assert class_server.main(["serve", "--pairs", pairs, "--token", "abc"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_the_rating_path_imports_no_torch():
    """The class server starts in about a second when it serves no chat: rating needs no torch."""
    code = "import sys, rlhf_lab.class_server; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
