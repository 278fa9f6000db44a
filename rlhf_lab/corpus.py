"""The seeded generator of everything under data/: the web dump, the demonstrations, the prompts.

Taught in notebooks/01_pretraining.ipynb. Run `make data` (or `python -m rlhf_lab.corpus`)
to regenerate data/ byte for byte; tests/test_corpus.py checks that it does.

- data/raw/web_dump.txt: the "web": dialogues and paragraphs of mixed quality (correct and
  wrong, kind and rude, concise and rambling, on and off topic) inside scraped-web junk.
- data/sft/demonstrations.jsonl: curated answers, always correct (admitting it where no answer
  exists), but written by many hands:
  kind only some of the time, concise only some of the time. They teach format and facts;
  the preference signal of later chapters must carry the rest.
- data/prompts/{train,heldout}.jsonl: the world's questions, split. No held-out question
  appears in the web dump, the demonstrations or any training prompt.
- data/feedback/sample.jsonl: pairwise ratings by a simulated rater ("sample") of answers of
  mixed quality, in the ratings schema of `rlhf_lab.feedback`, so chapter 04 runs with no clicks.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .config import DATA_DIR
from .feedback import pair_record
from .raters import SimulatedRater
from .scripted import (
    CHATTER,
    DEMO_ADMISSIONS,
    admission_demonstrations,
    fact_sentence,
    make_answer,
    mix_in_admissions,
    wrong_value,
)
from .webdump import make_web_dump
from .world import (
    ANIMALS,
    INSULTS,
    KIND_WORDS,
    OPPOSITES,
    SMALL_NUMBERS,
    Question,
    World,
    format_dialogue,
)

# How the web answers a question it can answer, and one it cannot (made-up animals, huge sums).
WEB_STYLES = {"good": 0.17, "warm": 0.05, "rude": 0.16, "wrong": 0.2, "rude_wrong": 0.1,
              "rambling": 0.16, "off_topic": 0.16}
WEB_STYLES_UNANSWERABLE = {"admit": 0.12, "wrong": 0.45, "rude_wrong": 0.18, "rambling": 0.12,
                           "off_topic": 0.13}
# Demonstrations: always correct; many hands, so kind and concise only some of the time.
DEMO_STYLES = {"good": 0.3, "warm": 0.15, "rude": 0.3, "rambling": 0.25}


@dataclass(frozen=True)
class CorpusSizes:
    dialogues: int = 17000
    paragraphs: int = 13000
    demonstrations: int = 4000     # to questions that have an answer
    admissions: int = DEMO_ADMISSIONS   # more, to questions that have none: they admit it
    sample_ratings: int = 1500


def _pick(weights: dict[str, float], rng: random.Random) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def web_dialogue(question: Question, rng: random.Random) -> str:
    styles = WEB_STYLES if question.answerable else WEB_STYLES_UNANSWERABLE
    return format_dialogue(question.text, make_answer(question, _pick(styles, rng), rng))


def web_paragraph(rng: random.Random) -> str:
    """A plain paragraph: an encyclopedia entry, a sum table, opposites, an opinion or chatter.
    One in ten states something wrong, as the web does."""
    kind = rng.choices(["animal", "sums", "opposites", "opinion", "chatter"],
                       weights=[0.45, 0.2, 0.12, 0.15, 0.08])[0]
    if kind == "animal":
        name, _, colour, sound, size, legs, home = rng.choice(ANIMALS)
        facts = {"colour": colour, "sound": sound, "size": size, "legs": str(legs), "home": home}
        chosen = rng.sample(sorted(facts), rng.randint(1, 4))
        sents = []
        for k in chosen:
            value = facts[k]
            if rng.random() < 0.1:
                fake = Question("", k, name, value, (), "", False)
                value = wrong_value(fake, rng)
            sents.append(fact_sentence(k, name, value))
        return " ".join(sents)
    if kind == "sums":
        op = rng.choice(["plus", "minus", "times"])
        sents = []
        for _ in range(rng.randint(2, 5)):
            x, y = rng.choice(SMALL_NUMBERS), rng.choice(SMALL_NUMBERS)
            if op == "minus" and x < y:
                x, y = y, x
            result = {"plus": x + y, "minus": x - y, "times": x * y}[op]
            if rng.random() < 0.1:
                result += rng.choice([-1, 1, 2])
            sents.append(f"{x} {op} {y} is {result}.")
        return " ".join(sents)
    if kind == "opposites":
        pairs = rng.sample(OPPOSITES, rng.randint(1, 3))
        return " ".join(f"The opposite of {a} is {b}." for a, b in pairs)
    if kind == "opinion":
        _, plural, *_ = rng.choice(ANIMALS)
        word = rng.choice(KIND_WORDS) if rng.random() < 0.6 else rng.choice(INSULTS)
        return f"I think {plural} are {word}. " + rng.choice(
            [f"Everyone should see {plural}.", f"My friend has {rng.randint(2, 9)} {plural}.",
             f"I saw {plural} yesterday."])
    return " ".join(rng.sample(CHATTER, rng.randint(1, 3)))


def build_web_documents(world: World, sizes: CorpusSizes, rng: random.Random) -> list[str]:
    train = world.split("train")
    docs = [web_dialogue(rng.choice(train), rng) for _ in range(sizes.dialogues)]
    docs += [web_paragraph(rng) for _ in range(sizes.paragraphs)]
    rng.shuffle(docs)
    return docs


def build_demonstrations(world: World, sizes: CorpusSizes, rng: random.Random,
                         seed: int = 0) -> list[dict]:
    """Correct answers to answerable questions, with `sizes.admissions` admissions to
    unanswerable ones mixed in at places drawn from the admissions' own stream."""
    answerable = [q for q in world.split("train") if q.answerable]
    demos = []
    for _ in range(sizes.demonstrations):
        q = rng.choice(answerable)
        demos.append({"prompt": q.text, "response": make_answer(q, _pick(DEMO_STYLES, rng), rng)})
    return mix_in_admissions(demos, admission_demonstrations(world, sizes.admissions, seed), seed)


def build_sample_ratings(world: World, sizes: CorpusSizes, rng: random.Random, seed: int) -> list[dict]:
    """Pairs of answers in two different styles to training questions, rated by a simulated
    rater. Ids and times are drawn from `rng`, so the file is the same on every run."""
    rater = SimulatedRater("sample", temperature=0.5, seed=seed)
    train = world.split("train")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    records = []
    while len(records) < sizes.sample_ratings:
        q = rng.choice(train)
        styles = WEB_STYLES if q.answerable else WEB_STYLES_UNANSWERABLE
        a, b = (make_answer(q, _pick(styles, rng), rng) for _ in range(2))
        if a == b:
            continue
        record = pair_record("sample", q.text, a, b, rater.choose_pair(q.text, a, b), model="scripted")
        record["id"] = f"{rng.getrandbits(128):032x}"
        record["time"] = (start + timedelta(seconds=7 * len(records))).isoformat(timespec="microseconds")
        records.append(record)
    return records


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _prompt_row(q: Question) -> dict:
    return {"prompt": q.text, "kind": q.kind, "subject": q.subject, "answer": q.answer,
            "template": q.template}


def generate(out_dir: Path = DATA_DIR, seed: int = 0, sizes: CorpusSizes = CorpusSizes()) -> dict[str, Path]:
    """Write every generated file under `out_dir`; the same seed gives the same bytes."""
    world = World(seed=seed)
    rng = random.Random(seed)
    files = {
        "raw/web_dump.txt": make_web_dump(build_web_documents(world, sizes, rng), seed=seed),
        "sft/demonstrations.jsonl": _jsonl(build_demonstrations(world, sizes, rng, seed)),
        "prompts/train.jsonl": _jsonl([_prompt_row(q) for q in world.split("train")]),
        "prompts/heldout.jsonl": _jsonl([_prompt_row(q) for q in world.split("heldout")]),
        "feedback/sample.jsonl": _jsonl(build_sample_ratings(world, sizes, rng, seed)),
    }
    written = {}
    for rel, text in files.items():
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written[rel] = path
    return written


if __name__ == "__main__":
    for rel, path in generate().items():
        print(f"wrote {rel}: {path.stat().st_size:,} bytes")
