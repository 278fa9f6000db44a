"""KTO and the thumbs reward loss (kto.py) against hand-computed values and against the
paper's equations written out one answer at a time."""
import math

import pytest
import torch

from rlhf_lab.kto import kto_loss, kto_reference_point, kto_weights, thumbs_reward_loss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_the_reference_point_is_the_clamped_mean_without_gradient():
    logratios = torch.tensor([0.5, -0.1, 0.2], requires_grad=True)
    z0 = kto_reference_point(logratios)
    assert z0.item() == pytest.approx(0.2) and not z0.requires_grad
    assert kto_reference_point(torch.tensor([-1.0, -0.5])).item() == 0.0   # KL is never < 0


def test_kto_loss_against_hand_values():
    # beta 0.5, z0 0.2: up with r = 1.0 -> value sigmoid(0.4); down with r = -0.6 -> sigmoid(0.4)
    loss, values = kto_loss(torch.tensor([1.0, -0.6]), torch.tensor([True, False]),
                            torch.tensor(0.2), beta=0.5)
    assert values.tolist() == pytest.approx([sigmoid(0.4), sigmoid(0.4)])
    assert loss.item() == pytest.approx(1 - sigmoid(0.4))


def test_kto_loss_matches_the_papers_objective_answer_by_answer():
    generator = torch.Generator().manual_seed(0)
    logratios = torch.randn(6, generator=generator)
    up = torch.tensor([True, False, True, True, False, False])
    z0, beta, lam_d, lam_u = torch.tensor(0.3), 0.1, 1.2, 0.8
    loss, _ = kto_loss(logratios, up, z0, beta, lam_d, lam_u)
    expected = 0.0
    for r, u in zip(logratios.tolist(), up.tolist()):
        if u:
            expected += lam_d - lam_d * sigmoid(beta * (r - 0.3))
        else:
            expected += lam_u - lam_u * sigmoid(beta * (0.3 - r))
    assert loss.item() == pytest.approx(expected / 6, rel=1e-6)
    # TRL's form: lambda * (1 - sigmoid(...)) is the same number
    trl = torch.where(up, lam_d * (1 - torch.sigmoid(beta * (logratios - z0))),
                      lam_u * (1 - torch.sigmoid(beta * (z0 - logratios)))).mean()
    assert torch.allclose(loss, trl)


def test_gradients_raise_thumbs_up_and_lower_thumbs_down():
    logratios = torch.zeros(2, requires_grad=True)
    loss, _ = kto_loss(logratios, torch.tensor([True, False]), torch.tensor(0.0), beta=1.0)
    loss.backward()
    # d/dr of (1 - sigmoid(r)) / 2 at 0 is -1/8; of (1 - sigmoid(-r)) / 2 is +1/8
    assert logratios.grad.tolist() == pytest.approx([-0.125, 0.125])


def test_weights_balance_unequal_thumbs_and_bad_input_names_the_fix():
    lam_d, lam_u = kto_weights(n_up=300, n_down=100)
    assert (lam_d * 300) / (lam_u * 100) == pytest.approx(1.0)
    assert kto_weights(100, 100, ratio=4 / 3) == pytest.approx((4 / 3, 1.0))
    with pytest.raises(ValueError, match="at least one thumb up and one down"):
        kto_weights(5, 0)
    with pytest.raises(ValueError, match=r"\[1, 4/3\]"):
        kto_weights(5, 5, ratio=2.0)
    with pytest.raises(ValueError, match="beta = 0"):
        kto_loss(torch.zeros(1), torch.tensor([True]), torch.tensor(0.0), beta=0.0)


def test_thumbs_reward_loss_is_the_binary_likelihood_of_the_reward():
    rewards = torch.tensor([2.0, -1.0, 0.0])
    up = torch.tensor([True, False, False])
    # -(log sigmoid(2) + log sigmoid(1) + log sigmoid(0)) / 3
    expected = -(math.log(sigmoid(2.0)) + math.log(sigmoid(1.0)) + math.log(0.5)) / 3
    assert thumbs_reward_loss(rewards, up).item() == pytest.approx(expected)


# --- the training loop, on a tiny model ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    """An untrained one-layer GPT-2 and a tokenizer trained on the answers used below."""
    from tiny_models import tiny_gpt

    from rlhf_lab.tokenizer import train_tokenizer
    from rlhf_lab.world import World, format_dialogue

    questions = [q.text for q in World().split("train")[:12]]
    texts = [format_dialogue(q, a) for q in questions for a in ("Yes, a cat.", "No, a dog.")]
    tok = train_tokenizer(texts * 3, vocab_size=300)
    return tiny_gpt(tok), tok, questions


def toy_thumbs(questions):
    """Up on "Yes, a cat.", down on "No, a dog.", to every question."""
    import pandas as pd
    return pd.DataFrame({"prompt": questions * 2,
                         "answer": ["Yes, a cat."] * len(questions) + ["No, a dog."] * len(questions),
                         "up": [True] * len(questions) + [False] * len(questions)})


def test_mismatched_twins_pair_each_prompt_with_the_next_rows_answer(tiny):
    from rlhf_lab.dpo import answer_data
    from rlhf_lab.kto import tokenize_thumbs

    policy, tok, questions = tiny
    thumbs = toy_thumbs(questions[:3])
    tokenized = tokenize_thumbs(policy, tok, thumbs, max_tokens=64)
    answers = list(thumbs["answer"])
    expected = answer_data(tok, list(thumbs["prompt"]), answers[1:] + answers[:1], 64)
    assert torch.equal(tokenized.mismatched.input_ids, expected.input_ids)
    assert tokenized.up.tolist() == [True] * 3 + [False] * 3


def test_training_starts_at_the_hand_value_and_learns_the_thumbs(tiny):
    import copy

    from rlhf_lab.kto import KTOConfig, train_kto

    policy, tok, questions = tiny
    policy = copy.deepcopy(policy)
    reference = copy.deepcopy(policy).requires_grad_(False)
    train, val = toy_thumbs(questions[:8]), toy_thumbs(questions[8:])
    cfg = KTOConfig(beta=1.0, batch_size=8, max_steps=30, lr=3e-3, warmup_steps=0,
                    eval_every=30, ratio=4 / 3)
    history = train_kto(policy, reference, tok, train, val, cfg, progress=False)
    start, end = history.iloc[0], history.iloc[-1]
    # at step 0 the policy is its reference: every log-ratio is 0, z0 = 0, every value is
    # lambda_y * sigmoid(0), so the loss is mean(lambda_y) / 2; lambda_D = 4/3 (equal counts)
    assert start["val_loss"] == pytest.approx((4 / 3 + 1.0) / 2 / 2, rel=1e-5)
    assert start["val_accuracy"] == 0.5 and start["z0"] == 0.0
    # on held-out questions: thumbs-up answers gained on thumbs-down ones, the loss fell
    assert end["val_loss"] < start["val_loss"] - 0.05
    assert end["up_logratio"] > end["down_logratio"] + 1.0
    assert end["val_accuracy"] > 0.9
