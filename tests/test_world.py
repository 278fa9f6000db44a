import random

import pytest

from rlhf_lab.scripted import STYLES, make_answer
from rlhf_lab.world import World, format_prompt


@pytest.fixture(scope="module")
def world():
    return World()


def test_world_is_deterministic(world):
    again = World()
    assert [q.text for q in again.questions] == [q.text for q in world.questions]
    assert [q.heldout for q in again.questions] == [q.heldout for q in world.questions]


def test_sizes(world):
    assert len(world.questions) > 3000
    assert world.template_count() >= 300
    kinds = {q.kind for q in world.questions}
    assert {"colour", "plus", "opposite", "kind_words", "unknown_animal", "big_sum"} <= kinds


def test_heldout_split_shares_no_phrasing_and_subject_with_train(world):
    held = world.split("heldout")
    train = world.split("train")
    assert 0.05 < len(held) / len(world.questions) < 0.2
    train_keys = {(q.template, q.subject) for q in train}
    assert not any((q.template, q.subject) in train_keys for q in held)
    with pytest.raises(ValueError, match="split must be"):
        world.split("test")


def test_lookup_accepts_question_or_prompt(world):
    q = world.questions[10]
    assert world.lookup(q.text) is q
    assert world.lookup(format_prompt(q.text)) is q
    with pytest.raises(KeyError, match="not a question of this world"):
        world.lookup("what is the meaning of life?")


def test_facts_in_answers(world):
    frog = next(q for q in world.questions if q.kind == "colour" and q.subject == "frog")
    assert frog.answer == "green"
    rng = random.Random(0)
    assert make_answer(frog, "good", rng) == "A frog is green."
    assert "green" not in make_answer(frog, "wrong", rng)
    sum_q = next(q for q in world.questions if q.kind == "plus" and q.subject == "2 plus 3")
    assert sum_q.answer == "5"
    made_up = next(q for q in world.questions if q.kind == "unknown_animal")
    assert made_up.answer is None and not made_up.answerable
    with pytest.raises(ValueError, match="style must be one of"):
        make_answer(frog, "sarcastic", rng)
    assert set(STYLES) >= {"good", "rude", "rambling"}
