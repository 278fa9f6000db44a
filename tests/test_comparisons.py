"""Comparison pairs from several policies and temperatures."""
import pytest

from rlhf_lab.pretraining import PretrainConfig
from rlhf_lab.model import build_model
from rlhf_lab.comparisons import load_comparisons, sample_comparisons, save_comparisons
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World


@pytest.fixture(scope="module")
def policies():
    tok = train_tokenizer(["User: what colour is a frog?\nAssistant: A frog is green."] * 30, 300)
    cfg = PretrainConfig.for_mode(quick=True, vocab_size=300)
    return {"one": (build_model(cfg, tok), tok),
            "two": (build_model(PretrainConfig.for_mode(quick=True, vocab_size=300, seed=1), tok), tok)}


def test_pairs_mix_policies_and_temperatures(policies):
    questions = World().split("train")[:50]
    pairs = sample_comparisons(policies, questions, 40, seed=0)
    assert 30 <= len(pairs) <= 40
    assert all(p["answer_a"] != p["answer_b"] for p in pairs)
    sources = {p["model"] for p in pairs} | {p["model_b"] for p in pairs}
    assert {s.split("@")[0] for s in sources} == {"one", "two"}
    assert len({s.split("@")[1] for s in sources}) == 3
    assert {p["prompt"] for p in pairs} <= {q.text for q in questions}
    assert sample_comparisons(policies, questions, 40, seed=0) == pairs      # seeded


def test_pairs_round_trip_as_artifact(policies, monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    pairs = sample_comparisons(policies, World().split("train")[:10], 8, seed=1)
    save_comparisons(pairs)
    assert load_comparisons() == pairs
