"""DPO: the loss, its implicit rewards and tie rule by hand, its gradient's direction, whole-
answer log-probs under any padding against a plain loop, and seeded quick-mode runs from the
session's SFT model: on chapter 04's ratings, and on ratings of the SFT model's own answers."""
import copy
import math

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_lab import artifacts, dpo
from rlhf_lab.config import SettingsError
from rlhf_lab.dpo import (
    DPOConfig,
    all_sequence_logprobs,
    answer_data,
    dpo_loss,
    implicit_reward_accuracy,
    implicit_rewards,
    sequence_logprobs,
)
from rlhf_lab.preferences import chosen_rejected, preference_split
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.training import IGNORE, TrainingDiverged
from rlhf_lab.world import World, format_dialogue, format_prompt

T = torch.tensor


# ---------------------------------------------------------------- the loss by hand

def test_dpo_loss_and_implicit_rewards_by_hand():
    # logpi(chosen) = -2, logpi(rejected) = -3, the reference gives both -2.5; beta 0.5:
    # chosen reward 0.5 * (-2 + 2.5) = 0.25, rejected 0.5 * (-3 + 2.5) = -0.25, margin 0.5,
    # loss = -log sigmoid(0.5) = log(1 + e^-0.5) = 0.474077
    loss, chosen, rejected = dpo_loss(T([-2.0]), T([-3.0]), T([-2.5]), T([-2.5]), beta=0.5)
    assert chosen.item() == pytest.approx(0.25) and rejected.item() == pytest.approx(-0.25)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)), abs=1e-6)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)
    # beta 1 doubles the rewards and the margin: loss = log(1 + e^-1) = 0.313262
    loss, chosen, rejected = dpo_loss(T([-2.0]), T([-3.0]), T([-2.5]), T([-2.5]), beta=1.0)
    assert (chosen.item(), rejected.item()) == pytest.approx((0.5, -0.5))
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)
    # policy == reference: every implicit reward is 0 and the loss is log 2 = 0.693147
    loss, chosen, rejected = dpo_loss(T([-4.0, -1.0]), T([-2.0, -7.0]), T([-4.0, -1.0]),
                                      T([-2.0, -7.0]), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2)) and not chosen.any() and not rejected.any()


def test_dpo_tie_rule_is_half_a_win_each_way():
    # Tie (target 0.5), margin 0.5 at beta 0.5 as above: the mean of both orders,
    # (log(1 + e^-0.5) + log(1 + e^0.5)) / 2 = (0.474077 + 0.974077) / 2 = 0.724077;
    # with equal implicit rewards it is log 2, its smallest value.
    args = (T([-2.0]), T([-3.0]), T([-2.5]), T([-2.5]))
    tie, _, _ = dpo_loss(*args, beta=0.5, target=T([0.5]))
    assert tie.item() == pytest.approx(0.724077, abs=1e-6)
    equal, _, _ = dpo_loss(T([-2.0]), T([-3.0]), T([-2.0]), T([-3.0]), beta=0.5, target=T([0.5]))
    assert equal.item() == pytest.approx(math.log(2)) and equal < tie
    # a batch of one decided pair and one tie: the mean, (0.474077 + 0.724077) / 2
    both, _, _ = dpo_loss(T([-2.0, -2.0]), T([-3.0, -3.0]), T([-2.5, -2.5]), T([-2.5, -2.5]),
                          beta=0.5, target=T([1.0, 0.5]))
    assert both.item() == pytest.approx((0.474077 + 0.724077) / 2, abs=1e-6)


def test_dpo_loss_is_the_reward_models_loss_on_implicit_rewards():
    from rlhf_lab.reward_model import preference_loss

    g = torch.Generator().manual_seed(0)
    logps = [torch.randn(40, generator=g) * 5 - 20 for _ in range(4)]
    target = torch.where(torch.rand(40, generator=g) < 0.2, 0.5, 1.0)
    loss, chosen, rejected = dpo_loss(*logps, beta=0.2, target=target)
    assert torch.allclose(chosen, implicit_rewards(logps[0], logps[2], 0.2))
    assert torch.allclose(chosen, 0.2 * (logps[0] - logps[2]))
    assert torch.allclose(rejected, 0.2 * (logps[1] - logps[3]))
    assert loss.item() == pytest.approx(preference_loss(chosen, rejected, target).item())
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(*logps, beta=0.0)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    # d loss / d logpi(chosen) = -beta * sigmoid(-margin) / batch: here -0.5 * sigmoid(-0.5)
    # = -0.5 * 0.377541 = -0.188771; the rejected answer gets the opposite.
    chosen_logps = T([-2.0], requires_grad=True)
    rejected_logps = T([-3.0], requires_grad=True)
    loss, _, _ = dpo_loss(chosen_logps, rejected_logps, T([-2.5]), T([-2.5]), beta=0.5)
    loss.backward()
    assert chosen_logps.grad.item() == pytest.approx(-0.188771, abs=1e-6)
    assert rejected_logps.grad.item() == pytest.approx(0.188771, abs=1e-6)
    # a tie whose "chosen" answer leads pulls the two together: the leader goes down
    chosen_logps.grad = rejected_logps.grad = None
    tie, _, _ = dpo_loss(chosen_logps, rejected_logps, T([-2.5]), T([-2.5]), beta=0.5,
                         target=T([0.5]))
    tie.backward()
    assert chosen_logps.grad.item() > 0 > rejected_logps.grad.item()


def test_implicit_reward_accuracy_by_hand():
    chosen, rejected = T([1.0, 0.0, 2.0, 0.5]), T([0.0, 1.0, 2.0, 0.1])
    target = T([1.0, 1.0, 1.0, 0.5])
    # decided pairs: right, wrong, equal (half): 1.5 / 3; the tie is left out
    assert implicit_reward_accuracy(chosen, rejected, target) == pytest.approx(0.5)
    assert implicit_reward_accuracy(chosen[:1], rejected[:1], target[:1]) == 1.0
    assert implicit_reward_accuracy(torch.zeros(5), torch.zeros(5), torch.ones(5)) == 0.5
    assert math.isnan(implicit_reward_accuracy(chosen[3:], rejected[3:], target[3:]))


def test_chosen_rejected_puts_the_rater_s_choice_first():
    examples = pd.DataFrame({"prompt": ["p1", "p2", "p3"], "answer_a": ["a1", "a2", "a3"],
                             "answer_b": ["b1", "b2", "b3"], "target": [1.0, 0.0, 0.5],
                             "rater": ["x", "y", "z"]})
    pairs = chosen_rejected(examples)
    assert pairs.to_dict("list") == {"prompt": ["p1", "p2", "p3"], "chosen": ["a1", "b2", "a3"],
                                     "rejected": ["b1", "a2", "b3"], "target": [1.0, 1.0, 0.5]}


def test_settings_are_validated_and_quick_is_smaller():
    quick = DPOConfig.for_mode(quick=True)
    assert quick.max_steps < DPOConfig().max_steps
    with pytest.raises(SettingsError, match="beta"):
        DPOConfig(beta=0.0)
    with pytest.raises(SettingsError, match="batch_size"):
        DPOConfig(batch_size=0)


# ---------------------------------------------------------------- log-probs of answers

QUESTIONS = ["what colour is a frog?", "how many legs does a cat have?", "hi"]
ANSWERS = ["A frog is green.", "A cat has four legs, and it can jump very far indeed.", "Hi!"]


@pytest.fixture(scope="module")
def tiny():
    tok = train_tokenizer([format_dialogue(q, a) for q, a in zip(QUESTIONS, ANSWERS)] * 20, 300)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
                        eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval(), tok


def _left_padded(data):
    """The same rows with their padding moved to the left."""
    shifted = {}
    lengths = data.attention_mask.sum(-1)
    for name in ("input_ids", "labels", "attention_mask"):
        x = getattr(data, name)
        shifted[name] = torch.stack([row.roll(int(x.shape[1] - n)) for row, n in zip(x, lengths)])
    return shifted


def test_sequence_logprobs_same_under_any_padding_and_as_a_plain_loop(tiny):
    model, tok = tiny
    data = answer_data(tok, QUESTIONS, ANSWERS, max_tokens=64)
    assert (data.attention_mask == 0).any()                       # short rows are padded
    right = {"input_ids": data.input_ids, "labels": data.labels,
             "attention_mask": data.attention_mask}
    left = _left_padded(data)
    assert (left["attention_mask"][:, 0] == 0).any()
    with torch.no_grad():
        from_right = sequence_logprobs(model, **right)
        from_left = sequence_logprobs(model, **left)
    # a plain loop, one example at a time, no padding: sum of log softmax at answer tokens
    loop = []
    for q, a in zip(QUESTIONS, ANSWERS):
        prompt = tok(format_prompt(q)).input_ids
        answer = tok(" " + a, add_special_tokens=False).input_ids + [tok.eos_token_id]
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0], -1)     # (seq, vocab)
        loop.append(sum(logp[len(prompt) + t - 1, token].item() for t, token in enumerate(answer)))
    assert from_right.shape == (3,)
    assert torch.allclose(from_right, torch.tensor(loop), atol=1e-4), (from_right, loop)
    assert torch.allclose(from_left, from_right, atol=1e-4)
    assert (from_right < 0).all()
    # the batched, length-sorted helper gives the same numbers
    assert torch.allclose(all_sequence_logprobs(model, data, batch_size=2), from_right, atol=1e-4)
    # labels mark exactly the answer tokens and the end-of-text
    assert (data.labels[0] != IGNORE).sum() == len(tok(" " + ANSWERS[0]).input_ids) + 1


def test_first_measurement_is_chance_and_a_nan_stops_training_with_advice(tiny):
    model, tok = tiny
    pairs = pd.DataFrame({"prompt": QUESTIONS, "chosen": ANSWERS,
                          "rejected": ["Ugh.", "No.", "Go away, you are boring."],
                          "target": [1.0, 1.0, 0.5]})
    policy, reference = copy.deepcopy(model), copy.deepcopy(model)
    cfg = DPOConfig(max_steps=3, batch_size=2, eval_every=3, warmup_steps=1)
    history = dpo.train_dpo(policy, reference, tok, pairs, pairs, cfg, progress=False)
    start = history.iloc[0]
    assert (start.val_accuracy, start.chosen_reward, start.margin) == (0.5, 0.0, 0.0)
    assert start.val_loss == pytest.approx(math.log(2))
    assert list(history.step) == [0, 3]
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.transformer.wte.weight[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="DPO loss.*Lower cfg.lr"):
        dpo.train_dpo(broken, reference, tok, pairs, pairs, cfg, progress=False)


# ---------------------------------------------------------------- seeded quick-mode runs

@pytest.fixture(scope="module")
def chapter04_run(reward_trained):
    return dpo.run_dpo(DPOConfig.for_mode(quick=True), progress=False)


def test_quick_dpo_on_chapter_04_ratings_learns_the_held_out_preferences(chapter04_run,
                                                                         reward_trained):
    run = chapter04_run
    # the same ratings and held-out split as the session's reward model
    pd.testing.assert_frame_equal(run.train, chosen_rejected(reward_trained.train))
    pd.testing.assert_frame_equal(run.val, chosen_rejected(reward_trained.val))
    # Measured with seed 0 (255 training pairs, 34 decided held-out pairs, 40 steps, about
    # 5 s of training on one thread): held-out implicit-reward accuracy 0.5 -> 0.76, KL 3.6
    # nats per answer; the margin is half the gain. The gold score is not asserted here: in
    # quick mode these ratings are all the shipped sample's scripted answers, far from what
    # the quick SFT model writes, and its gold score went 1.97 -> 1.76 (the reward model's
    # score 0.17 -> 0.58). In full mode the ratings include our models' answers, and DPO
    # raised the gold score 3.49 -> 3.68 (beta 0.3, 300 held-out questions, accuracy 0.75).
    # The next test gives DPO pairs of the model's own answers.
    history = run.history
    assert history.val_accuracy.iloc[0] == 0.5
    assert run.accuracy > 0.5 + 0.13, history
    assert history.margin.iloc[-1] > 0 > history.rejected_reward.iloc[-1]
    assert 0 < run.kl < 20, run.kl
    meta = artifacts.read_metadata("dpo")
    assert meta["accuracy"] == pytest.approx(run.accuracy)
    saved = pd.read_csv(artifacts.require("dpo") / "history.csv")
    assert list(saved.columns) == list(history.columns) and len(saved) == len(history)
    policy, _ = artifacts.load_model("dpo")
    for name, tensor in policy.state_dict().items():
        torch.testing.assert_close(tensor, run.policy.state_dict()[name])


@pytest.fixture(scope="module")
def own_answers_run(reward_trained):
    """DPO on 600 pairs of the quick SFT model's own answers (temperature 1) to training
    questions, rated by a simulated rater of temperature 0.2; 20% of the pairs held out."""
    from rlhf_lab.comparisons import sample_comparisons
    from rlhf_lab.raters import SimulatedRater

    sft = artifacts.load_model("sft")
    pairs = sample_comparisons({"sft": sft}, World().split("train"), 600, temperatures=(1.0,), seed=0)
    rater = SimulatedRater("simulated", temperature=0.2, seed=0)
    records = [rater.rate_pair(pair) for pair in pairs]
    return dpo.run_dpo(DPOConfig.for_mode(quick=True), pairs=preference_split(records, 0.2, 0),
                       save=False, progress=False)


def test_quick_dpo_on_its_own_rated_answers_raises_the_gold_score(own_answers_run):
    # Measured with seed 0 (479 training pairs, 93 decided held-out pairs, 40 steps; all 366
    # held-out questions answered before and after, same seed): held-out accuracy 0.5 ->
    # 0.66, gold score 1.97 -> 2.24, KL 1.8 nats per answer. With the pairs drawn and rated
    # with seeds 1 and 2: 0.65 and 0.68, +0.25 and +0.30. The margins are half the gains.
    run = own_answers_run
    before, after = run.before.answers.total.mean(), run.after.answers.total.mean()
    assert run.history.val_accuracy.iloc[0] == 0.5
    assert run.accuracy > 0.5 + 0.07, run.history
    assert after > before + 0.12, (before, after)
    assert run.before.answers.kl.abs().max() < 1e-4 and 0 < run.kl < 10, run.kl
