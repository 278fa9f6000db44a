"""Answers already sampled are read back, exactly, and only when nothing they depend on changed."""
import copy
import json
import math

import pytest
import torch

from rlhf_lab import answer_cache, evaluation
from rlhf_lab.evaluation import SEEDS, evaluate_model, evaluate_with_reward, sample_answers
from rlhf_lab.world import World
from tiny_models import chat_models


@pytest.fixture
def cache_on(tmp_path, monkeypatch):
    """The cache switched on, in an artifacts folder of this test's own, counting samplings."""
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("RLHF_LAB_ANSWER_CACHE", "1")
    answer_cache.clear_memory()
    calls = []
    sample = evaluation._sample_answers

    def counted(*args, **kwargs):
        calls.append(args[3])                       # the seed
        return sample(*args, **kwargs)
    monkeypatch.setattr(evaluation, "_sample_answers", counted)
    yield calls
    answer_cache.clear_memory()


@pytest.fixture(scope="module")
def models():
    (policy, tokenizer), (reference, _) = chat_models().values()
    return policy, reference, tokenizer


QUESTIONS = World().split("heldout")[:6]


def same(a, b):
    """Equal answers and equal KL, NaN equal to NaN."""
    return a[0] == b[0] and all(x == y or (math.isnan(x) and math.isnan(y))
                                for x, y in zip(a[1], b[1], strict=True))


def test_model_digest_sees_every_weight_and_nothing_else(models, tmp_path):
    from transformers import GPT2LMHeadModel

    policy, reference, tokenizer = models
    twin = copy.deepcopy(policy).train()                 # training mode is not a weight
    policy.save_pretrained(tmp_path / "saved")
    assert answer_cache.model_digest(twin) == answer_cache.model_digest(policy)
    assert answer_cache.model_digest(GPT2LMHeadModel.from_pretrained(tmp_path / "saved")) \
        == answer_cache.model_digest(policy)
    assert answer_cache.model_digest(reference) != answer_cache.model_digest(policy)
    with torch.no_grad():
        twin.transformer.h[0].mlp.c_fc.weight[3, 5] += 1e-6
    assert answer_cache.model_digest(twin) != answer_cache.model_digest(policy)
    digest = answer_cache.tokenizer_digest(tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "right" if side == "left" else "left"    # sampling pads left
    assert answer_cache.tokenizer_digest(tokenizer) == digest
    tokenizer.padding_side = side


def test_the_same_request_is_sampled_once_and_read_back_exactly(models, cache_on):
    policy, reference, tokenizer = models
    first = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                           max_new_tokens=8)
    again = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                           max_new_tokens=8)
    answer_cache.clear_memory()                          # a new process: from the file
    from_disk = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                               max_new_tokens=8)
    assert cache_on == [SEEDS[0]]
    with answer_cache.disabled():
        fresh = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                               max_new_tokens=8)
    assert len(cache_on) == 2
    assert same(first, again) and same(first, from_disk) and same(first, fresh)
    assert any(kl != 0 for kl in first[1])               # two different models: a real KL
    first[0][0] = "changed by the caller"                # callers get copies
    assert sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                          max_new_tokens=8)[0] == fresh[0]


def test_anything_the_answers_depend_on_makes_a_new_entry(models, cache_on):
    policy, reference, tokenizer = models
    base = dict(reference=reference, max_new_tokens=8)
    sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], **base)
    sample_answers(policy, tokenizer, QUESTIONS, SEEDS[1], **base)                 # seed
    sample_answers(policy, tokenizer, QUESTIONS[:5], SEEDS[0], **base)             # questions
    sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                   max_new_tokens=6)                                               # length
    no_kl = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], max_new_tokens=8)
    changed = copy.deepcopy(policy)
    with torch.no_grad():
        changed.lm_head.weight[0, 0] += 1e-3
    sample_answers(changed, tokenizer, QUESTIONS, SEEDS[0], **base)                # weights
    assert len(cache_on) == 6
    assert all(math.isnan(kl) for kl in no_kl[1])       # no reference: NaN, stored as NaN
    answer_cache.clear_memory()
    assert same(sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], max_new_tokens=8), no_kl)
    assert len(cache_on) == 6


def test_an_unreadable_entry_is_sampled_again_and_rewritten(models, cache_on, tmp_path):
    policy, reference, tokenizer = models
    first = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                           max_new_tokens=8)
    (path,) = tmp_path.rglob(f"{answer_cache.FOLDER}/*.json")
    for broken in ('{"answers": ["half a', json.dumps({"answers": first[0][:2], "kl": [0, 0]})):
        path.write_text(broken)
        answer_cache.clear_memory()
        assert same(sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], reference=reference,
                                   max_new_tokens=8), first)
        assert json.loads(path.read_text())["answers"] == first[0]
    assert len(cache_on) == 3


def test_switched_off_by_the_environment(models, cache_on, monkeypatch):
    policy, _, tokenizer = models
    monkeypatch.setenv("RLHF_LAB_ANSWER_CACHE", "0")
    for _ in range(2):
        sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], max_new_tokens=8)
    assert len(cache_on) == 2


def test_an_evaluation_after_a_curve_point_reuses_its_answers(models, cache_on, monkeypatch):
    """An RL run's last held-out point is the first seed of the evaluation that follows it."""
    from rlhf_lab import reward_model

    policy, reference, tokenizer = models
    monkeypatch.setattr(reward_model, "score_answers",              # no reward model needed
                        lambda model, tok, questions, answers: torch.zeros(len(answers)))
    point = evaluate_with_reward(policy, tokenizer, None, None, reference, QUESTIONS, SEEDS[0],
                                 max_new_tokens=8)
    ev = evaluate_model(policy, tokenizer, "p", reference=reference, questions=QUESTIONS, k=2,
                        max_new_tokens=8, progress=False)
    assert cache_on == [SEEDS[0], SEEDS[1]]
    first = ev.answers[ev.answers["sample"] == 0]
    assert first["answer"].tolist() == point["answer"].tolist()
    assert first["kl"].tolist() == point["kl"].tolist()


def test_a_folder_that_cannot_be_written_costs_the_saving_not_the_answers(models, cache_on,
                                                                          tmp_path):
    policy, _, tokenizer = models
    (tmp_path / "full").write_text("a file where the mode's folder should be")
    (tmp_path / "quick").write_text("a file where the mode's folder should be")
    with pytest.warns(UserWarning, match="Could not keep sampled answers"):
        first = sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], max_new_tokens=8)
    with answer_cache.disabled():
        assert same(sample_answers(policy, tokenizer, QUESTIONS, SEEDS[0], max_new_tokens=8),
                    first)
