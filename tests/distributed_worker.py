"""Jobs for tests/test_distributed.py, run twice: in the test's own process (no Accelerator,
the notebooks' path) and by `accelerate launch` on 2 CPU processes (gloo), where each process
saves what it ends with to JOB_DIR/<mixed precision>_rank<r>.pt for the test to compare.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 \\
        tests/distributed_worker.py JOB_DIR

`prepare(job_dir)` (called by the test first) saves a tiny GPT-2 with its tokenizer, a tiny
reward model, a value head and one fixed PPO rollout, so that both runs start from the same
files. Each job returns plain tensors, numbers and strings (loadable with weights_only).
"""
from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2LMHeadModel

from rlhf_lab import artifacts, distributed
from rlhf_lab.causal_lm import load_causal_lm
from rlhf_lab.config import seed_everything
from rlhf_lab.critic_free import grpo_advantages
from rlhf_lab.critic_free_stage import GroupRollout, GRPOConfig, critic_free_update
from rlhf_lab.pretraining import PretrainConfig
from rlhf_lab.reward_model import RewardConfig
from rlhf_lab.ppo import (
    PPOConfig,
    Rollout,
    ValueHead,
    make_kl_controller,
    make_ppo_optimizer,
    make_rollout,
    ppo_iteration,
    ppo_update,
)
from rlhf_lab.pretraining import token_stream
from rlhf_lab.reward_model import build_reward_model, train_reward_model
from rlhf_lab.tokenizer import load_tokenizer, train_tokenizer
from rlhf_lab.training import blocks_from_stream, train_lm
from rlhf_lab.world import World, format_dialogue

QUESTIONS = World().split("train")[:32]
GOOD, BAD = "I am glad to help: the answer is blue.", "No. You are silly and wrong."
TEXTS = [format_dialogue(q.text, a) for q in QUESTIONS for a in (GOOD, BAD)]

# 8 blocks of 32 tokens per step, i.e. 4 per process
PRETRAIN = PretrainConfig(batch_size=8, max_steps=8, warmup_steps=2, eval_every=4,
                          eval_batches=2, block_size=32, n_layer=2, n_embd=32, n_head=2,
                          vocab_size=300)
# 8 rated pairs per step, i.e. 4 per process
REWARD = RewardConfig(batch_size=8, max_steps=4, warmup_steps=1, eval_every=2, lr=1e-3)
# one minibatch of the whole rollout per step (4 answers per process): both runs then
# optimise on the same answers in every step, whatever order each process draws them in
PPO = PPOConfig(batch_size=8, minibatch_size=8, ppo_epochs=3, max_new_tokens=6, lr=1e-3,
                kl_coef=0.1, target_kl=6.0)
# the same 8 answers read as 4 questions x 2 answers: each process holds 2 whole groups
GRPO = GRPOConfig(prompts=4, k=2, minibatch_size=8, ppo_epochs=3, max_new_tokens=6, lr=1e-3,
                  kl_coef=0.1)


def prepare(job_dir: Path) -> None:
    """Save the starting point of every job: policy/ (a tiny GPT-2 and its tokenizer),
    reward/ (a tiny GPT-2 reward model), value_head.pt and rollout.pt (8 answers of 6
    tokens, none of them ended, so both processes hold as many answer tokens)."""
    tokenizer = train_tokenizer(TEXTS, PRETRAIN.vocab_size)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2,
                        n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(config)
    policy.save_pretrained(job_dir / "policy")
    tokenizer.save_pretrained(job_dir / "policy")
    seed_everything(1)
    build_reward_model(job_dir / "policy").save_pretrained(job_dir / "reward")
    tokenizer.save_pretrained(job_dir / "reward")
    value_head = ValueHead(config.hidden_size)
    torch.save(value_head.state_dict(), job_dir / "value_head.pt")
    reward_model = AutoModelForSequenceClassification.from_pretrained(job_dir / "reward")
    torch.manual_seed(3)
    rollout = make_rollout(policy, value_head, copy.deepcopy(policy), reward_model, tokenizer,
                           tokenizer, QUESTIONS[:PPO.batch_size], PPO, kl_coef=PPO.kl_coef)
    assert rollout.answer_mask.all(), "pick another seed: an answer ended early"
    torch.save(dataclasses.asdict(rollout), job_dir / "rollout.pt")


def _params(*modules) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}": p.detach().cpu().clone()
            for i, module in enumerate(modules) for name, p in module.named_parameters()}


def pretrain_job(job_dir: Path) -> dict:
    """train_lm (chapters 01-02) for PRETRAIN.max_steps steps on blocks of TEXTS."""
    model, tokenizer = load_causal_lm(job_dir / "policy")
    data = blocks_from_stream(token_stream(tokenizer, TEXTS), PRETRAIN.block_size)
    history = train_lm(model, data, data, PRETRAIN)
    return {"params": _params(model), "train_loss": history.train_loss.tolist(),
            "model": model, "tokenizer": tokenizer}


def reward_job(job_dir: Path) -> dict:
    """train_reward_model (chapter 04) for REWARD.max_steps steps on 32 rated pairs."""
    model = AutoModelForSequenceClassification.from_pretrained(job_dir / "reward")
    examples = pd.DataFrame({"prompt": [q.text for q in QUESTIONS], "answer_a": GOOD,
                             "answer_b": BAD, "target": [1.0, 0.0, 0.5, 1.0] * 8,
                             "rater": "test"})
    history = train_reward_model(model, load_tokenizer(job_dir / "reward"), examples,
                                 examples.iloc[:8], REWARD)
    return {"params": _params(model), "train_loss": history.train_loss.tolist()}


def _policy_and_value_head(job_dir: Path):
    policy, tokenizer = load_causal_lm(job_dir / "policy")
    value_head = ValueHead(policy.config.hidden_size)
    value_head.load_state_dict(torch.load(job_dir / "value_head.pt"))
    return policy, value_head, tokenizer


def starting_params(job_dir: Path, job: str) -> dict[str, torch.Tensor]:
    """The parameters `job` starts from, named as the job names them."""
    if job == "reward":
        return _params(AutoModelForSequenceClassification.from_pretrained(job_dir / "reward"))
    policy, value_head, _ = _policy_and_value_head(job_dir)
    return _params(policy, value_head) if job.startswith("ppo") else _params(policy)


def ppo_update_job(job_dir: Path) -> dict:
    """ppo_update (chapter 06) on this process's share of the fixed rollout."""
    policy, value_head, _ = _policy_and_value_head(job_dir)
    rollout = Rollout(**torch.load(job_dir / "rollout.pt"))
    rows = distributed.shard(range(len(rollout)))     # this process's answers, contiguous
    share = {f.name: getattr(rollout, f.name) for f in dataclasses.fields(Rollout)}
    rollout = Rollout(**{name: value[rows.start:rows.stop]
                         if isinstance(value, (torch.Tensor, list)) else value
                         for name, value in share.items()})
    optimizer = make_ppo_optimizer(policy, value_head, PPO)
    stats = ppo_update(policy, value_head, optimizer, rollout, PPO, torch.Generator().manual_seed(0))
    return {"params": _params(policy, value_head), "stats": stats}


def grpo_update_job(job_dir: Path) -> dict:
    """critic_free_update with GRPO's loss (chapter 10) on this process's share of the fixed
    rollout, its 8 answers read as 4 groups of 2."""
    policy, _, _ = _policy_and_value_head(job_dir)
    saved = torch.load(job_dir / "rollout.pt")
    rows = distributed.shard(range(PPO.batch_size))
    advantages = grpo_advantages(saved["scores"], GRPO.k)

    def cut(value):
        return value[rows.start:rows.stop]
    rollout = GroupRollout(
        cut(saved["questions"]), cut(saved["answers"]), cut(saved["sequences"]),
        cut(saved["attention_mask"]), cut(saved["answer_mask"]), saved["prompt_length"],
        cut(saved["logprobs"]), cut(saved["ref_logprobs"]), cut(saved["scores"]),
        cut(saved["kl"].sum(-1)), cut(advantages), cut(saved["ended"]))
    optimizer = torch.optim.Adam(policy.parameters(), lr=GRPO.lr, eps=1e-5)
    stats = critic_free_update(policy, optimizer, rollout, GRPO, torch.Generator().manual_seed(0))
    return {"params": _params(policy), "stats": stats}


def ppo_iteration_job(job_dir: Path) -> dict:
    """One whole ppo_iteration: each process samples, scores and updates on its share."""
    policy, value_head, tokenizer = _policy_and_value_head(job_dir)
    reward_model = AutoModelForSequenceClassification.from_pretrained(job_dir / "reward")
    seed_everything(0)
    stats = ppo_iteration(policy, value_head, copy.deepcopy(policy).requires_grad_(False),
                          reward_model, tokenizer, tokenizer, QUESTIONS[:PPO.batch_size],
                          make_ppo_optimizer(policy, value_head, PPO), make_kl_controller(PPO),
                          PPO, torch.Generator().manual_seed(0))
    return {"params": _params(policy, value_head), "stats": stats}


def helpers_job() -> dict:
    """What the helpers of rlhf_lab.distributed give on this process."""
    weight = torch.nn.Parameter(torch.zeros(3))
    weight.grad = torch.full((3,), distributed.current().process_index + 1.0)
    distributed.average_gradients([weight])
    try:
        distributed.shard(list(range(7)))
        uneven = ""
    except ValueError as error:
        uneven = str(error)
    return {"shard": distributed.shard(list(range(8))),
            "mean": distributed.mean(distributed.current().process_index),
            "gradient": weight.grad.tolist(), "uneven": uneven}


def bf16_job(job_dir: Path) -> dict:
    """pretrain_job under `--mixed_precision bf16`, and the autocast dtype the loops use."""
    with distributed.autocast():
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    result = pretrain_job(job_dir)
    return {"autocast": str(dtype), "params": result["params"],
            "train_loss": result["train_loss"]}


JOBS = {"pretrain": pretrain_job, "reward": reward_job, "ppo_update": ppo_update_job,
        "grpo_update": grpo_update_job, "ppo_iteration": ppo_iteration_job}


if __name__ == "__main__":
    job_dir = Path(sys.argv[1])
    accelerator = distributed.current()
    if accelerator.mixed_precision == "bf16":
        results = {"bf16": bf16_job(job_dir)}
    else:
        results = {name: job(job_dir) for name, job in JOBS.items()}
        results["helpers"] = helpers_job()
        pretrained = results["pretrain"]      # every process saves; one writes (artifacts.py)
        artifacts.save_model(pretrained.pop("model"), pretrained.pop("tokenizer"), "pretrained")
    torch.save(results, job_dir / f"{accelerator.mixed_precision}_rank{accelerator.process_index}.pt")
