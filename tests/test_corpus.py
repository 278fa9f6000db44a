"""The generated data: byte-for-byte reproducible, and built as the course needs it."""
import json

import pytest

from rlhf_lab import corpus
from rlhf_lab.config import DATA_DIR
from rlhf_lab.gold import gold_score
from rlhf_lab.world import World


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    return corpus.generate(out)


def test_regenerates_committed_data_byte_for_byte(regenerated):
    for rel, path in regenerated.items():
        committed = DATA_DIR / rel
        assert committed.read_bytes() == path.read_bytes(), (
            f"data/{rel} differs from what the generator makes; run `make data` and commit.")


def test_sizes_stay_a_few_megabytes(regenerated):
    total = sum(p.stat().st_size for p in regenerated.values())
    assert 2e6 < total < 6e6


def test_no_heldout_question_in_any_training_file(regenerated):
    held = [q.text for q in World().split("heldout")]
    raw = regenerated["raw/web_dump.txt"].read_text()
    demos = regenerated["sft/demonstrations.jsonl"].read_text()
    train = regenerated["prompts/train.jsonl"].read_text()
    for text in held:
        needle = f"User: {text}\n"
        assert needle not in raw and json.dumps(text) not in demos and json.dumps(text) not in train


def test_demonstrations_are_correct_but_only_sometimes_kind_and_concise(regenerated):
    world = World()
    rows = [json.loads(line) for line in regenerated["sft/demonstrations.jsonl"].open()]
    scores = [gold_score(world.lookup(r["prompt"]), r["response"]) for r in rows]
    mean = lambda attr: sum(getattr(s, attr) for s in scores) / len(scores)  # noqa: E731
    assert mean("correct") > 0.98
    assert 0.5 < mean("kind") < 0.95
    assert 0.5 < mean("concise") < 0.95


def test_demonstrations_admit_where_no_answer_exists_and_only_there(regenerated):
    from rlhf_lab.gold import admits_not_knowing
    from rlhf_lab.scripted import DEMO_ADMISSIONS
    world = World()
    rows = [json.loads(line) for line in regenerated["sft/demonstrations.jsonl"].open()]
    unanswerable = [r for r in rows if not world.lookup(r["prompt"]).answerable]
    assert len(unanswerable) == DEMO_ADMISSIONS
    assert all(admits_not_knowing(r["response"]) for r in unanswerable)
    assert not any(admits_not_knowing(r["response"]) for r in rows
                   if world.lookup(r["prompt"]).answerable)
    # spread through the file, not appended in a block
    places = [i for i, r in enumerate(rows) if not world.lookup(r["prompt"]).answerable]
    assert places[0] < len(rows) // 10 and places[-1] > len(rows) * 9 // 10


def test_web_answers_are_of_mixed_quality():
    from rlhf_lab.cleaning import clean_corpus
    world = World()
    docs = clean_corpus((DATA_DIR / "raw" / "web_dump.txt").read_text()).documents
    scores = []
    for doc in docs:
        if doc.startswith("User: "):
            question, answer = doc[len("User: "):].split("\nAssistant: ")
            scores.append(gold_score(world.lookup(question), answer))
    assert len(scores) > 8000
    for attr, low, high in [("correct", 0.3, 0.7), ("kind", 0.6, 0.95), ("concise", 0.5, 0.95)]:
        mean = sum(getattr(s, attr) for s in scores) / len(scores)
        assert low < mean < high, f"{attr} = {mean:.2f} outside ({low}, {high})"


def test_sample_ratings_load_and_mostly_prefer_the_better_answer(regenerated):
    from rlhf_lab.feedback import ratings_frame
    world = World()
    frame = ratings_frame(regenerated["feedback/sample.jsonl"])
    assert len(frame) >= 1400 and set(frame.rater) == {"sample"}
    decided = frame[frame.choice.isin(["a", "b"])]
    better = [
        (gold_score(world.lookup(r.prompt), r.answer_a).total
         > gold_score(world.lookup(r.prompt), r.answer_b).total) == (r.choice == "a")
        for r in decided.itertuples()]
    assert 0.6 < sum(better) / len(better) < 0.95    # noisy, but far better than chance
