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
