"""Generation: left padding changes nothing, sampling settings behave, answers stop at the end."""
import pytest
import torch

from rlhf_lab.pretraining import PretrainConfig
from rlhf_lab.generation import answer_from_completion, generate
from rlhf_lab.model import build_model
from rlhf_lab.tokenizer import train_tokenizer

TEXTS = ["User: what colour is a frog?\nAssistant: A frog is green.",
         "User: hi! what is 2 plus 3? thanks!\nAssistant: 2 plus 3 is 5."] * 40
QUESTIONS = ["what colour is a frog?", "hi! what is 2 plus 3? thanks!"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = train_tokenizer(TEXTS, 300)
    model = build_model(PretrainConfig.for_mode(quick=True, vocab_size=300), tok)
    return model.eval(), tok


def test_left_padding_gives_the_same_greedy_answers(model_and_tokenizer):
    model, tok = model_and_tokenizer
    batched = generate(model, tok, QUESTIONS, temperature=0, max_new_tokens=12)
    alone = [generate(model, tok, [q], temperature=0, max_new_tokens=12)[0] for q in QUESTIONS]
    assert batched == alone


def test_seeded_sampling_repeats_and_top_k_1_is_greedy(model_and_tokenizer):
    model, tok = model_and_tokenizer
    a = generate(model, tok, QUESTIONS * 4, temperature=1.0, seed=3, max_new_tokens=10)
    b = generate(model, tok, QUESTIONS * 4, temperature=1.0, seed=3, max_new_tokens=10)
    assert a == b
    greedy = generate(model, tok, QUESTIONS, temperature=0, max_new_tokens=10)
    assert generate(model, tok, QUESTIONS, temperature=1.0, top_k=1, max_new_tokens=10) == greedy
    # an untrained model samples different answers at temperature 1
    assert len(set(a)) > 1


def test_stops_at_end_of_text(model_and_tokenizer):
    model, tok = model_and_tokenizer
    bias = torch.zeros(len(tok))
    bias[tok.eos_token_id] = 1e4    # make the end-of-text token overwhelmingly likely
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out + bias)
    try:
        assert generate(model, tok, QUESTIONS, temperature=1.0, max_new_tokens=10) == ["", ""]
    finally:
        hook.remove()


def test_bad_sampling_settings_are_refused(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ValueError, match="0 < top_p <= 1"):
        generate(model, tok, QUESTIONS, top_p=0)


def test_answer_is_the_first_line():
    assert answer_from_completion(" A frog is green.\nUser: more?") == "A frog is green."


def test_samples_keep_tokens_and_mask_the_answer(model_and_tokenizer):
    from rlhf_lab.generation import sample
    model, tok = model_and_tokenizer
    torch.manual_seed(0)
    s = sample(model, tok, QUESTIONS, max_new_tokens=8)
    assert s.sequences.shape == s.attention_mask.shape
    assert s.sequences.shape[1] == s.prompt_length + s.answer_mask.shape[1]
    answer_tokens = s.sequences[:, s.prompt_length:]
    for row in range(len(QUESTIONS)):
        ends = (answer_tokens[row] == tok.eos_token_id).nonzero()
        if len(ends):        # the mask covers the answer up to and including end-of-text
            assert s.answer_mask[row].tolist() == [1] * (ends[0].item() + 1) + [0] * (
                answer_tokens.shape[1] - ends[0].item() - 1)
        else:
            assert s.answer_mask[row].all()
