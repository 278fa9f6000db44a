"""Simulated raters: Bradley-Terry rates, temperature 0, length bias, ties, filling up ratings."""
import math
import random

import pytest

from rlhf_lab import feedback
from rlhf_lab.gold import gold_score, words
from rlhf_lab.raters import SimulatedRater, fill_ratings, sigmoid
from rlhf_lab.scripted import STYLES, make_answer
from rlhf_lab.world import World

PROMPT = "what color is a cat?"
GOOD = "A cat is grey."                       # gold 4.0, 4 words
RUDE = "Ugh. A cat is grey."                  # gold 3.5
WARM = "Good question! A cat is grey."        # gold 4.0, 6 words
WRONG = "A cat is red."                       # gold 3.0


def empirical_rate(rater, answer_a, answer_b, draws):
    return sum(rater.choose_pair(PROMPT, answer_a, answer_b) == "a" for _ in range(draws)) / draws


def test_sigmoid_is_stable_and_symmetric():
    assert sigmoid(0) == 0.5
    assert sigmoid(1) == pytest.approx(0.7310585786)
    assert sigmoid(-1000) == 0.0 and sigmoid(1000) == 1.0
    assert sigmoid(2.5) + sigmoid(-2.5) == pytest.approx(1.0)


@pytest.mark.parametrize("temperature, answer_b, expected", [
    (0.5, RUDE, sigmoid(0.5 / 0.5)),      # d = 4.0 - 3.5
    (1.0, RUDE, sigmoid(0.5 / 1.0)),
    (2.0, WRONG, sigmoid(1.0 / 2.0)),     # d = 4.0 - 3.0
])
def test_preference_rate_matches_bradley_terry_within_sampling_error(temperature, answer_b,
                                                                     expected):
    rater = SimulatedRater("sim", temperature=temperature, seed=1)
    p = rater.prob_a_preferred(PROMPT, GOOD, answer_b)
    assert p == pytest.approx(expected)
    draws = 4000
    rate = empirical_rate(rater, GOOD, answer_b, draws)
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / draws)
    # and the reverse order gives the complement
    assert rater.prob_a_preferred(PROMPT, answer_b, GOOD) == pytest.approx(1 - p)


def test_thumbs_rate_matches_its_probability():
    rater = SimulatedRater("sim", temperature=0.5, thumbs_threshold=3.75, seed=2)
    p = rater.prob_up(PROMPT, RUDE)
    assert p == pytest.approx(sigmoid((3.5 - 3.75) / 0.5))
    draws = 4000
    rate = sum(rater.choose_single(PROMPT, RUDE) == "up" for _ in range(draws)) / draws
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / draws)


def test_temperature_zero_always_picks_the_gold_winner():
    rater = SimulatedRater("exact", temperature=0.0, tie_margin=0.05, seed=3)
    rng = random.Random(0)
    world = World()
    decided = 0
    for question in rng.sample(world.questions, 150):
        a, b = (make_answer(question, style, rng) for style in rng.sample(STYLES, 2))
        gap = gold_score(question, a).total - gold_score(question, b).total
        expected = "tie" if abs(gap) < 0.05 else "a" if gap > 0 else "b"
        assert rater.choose_pair(question.text, a, b) == expected
        decided += expected != "tie"
    assert decided > 100
    assert rater.choose_single(PROMPT, GOOD) == "up" and rater.choose_single(PROMPT, RUDE) == "down"
    assert SimulatedRater("edge", temperature=0, thumbs_threshold=4.0).prob_up(PROMPT, GOOD) == 1


def test_a_tie_flips_no_coin():
    rater = SimulatedRater("sim", temperature=0.5, tie_margin=0.05, seed=4)
    state = rater.rng.getstate()
    assert rater.is_tie(PROMPT, GOOD, WARM)                         # both 4.0
    assert rater.choose_pair(PROMPT, GOOD, WARM) == "tie"
    assert rater.rng.getstate() == state
    assert SimulatedRater("sim", tie_margin=0.6).choose_pair(PROMPT, GOOD, RUDE) == "tie"


def test_length_bias_shifts_choices_towards_the_longer_answer():
    plain = SimulatedRater("plain", temperature=0.0)
    long_lover = SimulatedRater("long", temperature=0.0, length_bias=0.1)
    assert plain.choose_pair(PROMPT, GOOD, WARM) == "tie"
    assert long_lover.choose_pair(PROMPT, GOOD, WARM) == "b"         # 2 words longer
    assert long_lover.difference(PROMPT, GOOD, WARM) == pytest.approx(-0.1 * 2)

    rng = random.Random(5)
    pairs = []
    for question in rng.sample(World().questions, 300):
        a, b = (make_answer(question, style, rng) for style in rng.sample(STYLES, 2))
        if len(words(a)) != len(words(b)):
            pairs.append((question.text, a, b))

    def longer_chosen(rater):
        longer = [rater.choose_pair(p, a, b) == ("a" if len(words(a)) > len(words(b)) else "b")
                  for p, a, b in pairs]
        return sum(longer) / len(longer)

    unbiased = longer_chosen(SimulatedRater("u", temperature=0.5, seed=6))
    biased = longer_chosen(SimulatedRater("b", temperature=0.5, length_bias=0.05, seed=6))
    assert biased > unbiased + 0.15


def test_position_bias_pulls_towards_the_answer_shown_as_a():
    leans_left = SimulatedRater("left", temperature=0.0, position_bias=0.1)
    assert SimulatedRater("plain", temperature=0.0).choose_pair(PROMPT, GOOD, WARM) == "tie"
    # GOOD and WARM both score 4.0: whichever is shown as A wins, by 0.1
    assert leans_left.choose_pair(PROMPT, GOOD, WARM) == "a"
    assert leans_left.choose_pair(PROMPT, WARM, GOOD) == "a"
    assert leans_left.difference(PROMPT, GOOD, WARM) == pytest.approx(0.1)
    # d = 4.0 - 3.5 + 0.5 with A = GOOD, and 3.5 - 4.0 + 0.5 = 0 (a tie) with A = RUDE
    noisy = SimulatedRater("noisy", temperature=0.5, position_bias=0.5)
    assert noisy.prob_a_preferred(PROMPT, GOOD, RUDE) == pytest.approx(sigmoid(1.0 / 0.5))
    assert noisy.is_tie(PROMPT, RUDE, GOOD)
    assert SimulatedRater("right", temperature=0.0, position_bias=-0.1).choose_pair(
        PROMPT, GOOD, WARM) == "b"


def test_same_seed_same_choices():
    def choices(seed):
        rater = SimulatedRater("sim", temperature=1.0, seed=seed)
        return [rater.choose_pair(PROMPT, GOOD, RUDE) for _ in range(50)]
    assert choices(7) == choices(7)
    assert choices(7) != choices(8)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.1}, "temperature must be >= 0"),
    ({"temperature": math.nan}, "temperature must be a finite number"),
    ({"temperature": "hot"}, "temperature must be a finite number"),
    ({"tie_margin": -1}, "tie_margin must be >= 0"),
    ({"length_bias": math.inf}, "length_bias must be a finite number"),
    ({"position_bias": math.nan}, "position_bias must be a finite number"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulatedRater("sim", **kwargs)
    with pytest.raises(ValueError, match="rater name"):
        SimulatedRater("../sim")


def _pairs(n):
    questions = [q for q in World().questions if q.kind == "colour"][:n]
    return [{"prompt": q.text, "answer_a": f"A {q.subject} is {q.answer}.",
             "answer_b": f"Ugh. A {q.subject} is {q.answer}."} for q in questions]


def test_fill_ratings_uses_the_learners_ratings_first_and_reports_who_rated():
    pairs = _pairs(8)
    rated = [feedback.pair_record("ann", p["prompt"], p["answer_b"], p["answer_a"], "b", "sft")
             for p in pairs[:2]]
    skipped = feedback.pair_record("ann", pairs[2]["prompt"], pairs[2]["answer_a"],
                                   pairs[2]["answer_b"], "skip", "sft")
    thumbs = feedback.single_record("ann", PROMPT, GOOD, "up", "sft")
    rater = SimulatedRater("sim", temperature=0.0)
    records, report = fill_ratings(pairs, rated + [skipped, thumbs], needed=5, rater=rater,
                                   model="sft")
    assert records[:2] == rated
    simulated = records[2:]
    assert [r["rater"] for r in simulated] == ["sim"] * 3
    assert [r["pair_id"] for r in simulated] == [
        feedback.pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs[2:5]]
    assert all(r["choice"] == "a" and r["model"] == "sft" for r in simulated)
    assert report.to_dict("records") == [
        {"rater": "ann", "source": "human", "ratings": 2},
        {"rater": "sim", "source": "simulated", "ratings": 3},
        {"rater": "total", "source": "", "ratings": 5}]


def test_fill_ratings_keeps_every_human_rating_and_says_when_pairs_run_out():
    pairs = _pairs(3)
    human = [feedback.pair_record("ann", p["prompt"], p["answer_a"], p["answer_b"], "a", "sft")
             for p in pairs]
    rater = SimulatedRater("sim")
    records, report = fill_ratings(pairs, human, needed=2, rater=rater, model="sft")
    assert records == human and report["ratings"].tolist() == [3, 0, 3]
    with pytest.raises(ValueError, match="make 2 more pairs"):
        fill_ratings(pairs, human[:1], needed=5, rater=rater, model="sft")
    with pytest.raises(ValueError, match="which model"):
        fill_ratings(pairs, [], needed=1, rater=rater)
