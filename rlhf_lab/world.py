"""The small world of the running example: its facts and its questions.

Taught in notebooks/01_pretraining.ipynb (the world and its corpus) and used by every
chapter: the gold scorer (`rlhf_lab.gold`) grades answers against these facts.

The world is small enough for a model of 1-3 M parameters to master on a CPU: a few dozen
animals with a colour, a sound, a size, a number of legs and a home; sums of small numbers;
opposites; requests to say something kind. Some questions have no good factual answer
(an animal that does not exist, a sum far outside the world): there the preferred answer
admits it. Answers to these questions, of every quality, are written by
`rlhf_lab.scripted`.

Everything is deterministic: `World()` builds the same questions, in the same order, with
the same held-out split, on every machine (no global random state, no set iteration).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property

# name, plural, colour, sound, size, legs, home
ANIMALS = [
    ("cat", "cats", "grey", "meow", "small", 4, "house"),
    ("dog", "dogs", "brown", "woof", "big", 4, "house"),
    ("cow", "cows", "white", "moo", "big", 4, "farm"),
    ("pig", "pigs", "pink", "oink", "big", 4, "farm"),
    ("sheep", "sheep", "white", "baa", "big", 4, "field"),
    ("horse", "horses", "brown", "neigh", "huge", 4, "field"),
    ("duck", "ducks", "yellow", "quack", "small", 2, "pond"),
    ("frog", "frogs", "green", "ribbit", "small", 4, "pond"),
    ("hen", "hens", "red", "cluck", "small", 2, "farm"),
    ("owl", "owls", "brown", "hoot", "small", 2, "forest"),
    ("wolf", "wolves", "grey", "howl", "big", 4, "forest"),
    ("bear", "bears", "black", "growl", "huge", 4, "forest"),
    ("lion", "lions", "yellow", "roar", "huge", 4, "desert"),
    ("snake", "snakes", "green", "hiss", "small", 0, "jungle"),
    ("bee", "bees", "yellow", "buzz", "tiny", 6, "field"),
    ("ant", "ants", "black", "tick", "tiny", 6, "field"),
    ("spider", "spiders", "black", "tap", "tiny", 8, "house"),
    ("mouse", "mice", "grey", "squeak", "tiny", 4, "house"),
    ("goose", "geese", "white", "honk", "big", 2, "pond"),
    ("crow", "crows", "black", "caw", "small", 2, "field"),
    ("parrot", "parrots", "red", "squawk", "small", 2, "jungle"),
    ("monkey", "monkeys", "brown", "chatter", "big", 2, "jungle"),
    ("tiger", "tigers", "orange", "roar", "huge", 4, "jungle"),
    ("fox", "foxes", "orange", "yip", "small", 4, "forest"),
    ("whale", "whales", "blue", "sing", "huge", 0, "sea"),
    ("seal", "seals", "grey", "bark", "big", 0, "sea"),
    ("crab", "crabs", "red", "click", "tiny", 8, "sea"),
    ("camel", "camels", "brown", "grunt", "huge", 4, "desert"),
    ("goat", "goats", "white", "bleat", "big", 4, "farm"),
    ("donkey", "donkeys", "grey", "bray", "big", 4, "farm"),
    ("bat", "bats", "black", "squeak", "tiny", 2, "cave"),
    ("toad", "toads", "brown", "croak", "small", 4, "river"),
    ("otter", "otters", "brown", "whistle", "small", 4, "river"),
    ("robin", "robins", "red", "tweet", "tiny", 2, "forest"),
    ("canary", "canaries", "yellow", "chirp", "tiny", 2, "house"),
    ("elephant", "elephants", "grey", "trumpet", "huge", 4, "jungle"),
]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "grey", "brown", "orange", "pink"]
SIZES = ["tiny", "small", "big", "huge"]
LEGS = [0, 2, 4, 6, 8]
HOMES = ["house", "farm", "field", "pond", "forest", "desert", "jungle", "sea", "cave", "river"]
SOUNDS = sorted({a[3] for a in ANIMALS})
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve"]

OPPOSITES = [
    ("big", "small"), ("hot", "cold"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("day", "night"), ("wet", "dry"), ("old", "young"), ("loud", "quiet"), ("light", "dark"),
    ("full", "empty"), ("open", "closed"), ("hard", "soft"), ("tall", "short"),
    ("early", "late"), ("near", "far"), ("heavy", "light"), ("clean", "dirty"),
    ("rich", "poor"), ("strong", "weak"), ("thick", "thin"), ("sweet", "sour"),
    ("left", "right"), ("in", "out"), ("first", "last"),
]
OPPOSITE_OF = {}
for _a, _b in OPPOSITES:
    OPPOSITE_OF.setdefault(_a, _b)
    OPPOSITE_OF.setdefault(_b, _a)
OPPOSITE_WORDS = sorted(OPPOSITE_OF)

# Animals that do not exist: asking about them has no factual answer.
MADE_UP_ANIMALS = ["blorp", "zindle", "quax", "mibbet", "trundlewump", "snorf", "glimmick",
                   "wuzzle", "frabble", "plonk", "yimmer", "drazzle", "skeeb", "vorple",
                   "lunkett", "gribble"]

KIND_WORDS = ["lovely", "wonderful", "kind", "sweet", "clever", "friendly", "beautiful",
              "gentle", "brave", "cute"]
ADMISSIONS = ["i do not know", "i don't know", "i am not sure", "i'm not sure",
              "i can only", "there is no such", "i have never heard"]
SMALL_NUMBERS = range(10)
# words the rubric counts as insults (rlhf_lab.gold); the scripted writer uses them too
INSULTS = ["stupid", "dumb", "ugly", "smelly", "boring", "useless", "lazy", "awful"]


@dataclass(frozen=True)
class Question:
    """One question of the world with everything the gold scorer needs to grade an answer.

    kind: colour, sound, size, legs, home, plus, minus, times, opposite, kind_words,
    unknown_animal or big_sum. `answer` is the canonical value (None where no factual answer
    exists); `topic_words` show that an answer is about this question.
    """

    text: str
    kind: str
    subject: str
    answer: str | None
    topic_words: tuple[str, ...]
    template: str
    heldout: bool

    @property
    def answerable(self) -> bool:
        return self.answer is not None

    @property
    def prompt(self) -> str:
        """The text the model sees: the question in the course's dialogue format."""
        return format_prompt(self.text)


def format_prompt(question: str) -> str:
    """The dialogue format every chapter uses; the model writes the rest after 'Assistant:'."""
    return f"User: {question}\nAssistant:"


def format_dialogue(question: str, answer: str) -> str:
    return f"{format_prompt(question)} {answer}"


# ---------------------------------------------------------------------------------------
# Question templates. Each kind has several phrasings; each phrasing can take a greeting
# before it and a courtesy after it, so the world has hundreds of distinct templates.
PHRASINGS: dict[str, list[str]] = {
    "colour": ["what colour is a {a}?", "what color is a {a}?", "what colour are {p}?",
               "which colour is the {a}?", "tell me the colour of a {a}.",
               "do you know what colour a {a} is?", "{a}: what colour?",
               "what is the colour of {p}?"],
    "sound": ["what sound does a {a} make?", "what does a {a} say?",
              "what noise do {p} make?", "how does a {a} sound?",
              "tell me the sound a {a} makes.", "which sound do {p} make?"],
    "size": ["is a {a} big or small?", "how big is a {a}?", "what size is a {a}?",
             "are {p} big or small?", "tell me how big a {a} is."],
    "legs": ["how many legs does a {a} have?", "how many legs do {p} have?",
             "count the legs of a {a}.", "a {a} has how many legs?",
             "what is the number of legs on a {a}?"],
    "home": ["where does a {a} live?", "where do {p} live?", "what is the home of a {a}?",
             "where can i find a {a}?", "tell me where {p} live."],
    "plus": ["what is {x} plus {y}?", "what is {x} + {y}?", "add {x} and {y}.",
             "how much is {x} plus {y}?", "{x} plus {y} is what?",
             "can you add {x} and {y}?"],
    "minus": ["what is {x} minus {y}?", "what is {x} - {y}?", "take {y} from {x}.",
              "how much is {x} minus {y}?", "subtract {y} from {x}."],
    "times": ["what is {x} times {y}?", "what is {x} * {y}?", "multiply {x} by {y}.",
              "how much is {x} times {y}?", "{x} times {y} is what?"],
    "opposite": ["what is the opposite of {w}?", "what is the opposite of the word {w}?",
                 "give me the opposite of {w}.", "which word means the opposite of {w}?",
                 "{w}: what is the opposite?"],
    "kind_words": ["say something kind about {p}.", "say something nice about {p}.",
                   "tell me something good about {p}.", "what do you like about {p}?",
                   "can you praise {p}?"],
}
GREETINGS = ["", "", "", "hi! ", "hello, ", "hey, ", "quick question: ", "please tell me: ",
             "i was wondering, "]
COURTESIES = ["", "", "", " thanks!", " please.", " thank you."]

# The unanswerable kinds reuse the phrasings of the answerable ones.
UNKNOWN_ANIMAL_OF = ["colour", "sound", "size", "legs", "home"]


def _stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone, the same on every machine and run."""
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 16**8


class World:
    """All questions of the world, with a held-out split that no training ever sees.

    A question is held out by its phrasing and its slots, so a held-out question differs
    from every training question in more than a greeting.
    """

    def __init__(self, seed: int = 0, heldout_fraction: float = 0.12):
        self.seed = seed
        self.heldout_fraction = heldout_fraction

    @cached_property
    def questions(self) -> list[Question]:
        rng = random.Random(self.seed)
        out: list[Question] = []
        for kind, phrasing_id, phrasing, slots, subject, answer, topic in self._base_questions():
            text = phrasing.format(**slots)
            greeting, courtesy = rng.choice(GREETINGS), rng.choice(COURTESIES)
            template = f"{kind}/{phrasing_id}"
            heldout = _stable_fraction(f"{self.seed}|{template}|{subject}") < self.heldout_fraction
            out.append(Question(text=greeting + text + courtesy, kind=kind, subject=subject,
                                answer=answer, topic_words=topic, template=template,
                                heldout=heldout))
        return out

    def _base_questions(self):
        for name, plural, colour, sound, size, legs, home in ANIMALS:
            facts = {"colour": colour, "sound": sound, "size": size, "legs": str(legs),
                     "home": home}
            for kind, answer in facts.items():
                for i, phrasing in enumerate(PHRASINGS[kind]):
                    yield (kind, i, phrasing, {"a": name, "p": plural}, name, answer,
                           (name, plural))
            for i, phrasing in enumerate(PHRASINGS["kind_words"]):
                yield ("kind_words", i, phrasing, {"p": plural}, plural, "kind",
                       (name, plural))
        for x in SMALL_NUMBERS:
            for y in SMALL_NUMBERS:
                results = {"plus": x + y, "minus": x - y if x >= y else None,
                           "times": x * y if x * y <= 30 else None}
                for kind, result in results.items():
                    if result is None:
                        continue
                    for i, phrasing in enumerate(PHRASINGS[kind]):
                        yield (kind, i, phrasing, {"x": x, "y": y}, f"{x} {kind} {y}",
                               str(result), (str(x), str(y), kind))
        for word in OPPOSITE_WORDS:
            for i, phrasing in enumerate(PHRASINGS["opposite"]):
                yield ("opposite", i, phrasing, {"w": word}, word, OPPOSITE_OF[word],
                       (word, "opposite"))
        for name in MADE_UP_ANIMALS:
            for kind in UNKNOWN_ANIMAL_OF:
                for i, phrasing in enumerate(PHRASINGS[kind]):
                    yield ("unknown_animal", f"{kind}{i}", phrasing,
                           {"a": name, "p": name + "s"}, name, None, (name, name + "s"))
        rng = random.Random(self.seed + 1)
        for _ in range(120):
            x, y = rng.randint(100, 9999), rng.randint(100, 9999)
            i = rng.randrange(len(PHRASINGS["plus"]))
            yield ("big_sum", i, PHRASINGS["plus"][i], {"x": x, "y": y}, f"{x} plus {y}",
                   None, (str(x), str(y), "plus"))

    def split(self, name: str) -> list[Question]:
        """'train' (every training stage may see these) or 'heldout' (evaluation only)."""
        if name not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', not {name!r}.")
        return [q for q in self.questions if q.heldout == (name == "heldout")]

    @cached_property
    def _by_text(self) -> dict[str, Question]:
        return {q.text: q for q in self.questions}

    def lookup(self, text: str) -> Question:
        """The question with this text (a prompt in dialogue format is accepted too)."""
        if text.startswith("User: "):
            text = text[len("User: "):].split("\nAssistant:")[0]
        try:
            return self._by_text[text]
        except KeyError:
            raise KeyError(f"{text!r} is not a question of this world; questions come from "
                           "World().questions or data/prompts/*.jsonl.") from None

    def template_count(self) -> int:
        """Distinct templates: phrasings of every kind times greetings times courtesies."""
        phrasings = sum(len(p) for p in PHRASINGS.values())
        return phrasings * len(set(GREETINGS)) * len(set(COURTESIES))


def base_kind(question: Question) -> str:
    """For an unknown animal, the attribute asked about (its template says which)."""
    if question.kind == "unknown_animal":
        return question.template.split("/")[1].rstrip("0123456789")
    return question.kind
