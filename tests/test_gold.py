"""The gold scorer graded on hand-written answers, one criterion at a time."""
import pytest

from rlhf_lab.gold import Rubric, gold_score, score_concise, score_correct, score_kind, score_on_topic
from rlhf_lab.world import World


@pytest.fixture(scope="module")
def q():
    w = World()
    def find(kind, subject):
        return next(x for x in w.questions if x.kind == kind and x.subject == subject)
    return find


@pytest.mark.parametrize("kind, subject, answer, expected", [
    ("colour", "frog", "A frog is green.", 1.0),
    ("colour", "frog", "Frogs are GREEN!", 1.0),
    ("colour", "frog", "A frog is blue.", 0.0),
    ("colour", "frog", "A frog is green or blue.", 0.0),     # hedging with a wrong value
    ("colour", "frog", "A frog says ribbit.", 0.0),          # true, but not what was asked
    ("legs", "spider", "A spider has 8 legs.", 1.0),
    ("legs", "spider", "Spiders have eight legs.", 1.0),
    ("legs", "spider", "A spider has 6 legs.", 0.0),
    ("plus", "2 plus 3", "2 plus 3 is 5.", 1.0),
    ("plus", "2 plus 3", "5", 1.0),
    ("plus", "2 plus 3", "2 plus 3 is 6.", 0.0),
    ("plus", "2 plus 3", "It is 5 or 6.", 0.0),
    ("opposite", "hot", "The opposite of hot is cold.", 1.0),
    ("opposite", "hot", "The opposite of hot is wet.", 0.0),
    ("kind_words", "cats", "Cats are lovely.", 1.0),
    ("kind_words", "cats", "Cats are smelly.", 0.0),
    ("unknown_animal", "blorp", "I do not know what a blorp is.", 1.0),
    ("unknown_animal", "blorp", "I don't know.", 1.0),
    ("unknown_animal", "blorp", "A blorp is red.", 0.0),
    ("unknown_animal", "blorp", "I do not know, but a blorp is red.", 0.0),
])
def test_correct(q, kind, subject, answer, expected):
    question = q(kind, subject) if kind != "unknown_animal" else next(
        x for x in World().questions if x.kind == kind and x.subject == subject
        and x.template.startswith("unknown_animal/colour"))
    assert score_correct(question, answer) == expected


def test_correct_big_sum_admission_without_a_made_up_number():
    big = next(x for x in World().questions if x.kind == "big_sum")
    x, _, y = big.subject.split()
    assert score_correct(big, "I can only do sums with small numbers.") == 1.0
    assert score_correct(big, f"I am not sure what {x} plus {y} is.") == 1.0
    assert score_correct(big, f"{x} plus {y} is {int(x) + int(y) + 13}.") == 0.0


@pytest.mark.parametrize("answer, expected", [
    ("A frog is green.", 1.0),
    ("Good question! A frog is green.", 1.0),
    ("Ugh. A frog is green.", 0.5),
    ("What a stupid question. A frog is green. Now go away.", 0.0),
    ("Obviously a frog is green, everyone knows that, idiot.", 0.0),
])
def test_kind(answer, expected):
    assert score_kind(answer) == expected


def test_concise():
    assert score_concise("A frog is green.") == 1.0
    # 24 words: halfway between 12 (full marks) and 36 (none)
    long = " ".join(["frogs"] * 23) + " green."
    assert score_concise(long) == pytest.approx(0.5)
    # two different sentences and the first again: 2 of 3 sentences unique, 14 words
    repeated = "A frog is green. A frog lives in the pond. A frog is green."
    assert score_concise(repeated) == pytest.approx(2 / 3 * (36 - 14) / 24)
    assert score_concise("") == 0.0


def test_on_topic(q):
    frog = q("colour", "frog")
    assert score_on_topic(frog, "A frog is green.") == 1.0
    assert score_on_topic(frog, "A frog is green. A duck is yellow.") == 0.5
    assert score_on_topic(frog, "I went to the shop today. I lost my keys again.") == 0.0
    assert score_on_topic(frog, "Sure! A frog is green. Hope that helps!") == 1.0
    sum_q = q("plus", "2 plus 3")
    assert score_on_topic(sum_q, "2 plus 3 is 5. The weather is nice today.") == 0.5


def test_total_is_weighted_sum(q):
    frog = q("colour", "frog")
    g = gold_score(frog, "Ugh. A frog is blue.")
    assert (g.correct, g.kind, g.concise, g.on_topic) == (0.0, 0.5, 1.0, 1.0)
    assert g.total == 2.5
    heavy = gold_score(frog, "Ugh. A frog is blue.", Rubric(correct=3.0, kind=2.0))
    assert heavy.total == 0 * 3 + 0.5 * 2 + 1 + 1
    assert gold_score(frog, "A frog is green.").total == Rubric().best_total
    assert gold_score(frog, "  ").total == 0.0
    babble = gold_score(frog, "le says donkeyy?")      # short nonsense: kind, nothing more
    assert (babble.on_topic, babble.concise, babble.kind) == (0.0, 0.0, 1.0)
    sum_q = next(x for x in World().questions if x.kind == "plus" and x.subject == "2 plus 3")
    assert gold_score(sum_q, "5").total == 4.0        # the bare right answer is on topic
