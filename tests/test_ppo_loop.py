"""The PPO loop on tiny models built from configs (no artifacts): log-probs and values on
the answer tokens, the first rollout (policy == reference: KL exactly 0), one full
iteration, and the missing end-of-text penalty."""
import copy
import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lab import kl as kl_module
from rlhf_lab.ppo import (
    PPOConfig,
    ValueHead,
    answers_ended,
    forward_policy_and_values,
    make_kl_controller,
    make_ppo_optimizer,
    make_rollout,
    ppo_iteration,
)
from rlhf_lab.reward_model import score_answers
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World, format_dialogue


@pytest.fixture(scope="module")
def world_questions():
    return World().split("train")[:8]


@pytest.fixture(scope="module")
def tokenizer(world_questions):
    texts = [format_dialogue(q.text, "The answer is blue. I do not know.")
             for q in world_questions] * 4
    return train_tokenizer(texts, vocab_size=300)


def _gpt2_config(tokenizer, **extra):
    return GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2,
                      n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, **extra)


@pytest.fixture()
def models(tokenizer):
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(_gpt2_config(tokenizer))
    reference = copy.deepcopy(policy)
    reward_model = GPT2ForSequenceClassification(_gpt2_config(tokenizer, num_labels=1))
    value_head = ValueHead(policy.config.n_embd)
    return policy, value_head, reference, reward_model


def _cfg(**overrides):
    values = {"batch_size": 8, "minibatch_size": 4, "ppo_epochs": 2, "max_new_tokens": 8, "lr": 1e-3,
                  "kl_coef": 0.1, "target_kl": 6.0}
    values.update(overrides)
    return PPOConfig(**values)


def test_forward_policy_and_values_matches_token_logprobs(models, tokenizer, world_questions):
    policy, value_head, reference, reward_model = models
    cfg = _cfg(temperature=0.7)
    torch.manual_seed(1)
    r = make_rollout(policy, value_head, reference, reward_model, tokenizer, tokenizer,
                     world_questions, cfg, kl_coef=0.1)
    with torch.no_grad():
        logprobs, values = forward_policy_and_values(policy, value_head, r.sequences,
                                                     r.attention_mask, r.prompt_length, 0.7)
        full = kl_module.token_logprobs(policy, r.sequences, r.attention_mask, 0.7)
    answer_len = r.sequences.shape[1] - r.prompt_length
    assert logprobs.shape == values.shape == r.answer_mask.shape == (8, answer_len)
    mask = r.answer_mask.bool()
    expected = full[:, r.prompt_length - 1:]
    assert torch.allclose(logprobs[mask], expected[mask], atol=1e-5)
    assert (logprobs[mask] <= 0).all()
    assert values.abs().max() < 1.0                                # the head starts small


def test_first_rollout_has_zero_kl_and_reward_only_at_the_end(models, tokenizer,
                                                             world_questions):
    policy, value_head, reference, reward_model = models
    cfg = _cfg()
    torch.manual_seed(2)
    r = make_rollout(policy, value_head, reference, reward_model, tokenizer, tokenizer,
                     world_questions, cfg, kl_coef=0.1)
    assert torch.equal(r.logprobs, r.ref_logprobs)
    assert (r.kl == 0).all()
    lengths = r.answer_mask.sum(-1)
    expected = torch.zeros_like(r.rewards)
    expected[torch.arange(len(r)), lengths - 1] = r.scores
    assert torch.equal(r.rewards, expected)
    # advantages are whitened over the real answer tokens and 0 on padding
    mask = r.answer_mask.bool()
    assert r.advantages[mask].mean().abs() < 1e-5
    assert (r.advantages[~mask] == 0).all() and (r.returns[~mask] == 0).all()
    assert len(r.answers) == len(r.questions) == 8


def test_one_ppo_iteration_moves_the_policy(models, tokenizer, world_questions):
    policy, value_head, reference, reward_model = models
    cfg = _cfg()
    before = [p.detach().clone() for p in policy.parameters()]
    optimizer = make_ppo_optimizer(policy, value_head, cfg)
    controller = make_kl_controller(cfg)
    torch.manual_seed(3)
    metrics = ppo_iteration(policy, value_head, reference, reward_model, tokenizer, tokenizer,
                            world_questions, optimizer, controller, cfg,
                            generator=torch.Generator().manual_seed(0))
    for key in ("score", "kl", "kl_coef", "policy_loss", "value_loss", "clipfrac",
                "approx_kl", "entropy"):
        assert math.isfinite(metrics[key]), key
    assert metrics["kl"] == 0.0 and metrics["kl_coef"] == cfg.kl_coef
    assert metrics["next_kl_coef"] < cfg.kl_coef              # KL 0 is below target: beta falls
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert 0 < metrics["approx_kl"] < 0.5
    assert 0.0 <= metrics["clipfrac"] <= 1.0
    assert 0 < metrics["entropy"] <= math.log(len(tokenizer)) + 1e-4
    # the reference did not move
    assert all(torch.equal(a, b) for a, b in zip(before, reference.parameters()))


def test_answers_ended_by_hand():
    eos = 0
    tokens = torch.tensor([[5, 6, 0, 1], [5, 6, 7, 8], [0, 1, 1, 1], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert answers_ended(tokens, mask, eos).tolist() == [True, False, True, True]


def test_missing_eos_penalty_in_rollout(models, tokenizer, world_questions):
    policy, value_head, reference, reward_model = models
    cfg = _cfg(max_new_tokens=2, missing_eos_penalty=-3.0)
    torch.manual_seed(4)
    r = make_rollout(policy, value_head, reference, reward_model, tokenizer, tokenizer,
                     world_questions, cfg, kl_coef=0.1)
    raw = score_answers(reward_model, tokenizer, r.questions, r.answers)
    ended = answers_ended(r.sequences[:, r.prompt_length:], r.answer_mask,
                          tokenizer.eos_token_id)
    assert torch.equal(r.ended, ended)
    assert not r.ended.all()                 # 2 tokens of an untrained model rarely end
    expected = raw - 3.0 * (~ended).float()
    assert torch.allclose(r.scores, expected, atol=1e-6)


def test_kl_blow_up_warns_and_whitened_rewards_run(models, tokenizer, world_questions):
    policy, value_head, reference, reward_model = models
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p))                       # the reference is far away
    cfg = _cfg(target_kl=0.01, kl_estimator="k3", whiten_rewards=True)
    optimizer = make_ppo_optimizer(policy, value_head, cfg)
    controller = make_kl_controller(cfg)
    torch.manual_seed(5)
    with pytest.warns(UserWarning, match="KL blow-up"):
        metrics = ppo_iteration(policy, value_head, reference, reward_model, tokenizer,
                                tokenizer, world_questions, optimizer, controller, cfg)
    assert metrics["kl"] > 3 * cfg.target_kl
    assert metrics["next_kl_coef"] > cfg.kl_coef                  # beta rises
    assert all(math.isfinite(v) for v in metrics.values())


def test_non_finite_loss_raises_training_diverged(models, tokenizer, world_questions):
    from rlhf_lab.ppo import ppo_update
    from rlhf_lab.training import TrainingDiverged
    policy, value_head, reference, reward_model = models
    cfg = _cfg()
    torch.manual_seed(6)
    r = make_rollout(policy, value_head, reference, reward_model, tokenizer, tokenizer,
                     world_questions, cfg, kl_coef=0.1)
    r.returns[0, 0] = float("nan")
    optimizer = make_ppo_optimizer(policy, value_head, cfg)
    with pytest.raises(TrainingDiverged, match="value loss.*lr.*kl_coef"):
        ppo_update(policy, value_head, optimizer, r, cfg)


def test_sample_with_kl_is_zero_against_itself_and_unbiased_against_a_changed_copy(
        models, tokenizer, world_questions):
    from rlhf_lab.generation import sample
    from rlhf_lab.kl import kl_from_logits, sample_with_kl

    policy, _, reference, _ = models
    prompts = [q.text for q in world_questions]
    torch.manual_seed(0)
    answers, kl = sample_with_kl(policy, reference, tokenizer, prompts, max_new_tokens=8)
    assert len(answers) == len(prompts) and torch.equal(kl, torch.zeros(len(prompts)))

    # One-token answers to one prompt: the mean k1 over many samples must match the exact
    # KL of the next-token distributions, sum_x p(x) log p(x)/q(x), within 4 standard errors.
    changed = copy.deepcopy(reference)
    with torch.no_grad():
        changed.lm_head.weight.add_(0.5 * torch.randn_like(changed.lm_head.weight))
    torch.manual_seed(1)
    _, kl = sample_with_kl(policy, changed, tokenizer, prompts[:1] * 4000, max_new_tokens=1,
                           batch_size=1000)
    s = sample(policy, tokenizer, prompts[:1], max_new_tokens=1)
    with torch.no_grad():
        logits_p = policy(s.sequences[:, :s.prompt_length]).logits[0, -1]
        logits_q = changed(s.sequences[:, :s.prompt_length]).logits[0, -1]
    exact = kl_from_logits(logits_p, logits_q).item()
    standard_error = kl.std().item() / math.sqrt(len(kl))
    assert exact > 0.05
    assert abs(kl.mean().item() - exact) < 4 * standard_error, (kl.mean().item(), exact)
