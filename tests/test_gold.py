"""The gold scorer graded on hand-written answers, one criterion at a time."""
import random

import pytest

from rlhf_lab.gold import (Rubric, admits_not_knowing, gold_score, repeated_words, says_nothing,
                           score_concise, score_correct, score_kind, score_on_topic, sentences)
from rlhf_lab.scripted import make_answer
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
    ("colour", "frog", "I do not know, but a frog is green.", 0.0),   # a hedge, right value
    ("colour", "frog", "I'm not sure. A frog is green.", 0.0),  # the hedge as its own sentence
    ("colour", "frog", "I do not know.", 0.0),               # a fact exists: admitting is not it
    ("legs", "spider", "A spider has 8 legs.", 1.0),
    ("legs", "spider", "Spiders have eight legs.", 1.0),
    ("legs", "spider", "A spider has 6 legs.", 0.0),
    ("plus", "2 plus 3", "2 plus 3 is 5.", 1.0),
    ("plus", "2 plus 3", "5", 1.0),
    ("plus", "2 plus 3", "2 plus 3 is 6.", 0.0),
    ("plus", "2 plus 3", "It is 5 or 6.", 0.0),
    ("plus", "2 plus 3", "I am not sure, but 2 plus 3 is 5.", 0.0),
    ("opposite", "hot", "The opposite of hot is cold.", 1.0),
    ("opposite", "hot", "The opposite of hot is wet.", 0.0),
    ("kind_words", "cats", "Cats are lovely.", 1.0),
    ("kind_words", "cats", "Cats are smelly.", 0.0),
    ("unknown_animal", "blorp", "I do not know what a blorp is.", 1.0),
    ("unknown_animal", "blorp", "I don't know.", 1.0),
    ("unknown_animal", "blorp", "There is no such animal as a blorp.", 1.0),
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
    # 24 different words: halfway between 12 (full marks) and 36 (none)
    long = " ".join(f"frog{i}" for i in range(23)) + " green."
    assert score_concise(long) == pytest.approx(0.5)
    # two different sentences and the first again: 2 of 3 sentences unique, 14 words
    repeated = "A frog is green. A frog lives in the pond. A frog is green."
    assert score_concise(repeated) == pytest.approx(2 / 3 * (36 - 14) / 24)
    assert score_concise("") == 0.0
    # words said again straight after themselves: "cat cat cat" keeps 1 word of 3
    assert score_concise("cat cat cat") == pytest.approx(1 / 3)
    assert score_concise("A cat is grey grey grey.") == pytest.approx(4 / 6)
    assert score_concise("a cat is grey a cat is grey a cat is grey") == pytest.approx(4 / 12)
    # the repeated sentence is counted once, by the sentence rule: 1 of 2 unique, 8 words
    assert score_concise("A cat is grey. A cat is grey.") == 0.5


@pytest.mark.parametrize("text, expected", [
    ("cat cat cat", 2),
    ("A cat is grey grey grey.", 2),
    ("a cat is a cat is", 3),
    ("a cat is grey a cat is grey a cat is grey", 8),
    ("A cat is grey. A cat is grey.", 0),        # repeated sentences are the other count
    ("2 plus 2 is 4.", 0),                       # the same word, but not back to back
    ("1 times 1 is 1.", 0),
    ("", 0),
])
def test_repeated_words(text, expected):
    assert repeated_words(text) == expected


def test_on_topic(q):
    frog = q("colour", "frog")
    assert score_on_topic(frog, "A frog is green.") == 1.0
    assert score_on_topic(frog, "A frog is green. A duck is yellow.") == 0.5
    assert score_on_topic(frog, "I went to the shop today. I lost my keys again.") == 0.0
    assert score_on_topic(frog, "Sure! A frog is green. Hope that helps!") == 1.0
    sum_q = q("plus", "2 plus 3")
    assert score_on_topic(sum_q, "2 plus 3 is 5. The weather is nice today.") == 0.5
    # a sentence that only names the topic says nothing: it counts for neither side
    cat = q("colour", "cat")
    assert score_on_topic(cat, "cat cat cat") == 0.0
    assert score_on_topic(cat, "A cat.") == 0.0
    assert score_on_topic(cat, "A cat is grey. Cat cat.") == 1.0
    assert score_on_topic(cat, "Cat. A duck is yellow.") == 0.0
    assert says_nothing(cat, "A cat cat.") and not says_nothing(cat, "A cat is grey.")
    assert not says_nothing(sum_q, "2 plus 3 is 5.") and says_nothing(sum_q, "2 plus 3.")
    zero_plus_five = q("plus", "0 plus 5")                  # the answer is an operand
    assert not says_nothing(zero_plus_five, "5") and score_on_topic(zero_plus_five, "5") == 1.0


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


def _unknown(subject, attribute="colour"):
    return next(x for x in World().questions if x.kind == "unknown_animal"
                and x.subject == subject and x.template.startswith(f"unknown_animal/{attribute}"))


@pytest.mark.parametrize("kind, subject, answer, expected", [
    # a hedge on an answerable question: correct 0 although it names grey; 9 words, on topic
    ("colour", "cat", "I do not know, but a cat is grey.", (0.0, 1.0, 1.0, 1.0, 3.0)),
    # a plain admission on an answerable question: correct 0, as before
    ("colour", "cat", "I do not know.", (0.0, 1.0, 1.0, 1.0, 3.0)),
    # where no fact exists, admitting it is still fully correct
    ("unknown_animal", "blorp", "I do not know.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    ("unknown_animal", "blorp", "There is no such animal as a blorp.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    # only the topic, three times: no value (correct 0), says nothing (on topic 0), so not
    # concise either (0); only kindness is left. It scored 3 before the rule.
    ("colour", "cat", "cat cat cat", (0.0, 1.0, 0.0, 0.0, 1.0)),
    ("colour", "cat", "Cat.", (0.0, 1.0, 0.0, 0.0, 1.0)),
    # the right value, stuttered: concise keeps 4 of 6 words
    ("colour", "cat", "A cat is grey grey grey.", (1.0, 1.0, 4 / 6, 1.0, 3 + 4 / 6)),
    # normal short answers keep their scores
    ("colour", "cat", "A cat is grey.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    ("sound", "cat", "It says meow.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    ("plus", "8 plus 1", "8 plus 1 is 9.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    ("plus", "8 plus 1", "Nice one! 8 plus 1 is 9.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    ("times", "2 times 2", "2 times 2 is 4.", (1.0, 1.0, 1.0, 1.0, 4.0)),
    ("size", "cat", "Yes.", (0.0, 1.0, 0.0, 0.0, 1.0)),    # a courtesy only: as before
])
def test_hedges_and_empty_repeats(q, kind, subject, answer, expected):
    question = _unknown(subject) if kind == "unknown_animal" else q(kind, subject)
    g = gold_score(question, answer)
    assert (g.correct, g.kind, g.concise, g.on_topic, g.total) == pytest.approx(expected)


@pytest.mark.parametrize("style", ["good", "warm", "admit"])
def test_the_worlds_good_answers_are_neither_hedges_nor_repeats(style):
    """The two rules leave the scripted good, warm and admitting answers alone: none hedges on
    an answerable question, repeats a word or only names the topic."""
    rng = random.Random(0)
    for question in World().questions:
        answer = make_answer(question, style, rng)
        assert not (question.answerable and admits_not_knowing(answer)), answer
        assert repeated_words(answer) == 0, answer
        assert not any(says_nothing(question, s) for s in sentences(answer)), answer
        if style == "good":
            assert gold_score(question, answer).total == 4.0, (question.text, answer)
