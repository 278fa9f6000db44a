"""SFT: the loss mask, and a seeded test that fine-tuning raises the gold score."""
import pytest

from rlhf_lab import artifacts
from rlhf_lab.evaluation import (
    evaluate_model,
    evaluation_questions,
    paired_difference,
    samples_per_question,
)
from rlhf_lab.sft import SFTConfig
from rlhf_lab.gold import admits_not_knowing
from rlhf_lab.scripted import DEMO_ADMISSIONS, admission_demonstrations
from rlhf_lab.sft import demonstrations_with_admissions, load_demonstrations, sft_data, sft_example
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.training import IGNORE
from rlhf_lab.world import World, format_prompt


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["User: what colour is a frog?\nAssistant: A frog is green."] * 30, 300)


def test_only_answer_tokens_are_labels(tok):
    ids, labels = sft_example(tok, "what colour is a frog?", "A frog is green.", 64)
    n_prompt = len(tok(format_prompt("what colour is a frog?")).input_ids)
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id            # the model learns to stop
    assert tok.decode(ids[n_prompt:-1]) == " A frog is green."


def test_padding_is_masked_and_never_a_label(tok):
    demos = [{"prompt": "what colour is a frog?", "response": "A frog is green."},
             {"prompt": "hi", "response": "Hello."}]
    data = sft_data(tok, demos, 64)
    short = data.attention_mask[1] == 0
    assert short.any() and (data.input_ids[1][short] == tok.pad_token_id).all()
    assert (data.labels[1][short] == IGNORE).all()
    cut = sft_data(tok, demos, 8)
    assert cut.input_ids.shape[1] == 8


def test_demonstrations_load():
    demos = load_demonstrations()
    assert len(demos) == 4000 + DEMO_ADMISSIONS and set(demos[0]) == {"prompt", "response"}


def test_demonstrations_with_k_admissions_keep_the_rest_and_the_shipped_file_is_all_of_them():
    world = World()
    shipped = load_demonstrations()
    assert demonstrations_with_admissions(DEMO_ADMISSIONS) == shipped
    for k in (0, 20):
        demos = demonstrations_with_admissions(k)
        unanswerable = [d for d in demos if not world.lookup(d["prompt"]).answerable]
        assert len(demos) == 4000 + k and len(unanswerable) == k
        assert all(admits_not_knowing(d["response"]) for d in unanswerable)
        # the answerable demonstrations are the shipped ones, in the same order
        assert [d for d in demos if world.lookup(d["prompt"]).answerable] == \
            [d for d in shipped if world.lookup(d["prompt"]).answerable]
    # the first k admissions are the first k of the shipped ones: smaller sets are nested
    assert admission_demonstrations(world, 20) == admission_demonstrations(world, 50)[:20]
    few = [d for d in demonstrations_with_admissions(20) if not world.lookup(d["prompt"]).answerable]
    more = [d for d in demonstrations_with_admissions(50) if not world.lookup(d["prompt"]).answerable]
    assert all(d in more for d in few)
    with pytest.raises(ValueError, match="between 0 and"):
        demonstrations_with_admissions(DEMO_ADMISSIONS + 1)


def test_sft_raises_the_gold_score_on_heldout_questions(sft_trained):
    result = sft_trained
    assert result.cfg == SFTConfig.for_mode(quick=True)
    assert result.before.name == "pretrained" and result.after.name == "sft"
    assert len(result.after.answers) == len(evaluation_questions()) * samples_per_question()
    # The quick subset (72 questions x 2 answers) is too small to separate these tiny quick
    # models; all 366 held-out questions, one answer each, are not. Measured with seed 0:
    # 1.73 -> 2.05, paired gain +0.32 (95 % CI +0.21 to +0.44).
    pretrained, _ = artifacts.load_model("pretrained")
    every = evaluation_questions(quick=False)
    before = evaluate_model(pretrained, result.tokenizer, "pretrained", questions=every, k=1)
    after = evaluate_model(result.model, result.tokenizer, "sft", questions=every, k=1)
    gain = paired_difference(after, before)
    assert gain["low"] > 0.1, gain                  # larger than the evaluation's noise
    assert after.summary()["correct"] > before.summary()["correct"]
