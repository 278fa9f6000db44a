"""PPO for language models: the pieces of one step, each a small function.

Taught in notebooks/06_ppo.ipynb; its loop and stage are in `ppo_stage`. The pieces of one
PPO step for language models, in the order of "The N implementation details of RLHF with
PPO" (Huang et al., 2023) and openai/lm-human-preferences (Ziegler et al., 2019); each a
small function:

    1. sample answers from the policy (generation.py)
    2. score them with the reward model; answers that never end get `missing_eos_penalty`
    3. per-token reward = -beta * KL estimate, plus the score at the last real token
    4. (optionally) whiten the rewards
    5. generalised advantage estimation (GAE): advantages and returns
    6. whiten the advantages
    7. for a few epochs over minibatches: clipped policy loss + vf_coef * clipped value loss
    8. adapt beta towards the target KL

Every tensor below is (batch, seq) over the answer tokens only, with a `mask` that is 1 on
real answer tokens and 0 after the end (padding). Names follow the papers and cleanrl:
`logprobs`, `old_logprobs`, `ref_logprobs`, `values`, `advantages`, `returns`, `clipfrac`,
`approx_kl`.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from . import distributed, generation
from .config import Settings, SettingsError, is_quick, setting
from .kl import sequence_kl, token_logprobs
from .model import position_ids
from .reward_model import score_answers
from .training import TrainingDiverged


@dataclass
class PPOConfig(Settings):
    """Chapter 06: PPO against the reward model, held near the SFT model by a KL penalty."""

    seed: int = setting(0, "random seed for the whole stage", range=(0, 2**31 - 1))
    # 80, not 100: the learning rate decays linearly to 0, so 100 iterations spent their last
    # tenth near 0, and 80 reach the same gold (bench/recipe_cuts.py: +0.002, no measurable
    # difference, in 0.8 of the time).
    steps: int = setting(80, "PPO iterations (each: sample a batch, then optimise on it)",
                         range=(1, 10**6), quick=40)
    batch_size: int = setting(64, "answers sampled per PPO iteration", range=(1, 65536),
                              quick=32)
    minibatch_size: int = setting(16, "answers per optimiser step; must divide batch_size",
                                  range=(1, 65536))
    ppo_epochs: int = setting(4, "passes over each batch of answers", range=(1, 100), quick=2)
    lr: float = setting(2e-5, "peak learning rate of Adam for policy and value head",
                        range=(1e-8, 1.0), quick=5e-5)
    lr_schedule: str = setting("linear", "learning rate over the iterations: 'linear' decays "
                               "from lr to 0 at the last iteration, 'constant' keeps it",
                               choices=("linear", "constant"))
    temperature: float = setting(1.0, "sampling temperature of the rollouts (log-probs use "
                                 "the same one)", range=(1e-3, 10.0))
    max_new_tokens: int = setting(40, "longest answer in tokens", range=(1, 4096), quick=24)
    missing_eos_penalty: float = setting(-1.0, "added to the score of answers that never end "
                                         "(0: off)", range=(-100.0, 0.0))
    gamma: float = setting(1.0, "discount factor over answer tokens", range=(0.0, 1.0))
    lam: float = setting(0.95, "GAE lambda: 0 trusts the value head, 1 the sampled rewards",
                         range=(0.0, 1.0))
    cliprange: float = setting(0.2, "epsilon of the clipped policy ratio 1 +- epsilon",
                               range=(1e-6, 1.0))
    cliprange_value: float = setting(0.2, "how far a value may move from its old value before "
                                     "its loss is clipped", range=(1e-6, 100.0))
    vf_coef: float = setting(0.1, "weight of the value loss in the total loss",
                             range=(0.0, 100.0))
    kl_coef: float = setting(0.2, "initial beta: weight of the per-token KL penalty",
                             range=(0.0, 100.0))
    kl_estimator: str = setting("k1", "per-token KL estimate in the reward (see kl.py)",
                                choices=("k1", "k3"))
    target_kl: float = setting(3.0, "KL per answer (nats) the adaptive controller aims at; "
                               "0: keep beta fixed", range=(0.0, 1000.0))
    kl_horizon: int = setting(10000, "answers over which beta may change by up to 20%",
                              range=(1, 10**9))
    whiten_rewards: bool = setting(False, "whiten the per-token rewards before GAE")
    eval_questions: int = setting(366, "held-out questions graded for the curves, every kind "
                                  "included (the report card grades its own set: all 366 in "
                                  "full mode, 4 answers each)", range=(12, 100000), quick=72)
    eval_every: int = setting(10, "iterations between two gold-score measurements",
                              range=(1, 10**6))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size % self.minibatch_size:
            raise SettingsError(f"PPOConfig.minibatch_size = {self.minibatch_size} must divide "
                                f"batch_size = {self.batch_size}.")


def hard_settings(quick: bool | None = None, **overrides) -> PPOConfig:
    """Chapter 07's setting, in which PPO over-optimises the reward model: a learning rate
    three times chapter 06's that never decays (6e-5; 3e-4 in quick mode, whose run is
    short), a fixed, weak KL penalty (kl_coef 0.02, no adaptive controller) and 50
    iterations (quick mode: 30). At 6e-5 the gold score peaks within ten iterations and
    has fallen below the SFT model's by thirty to forty (measured: 2.8-3.1 gold after 30
    iterations in three seeds, against 3.4-3.6 at 3e-5), so chapter 09's three rounds of
    ten iterations see a stale reward model do harm. Chapters 09 and 10 run under the same
    setting."""
    quick = is_quick() if quick is None else quick
    mode = {"lr": 3e-4, "steps": 30} if quick else {"lr": 6e-5, "steps": 50}
    return PPOConfig.for_mode(quick, **{**mode, "lr_schedule": "constant",
                                        "kl_coef": 0.02, "target_kl": 0.0, **overrides})


# ---------------------------------------------------------------- masked statistics

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (a scalar)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum()


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over the positions where mask is 1; unbiased divides by n - 1."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError("the unbiased variance needs at least 2 positions under the mask.")
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the mask; shift_mean=False keeps the mean (rewards keep their sign).

    Positions outside the mask get whatever the formula gives; later steps mask them out.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


# ---------------------------------------------------------------- rewards

def apply_missing_eos_penalty(scores: torch.Tensor, ended: torch.Tensor,
                              penalty: float) -> torch.Tensor:
    """Add `penalty` (e.g. -1.0) to the score of each answer that never produced its end token.

    scores: (batch,); ended: (batch,) bool. Returns a new tensor.
    """
    return scores + penalty * (~ended.bool()).to(scores.dtype)


def kl_penalised_rewards(score: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float, estimator: str = "k1"
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * KL estimate at every token, plus the reward model's
    score at the last real token of each answer (lm-human-preferences).

    score: (batch,); logprobs, ref_logprobs, mask: (batch, seq). Returns rewards (batch, seq),
    0 on padding, and kl (batch, seq), the per-token KL estimate (0 on padding).
    """
    kl, _ = sequence_kl(logprobs, ref_logprobs, mask, estimator)   # (batch, seq)
    rewards = -kl_coef * kl                                        # (batch, seq)
    lengths = mask.sum(-1).long()                                  # (batch,)
    if (lengths == 0).any():
        raise ValueError("every answer needs at least one real token (a row of mask is all 0).")
    last = lengths - 1                                             # assumes right padding
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += score.to(rewards.dtype)
    return rewards, kl


# ---------------------------------------------------------------- advantages

def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016), backwards over the answer.

    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1}.
    Values after the last real token count as 0 (the answer has ended). rewards, values,
    mask: (batch, seq). Returns advantages and returns = advantages + values, both
    (batch, seq), 0 on padding. No gradient flows through them.
    """
    mask = mask.to(values.dtype)
    rewards, values = (rewards * mask).detach(), (values * mask).detach()
    advantages = torch.zeros_like(values)                          # (batch, seq)
    next_value = next_advantage = torch.zeros_like(values[:, 0])   # (batch,)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


# ---------------------------------------------------------------- losses

def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate objective of PPO (Schulman et al., 2017), as a loss to minimise.

    ratio = pi(a) / pi_old(a); loss = masked mean of max(-A * ratio, -A * clip(ratio, 1 +- eps)).
    Returns loss, clipfrac (share of tokens where the clipped term won) and approx_kl, the
    masked mean of 0.5 * (logprobs - old_logprobs)^2: the k2 estimator of KL(old || new).
    """
    log_ratio = logprobs - old_logprobs                            # (batch, seq)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((pg_losses_clipped > pg_losses).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio ** 2, mask)
    return loss, clipfrac, approx_kl


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 * masked mean of max((v - R)^2, (v_clipped - R)^2), where
    v_clipped = old_values + clip(v - old_values, -c, c). Returns loss and clipfrac.
    """
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value,
                                              cliprange_value)
    vf_losses = (values - returns) ** 2                            # (batch, seq)
    vf_losses_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((vf_losses_clipped > vf_losses).float(), mask)
    return loss, clipfrac


# ---------------------------------------------------------------- KL controllers

class FixedKLController:
    """beta stays at its initial value."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """Adaptive beta of Ziegler et al. (2019): move the KL per answer towards `target`.

    error = clip(current_kl / target - 1, -0.2, 0.2);
    beta <- beta * (1 + error * n_steps / horizon),
    where n_steps is the number of answers in the batch just used.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"need target > 0 and horizon > 0; got {target}, {horizon}.")
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


# ================================================================ the PPO loop
#
# Everything above is math on (batch, answer_len) tensors. Below: the loop that produces
# those tensors from models (rollout), optimises on them (update), and adapts beta.

GRAD_CLIP = 1.0   # max gradient norm of policy + value head in every PPO step


class ValueHead(nn.Module):
    """V(state): a linear layer hidden -> 1 on the policy's last hidden states.

    It shares the policy's transformer (the value loss trains the body too, weighted by
    vf_coef). Initialised small, so that the first values are near 0 and do not swamp GAE.
    """

    def __init__(self, hidden_size: int, init_std: float = 1e-3):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (batch, seq, hidden) -> values (batch, seq)."""
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


def _answer_forward(model, sequences: torch.Tensor, attention_mask: torch.Tensor,
                    prompt_length: int, temperature: float):
    """Logits / temperature at the positions that predict the answer tokens,
    (batch, answer_len, vocab), and the last hidden states there (batch, answer_len, d).
    Position prompt_length - 1 + t predicts answer token t."""
    out = model(input_ids=sequences, attention_mask=attention_mask,
                position_ids=position_ids(attention_mask), output_hidden_states=True)
    predicting = slice(prompt_length - 1, sequences.shape[1] - 1)
    logits = out.logits[:, predicting].float() / temperature      # (batch, answer_len, vocab)
    return logits, out.hidden_states[-1][:, predicting]


def answer_logprobs(model, sequences: torch.Tensor, attention_mask: torch.Tensor,
                    prompt_length: int, temperature: float = 1.0) -> torch.Tensor:
    """log P(answer token t | everything before) under `model`: (batch, answer_len);
    chapter 05's `kl.token_logprobs`, cut to the answer."""
    return token_logprobs(model, sequences, attention_mask, temperature)[:, prompt_length - 1:]


def forward_policy_and_values(policy, value_head: ValueHead, sequences: torch.Tensor,
                              attention_mask: torch.Tensor, prompt_length: int,
                              temperature: float = 1.0
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the answer tokens and the values of the states that predict them.

    sequences, attention_mask: (batch, seq), prompts left-padded, answers from prompt_length.
    Returns logprobs, values: (batch, answer_len) each; entry t belongs to answer token t.
    Gradients flow; the caller chooses torch.no_grad.
    """
    logprobs, values, _ = policy_step_outputs(policy, value_head, sequences, attention_mask,
                                               prompt_length, temperature)
    return logprobs, values


def policy_step_outputs(policy, value_head, sequences, attention_mask, prompt_length,
                         temperature):
    """logprobs, values, entropy: (batch, answer_len) each (entropy over the vocabulary);
    values is None without a value head (the critic-free methods, critic_free_stage.py)."""
    logits, states = _answer_forward(policy, sequences, attention_mask, prompt_length,
                                     temperature)
    logp_all = torch.log_softmax(logits, dim=-1)                   # (batch, answer_len, vocab)
    logprobs = logp_all.gather(-1, sequences[:, prompt_length:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)                 # (batch, answer_len)
    return logprobs, (value_head(states) if value_head is not None else None), entropy


def answers_ended(answer_tokens: torch.Tensor, answer_mask: torch.Tensor,
                  eos_token_id: int) -> torch.Tensor:
    """Whether each answer produced its end-of-text token: (batch, answer_len) -> (batch,) bool.

    answer_mask is 1 up to and including the first end-of-text, so an answer ended exactly
    when an end-of-text token lies under its mask (its last real token is end-of-text).
    """
    return ((answer_tokens == eos_token_id) & answer_mask.bool()).any(-1)


def make_ppo_optimizer(policy, value_head: ValueHead, cfg: PPOConfig) -> torch.optim.Adam:
    """Adam over the policy and value head at cfg.lr (eps 1e-5, as in Huang et al., 2023)."""
    params = list(policy.parameters()) + list(value_head.parameters())
    return torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)


def lr_at_iteration(iteration: int, cfg: PPOConfig) -> float:
    """The learning rate of iteration `iteration` (0-based) of cfg.steps: cfg.lr throughout,
    or decayed linearly so that the last iteration uses cfg.lr / cfg.steps (Ziegler et al.,
    2019 anneal it to 0 the same way)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * (1.0 - iteration / cfg.steps)


def make_kl_controller(cfg: PPOConfig):
    """Adaptive beta towards cfg.target_kl, or fixed beta when cfg.target_kl is 0."""
    if cfg.target_kl > 0:
        return AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


def _no_timer(name: str) -> contextlib.nullcontext:
    return contextlib.nullcontext()


@dataclass
class Rollout:
    """One batch of sampled answers with everything PPO needs. Tensors over answers are
    (batch, answer_len) and 0 after each answer's end unless said otherwise.

    questions, answers: texts; sequences, attention_mask: (batch, seq) prompt + answer;
    answer_mask: 1 on answer tokens up to and including end-of-text; prompt_length: where
    answers start; logprobs, ref_logprobs: of the sampled tokens under the policy and the
    reference (same temperature); values: of the value head at sampling time; scores:
    (batch,) normalised reward-model scores with the missing-EOS penalty; ended: (batch,)
    bool; rewards: per token (KL penalty + score at the last token); advantages: whitened
    GAE advantages; returns: GAE returns (targets of the value head); kl: per-token KL
    estimate; kl_coef: the beta used for `rewards`.
    """

    questions: list[str]
    answers: list[str]
    sequences: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    prompt_length: int
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    ended: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    kl: torch.Tensor
    kl_coef: float

    def __len__(self) -> int:
        return self.sequences.shape[0]


def _question_texts(questions) -> list[str]:
    """Accept Question objects (world.py) or plain strings."""
    return [q.text if hasattr(q, "text") else str(q) for q in questions]


@torch.no_grad()
def make_rollout(policy, value_head: ValueHead, reference, reward_model, rm_tokenizer,
                 tokenizer, questions, cfg: PPOConfig, kl_coef: float,
                 timer=_no_timer, replace: dict[int, str] | None = None) -> Rollout:
    """Steps 1-6 of PPO: sample answers at cfg.temperature (plain sampling: no top-k/top-p,
    so the log-probs are those of the distribution that sampled, chapter 05), score them,
    and compute per-token rewards, advantages and returns. No gradients.

    `timer(name)` is a context manager around each part (bench/ppo_step.py times them).
    Under `accelerate launch` each process samples with random numbers of its own, and
    whitens its own advantages (distributed.py). `replace`: {row: answer} puts answers the
    policy did not write in place of some sampled ones (chapter 11's off-policy exploration;
    `generation.replace_answers`)."""
    texts = _question_texts(questions)
    policy.eval()                                  # no dropout: old and new log-probs agree
    reference.eval()
    with timer("generation"), distributed.process_rng():
        s = generation.sample(policy, tokenizer, texts, max_new_tokens=cfg.max_new_tokens,
                              temperature=cfg.temperature)
        s = generation.replace_answers(s, tokenizer, replace or {})
    device = s.sequences.device
    mask = s.answer_mask.float()                                   # (batch, answer_len)
    with timer("policy forward"), distributed.autocast():
        logprobs, values = forward_policy_and_values(policy, value_head, s.sequences,
                                                     s.attention_mask, s.prompt_length,
                                                     cfg.temperature)
    with timer("reference pass"), distributed.autocast():
        ref_logprobs = answer_logprobs(reference, s.sequences, s.attention_mask,
                                       s.prompt_length, cfg.temperature)  # (batch, answer_len)
    values = values * mask
    with timer("scoring"):
        raw = score_answers(reward_model, rm_tokenizer, texts, s.answers, normalise=True)
    ended = answers_ended(s.sequences[:, s.prompt_length:], s.answer_mask,
                          tokenizer.eos_token_id)                  # (batch,)
    scores = apply_missing_eos_penalty(raw.to(device), ended, cfg.missing_eos_penalty)
    rewards, kl = kl_penalised_rewards(scores, logprobs, ref_logprobs, mask, kl_coef,
                                       cfg.kl_estimator)           # (batch, answer_len) each
    if cfg.whiten_rewards:
        rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
    advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    advantages = masked_whiten(advantages, mask) * mask
    return Rollout(texts, s.answers, s.sequences, s.attention_mask, s.answer_mask,
                   s.prompt_length, logprobs * mask, ref_logprobs * mask, values, scores,
                   ended, rewards, advantages, returns, kl, float(kl_coef))


def minibatches(n: int, cfg, generator: torch.Generator | None = None, device=None):
    """The rows of every optimiser step of one update: cfg.ppo_epochs passes over n rows, each
    in a fresh random order (drawn from `generator`), cut into minibatches of this process's
    share of cfg.minibatch_size. Yields (epoch, minibatch of the epoch, rows)."""
    size = distributed.local_size(cfg.minibatch_size, "minibatch_size")
    for epoch in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, size):
            yield epoch, start // size, order[start:start + size]


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list
                   ) -> torch.Tensor:
    """One step on `loss`: gradients averaged over the processes (distributed.py), their
    norm clipped to GRAD_CLIP, then the optimiser's step. Returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(params)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    optimizer.step()
    return grad_norm


def ppo_update(policy, value_head: ValueHead, optimizer: torch.optim.Optimizer,
               rollout: Rollout, cfg: PPOConfig, generator: torch.Generator | None = None
               ) -> dict[str, float]:
    """Step 7: cfg.ppo_epochs passes over the rollout in random minibatches of
    cfg.minibatch_size answers; each step minimises policy_loss + vf_coef * value_loss.

    Returns the mean over minibatches of policy_loss, value_loss, clipfrac, value_clipfrac,
    approx_kl (k2 of the old policy from the current one) and entropy (nats per token).
    Dropout stays off (eval mode), so the first minibatch has ratio exactly 1.
    Under `accelerate launch` the rollout is this process's share of the batch; each step
    takes its share of a minibatch and the gradients are averaged (distributed.py).
    """
    policy.eval()
    params = list(policy.parameters()) + list(value_head.parameters())
    sums: dict[str, float] = {}
    steps = 0
    for epoch, index, rows in minibatches(len(rollout), cfg, generator, rollout.sequences.device):
        mask = rollout.answer_mask[rows].float()                   # (mb, answer_len)
        with distributed.autocast():
            logprobs, values, entropy = policy_step_outputs(
                policy, value_head, rollout.sequences[rows], rollout.attention_mask[rows],
                rollout.prompt_length, cfg.temperature)            # (mb, answer_len) each
        pg_loss, clipfrac, approx_kl = policy_loss(
            logprobs, rollout.logprobs[rows], rollout.advantages[rows], mask, cfg.cliprange)
        vf_loss, vf_clipfrac = value_loss(values, rollout.values[rows],
                                          rollout.returns[rows], mask, cfg.cliprange_value)
        loss = pg_loss + cfg.vf_coef * vf_loss
        if not torch.isfinite(loss):
            what = "policy loss" if not torch.isfinite(pg_loss) else "value loss"
            raise TrainingDiverged(
                f"The PPO {what} became {loss.item()} (epoch {epoch}, minibatch {index}, "
                f"kl_coef {rollout.kl_coef:.3g}). Lower cfg.lr (now {cfg.lr:.2g}, try "
                f"{cfg.lr / 3:.1g}) or raise cfg.kl_coef so the policy stays nearer its "
                f"reference.")
        optimizer_step(optimizer, loss, params)
        stats = {"policy_loss": pg_loss, "value_loss": vf_loss, "clipfrac": clipfrac,
                 "value_clipfrac": vf_clipfrac, "approx_kl": approx_kl,
                 "entropy": masked_mean(entropy.detach(), mask)}
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        steps += 1
    return {key: distributed.mean(total / steps) for key, total in sums.items()}


def ppo_iteration(policy, value_head: ValueHead, reference, reward_model, rm_tokenizer,
                  tokenizer, questions, optimizer: torch.optim.Optimizer, kl_controller,
                  cfg: PPOConfig, generator: torch.Generator | None = None,
                  timer=_no_timer, replace: dict[int, str] | None = None) -> dict[str, float]:
    """One PPO iteration: rollout (steps 1-6), update (step 7), adapt beta (step 8).

    Returns score (mean reward-model score, penalty included), kl (mean KL per answer,
    nats), kl_coef (the beta this rollout used), next_kl_coef, answer_length (mean tokens),
    ended (share of answers that ended) and the metrics of `ppo_update`. Warns
    "KL blow-up" when the KL per answer exceeds 3 * cfg.target_kl.
    Under `accelerate launch` each process answers its share of `questions`, and the
    metrics are means over all processes. `replace` ({row: answer}, one process only) puts
    answers the policy did not write in the batch (`make_rollout`); the KL is then measured
    on the sampled answers alone, since only they are samples of the policy.
    """
    if replace and distributed.num_processes() > 1:
        raise ValueError("off-policy answers (replace) work on one process only; run "
                         "without accelerate launch.")
    kl_coef = kl_controller.value
    rollout = make_rollout(policy, value_head, reference, reward_model, rm_tokenizer,
                           tokenizer, distributed.shard(questions), cfg, kl_coef, timer,
                           replace)
    sampled = [row for row in range(len(rollout.answers)) if row not in (replace or {})]
    kl_per_answer = distributed.mean(rollout.kl[sampled].sum(-1).mean())
    if cfg.target_kl > 0 and kl_per_answer > 3 * cfg.target_kl:
        warnings.warn(f"KL blow-up: {kl_per_answer:.2f} nats per answer, more than 3 x "
                      f"target_kl = {cfg.target_kl}. Lower cfg.lr or raise cfg.kl_coef.",
                      stacklevel=2)
    with timer("update"):
        update = ppo_update(policy, value_head, optimizer, rollout, cfg, generator)
    next_kl_coef = kl_controller.update(kl_per_answer, len(questions))
    return dict(score=distributed.mean(rollout.scores.mean()), kl=kl_per_answer,
                kl_coef=kl_coef, next_kl_coef=float(next_kl_coef),
                answer_length=distributed.mean(rollout.answer_mask.float().sum(-1).mean()),
                ended=distributed.mean(rollout.ended.float().mean()), **update)
