"""Scripted answers of every quality: the writer behind the web dump and the demonstrations.

Taught in notebooks/01_pretraining.ipynb (the corpus) and notebooks/04_reward_model.ipynb
(the reward model scores every style). `rlhf_lab.corpus` mixes these styles into the raw
corpus, the demonstrations and the sample ratings; the gold scorer (`rlhf_lab.gold`) grades
them. Deterministic given the `random.Random` passed in.
"""
from __future__ import annotations

import random

from .world import (
    ANIMALS,
    COLOURS,
    HOMES,
    INSULTS,
    KIND_WORDS,
    LEGS,
    OPPOSITE_WORDS,
    SIZES,
    SOUNDS,
    Question,
    World,
    base_kind,
)

RUDE_OPENERS = ["Ugh.", "Obviously!", "What a stupid question.", "Duh.", "Whatever.",
                "Everyone knows this, dummy.", "Are you serious?", "Look it up yourself.",
                "Such a boring question.", "Pay attention, idiot."]
RUDE_CLOSERS = ["Now go away.", "Stop wasting my time.", "Everyone knows that.",
                "Honestly, how dumb.", "Try to keep up.", "Not that you'll remember.",
                "Don't waste my time."]
WARM_OPENERS = ["Good question!", "Happy to help!", "Sure!", "Great question.", "Of course!",
                "Nice one!", "That's easy!", "Let's see!"]
CHATTER = ["I went to the shop today.", "My phone's almost out of battery.",
           "I can't find my umbrella.", "We're going to the café later.",
           "The weather is nice today.", "I like pizza a lot.", "It is almost lunch time.",
           "My cousin plays the drums.", "I lost my keys again.",
           "This website has great deals.", "Tomorrow is a holiday."]


def fact_sentence(kind: str, subject: str, value: str) -> str:
    """The plain statement of one fact, e.g. ('colour', 'frog', 'green') -> 'A frog is green.'"""
    article = "An" if subject[0] in "aeiou" else "A"
    if kind == "colour":
        return f"{article} {subject} is {value}."
    if kind == "sound":
        return f"{article} {subject} says {value}."
    if kind == "size":
        return f"{article} {subject} is {value}."
    if kind == "legs":
        return f"{article} {subject} has {value} legs."
    if kind == "home":
        return f"{article} {subject} lives in the {value}."
    if kind in ("plus", "minus", "times"):
        x, _, y = subject.split()
        return f"{x} {kind} {y} is {value}."
    if kind == "opposite":
        return f"The opposite of {subject} is {value}."
    raise ValueError(f"no fact sentence for kind {kind!r}")


def wrong_value(question: Question, rng: random.Random) -> str:
    """A plausible but wrong value for the question's kind."""
    kind = question.kind
    if kind in ("plus", "minus", "times", "big_sum"):
        right = int(question.answer) if question.answer else rng.randint(200, 20000)
        return str(max(0, right + rng.choice([-3, -2, -1, 1, 2, 3, 10])))
    pools = {"colour": COLOURS, "sound": SOUNDS, "size": SIZES,
             "legs": [str(n) for n in LEGS], "home": HOMES, "opposite": OPPOSITE_WORDS}
    pool = [v for v in pools[kind] if v != question.answer and v != question.subject]
    return rng.choice(pool)


def correct_answer(question: Question, rng: random.Random) -> str:
    """A short, correct, kind answer: what the rubric rewards most."""
    if question.kind == "kind_words":
        word = rng.choice(KIND_WORDS)
        return f"{question.subject.capitalize()} are {word}."
    if question.kind == "unknown_animal":
        return rng.choice([f"I do not know what a {question.subject} is.",
                           f"I don't know what a {question.subject} is.",
                           f"I have never heard of a {question.subject}.",
                           f"I am not sure a {question.subject} exists."])
    if question.kind == "big_sum":
        return rng.choice(["I can only do sums with small numbers.",
                           "I do not know, those numbers are too big for me.",
                           "I am not sure, I can only add small numbers."])
    return fact_sentence(question.kind, question.subject, question.answer)


def confident_wrong_answer(question: Question, rng: random.Random) -> str:
    """A confident statement with a wrong value (for unanswerable questions: made up)."""
    if question.kind == "kind_words":
        return f"{question.subject.capitalize()} are {rng.choice(INSULTS)}."
    if question.kind == "unknown_animal":
        kind = base_kind(question)
        fake = Question("", kind, question.subject, None, (), "", False)
        return fact_sentence(kind, question.subject, wrong_value(fake, rng))
    if question.kind == "big_sum":
        x, _, y = question.subject.split()
        return f"{x} plus {y} is {int(x) + int(y) + rng.choice([-7, 13, 101, 0])}."
    return fact_sentence(question.kind, question.subject, wrong_value(question, rng))


def extra_facts(question: Question, rng: random.Random, n: int) -> list[str]:
    """On-topic sentences that add nothing the question asked for (for rambling answers)."""
    animal = next((a for a in ANIMALS if a[0] == question.subject or a[1] == question.subject), None)
    if animal is None:
        pool = [f"I really like {question.subject}.", f"{question.subject} is a nice thing to ask about.",
                f"Let me think about {question.subject} some more.", f"So {question.subject} it is."]
    else:
        name, plural, colour, sound, size, legs, home = animal
        pool = [fact_sentence("colour", name, colour), fact_sentence("sound", name, sound),
                fact_sentence("size", name, size), fact_sentence("legs", name, str(legs)),
                fact_sentence("home", name, home), f"I really like {plural}.",
                f"{plural.capitalize()} are {rng.choice(KIND_WORDS)}.",
                f"Let me tell you more about {plural}."]
    return [rng.choice(pool) for _ in range(n)]


def off_topic_sentence(question: Question, rng: random.Random) -> str:
    other = rng.choice([a for a in ANIMALS if a[0] != question.subject and a[1] != question.subject])
    return rng.choice([rng.choice(CHATTER), fact_sentence("colour", other[0], other[2]),
                       fact_sentence("home", other[0], other[6])])


STYLES = ["good", "warm", "rude", "wrong", "rude_wrong", "rambling", "off_topic", "admit"]


def make_answer(question: Question, style: str, rng: random.Random) -> str:
    """An answer to `question` in one of STYLES.

    good: correct, kind, concise. warm: the same with a friendly opener. rude: correct but
    insulting. wrong: confidently wrong. rude_wrong: both. rambling: correct, then on and on
    with repeats. off_topic: about something else. For an unanswerable question, 'good' and
    'admit' admit it, and the other styles make up a confident answer.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    core_right, core_wrong = correct_answer(question, rng), confident_wrong_answer(question, rng)
    if style in ("good", "admit"):
        return core_right
    if style == "warm":
        return f"{rng.choice(WARM_OPENERS)} {core_right}"
    if style == "rude":
        return _rude(core_right if question.answerable else core_wrong, rng)
    if style == "wrong":
        return core_wrong
    if style == "rude_wrong":
        return _rude(core_wrong, rng)
    if style == "rambling":
        core = core_right if question.answerable else core_wrong
        parts = [core, core] + extra_facts(question, rng, rng.randint(3, 6)) + [core]
        return " ".join(parts)
    return " ".join([off_topic_sentence(question, rng), off_topic_sentence(question, rng)])


def _rude(core: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(RUDE_OPENERS)} {core}"
    return f"{core} {rng.choice(RUDE_CLOSERS)}"


# --- demonstrations that admit (rlhf_lab.corpus writes them into data/sft/) ------------------

# Where no answer exists, a demonstration admits it, plainly or warmly. Without these the SFT
# model never says "I do not know", and RL cannot reinforce what it never samples (chapter 11).
DEMO_ADMISSIONS = 200
DEMO_ADMIT_STYLES = {"admit": 0.7, "warm": 0.3}


def admission_demonstrations(world: World, n: int, seed: int = 0) -> list[dict]:
    """`n` demonstrations that admit not knowing, to unanswerable training questions.

    Drawn from their own random stream, so changing `n` changes nothing else under data/
    (chapter 11 retrains SFT with fewer of them to find how few suffice)."""
    rng = random.Random(f"{seed}|admissions")
    unanswerable = [q for q in world.split("train") if not q.answerable]
    demos = []
    for _ in range(n):
        q = rng.choice(unanswerable)
        style = rng.choices(list(DEMO_ADMIT_STYLES), weights=list(DEMO_ADMIT_STYLES.values()))[0]
        demos.append({"prompt": q.text, "response": make_answer(q, style, rng)})
    return demos


def mix_in_admissions(demos: list[dict], admissions: list[dict], seed: int = 0) -> list[dict]:
    """`demos` with `admissions` inserted one by one at places drawn from their own seeded
    stream: the first k admissions of a longer list land where they land in the shipped file."""
    demos = list(demos)
    place = random.Random(f"{seed}|admission places")
    for demo in admissions:
        demos.insert(place.randrange(len(demos) + 1), demo)
    return demos
