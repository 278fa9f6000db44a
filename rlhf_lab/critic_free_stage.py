"""Chapter 10 as stages: GRPO and RLOO (REINFORCE too) on the SFT model, with chapter 06's loop.

Taught in notebooks/10_beyond_ppo.ipynb; the advantages and losses are in critic_free.py.
One iteration draws `prompts` training questions and samples `k` answers to each (the k answers
of a question are consecutive rows), scores every answer once, turns the k scores of a question
into one advantage per answer, and takes `ppo_epochs` passes of clipped steps over minibatches,
as PPO does, but with no value head: the other answers to the same question are the baseline.

The reward is chosen by `reward`: the reward model of chapter 04 ("model"), a reward the world
verifies by itself ("verifiable": 1 when `gold.score_correct` finds the answer correct, else
0), or their sum ("both"). Where the KL to the SFT model goes is the method's: GRPO adds
kl_coef x k3 per token to the loss; RLOO and REINFORCE subtract kl_coef x the answer's k1 KL
from its score before the baseline, as PPO does (but once per answer, not per token).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch

from . import artifacts, distributed, generation, report_card
from .config import (
    Settings,
    SettingsError,
    get_device,
    seed_everything,
    setting,
    setting_of,
)
from .critic_free import (
    AGGREGATIONS,
    clipped_loss,
    grpo_advantages,
    grpo_loss,
    reinforce_advantages,
    rloo_advantages,
)
from .evaluation import curve_questions, evaluate_model
from .gold import score_correct
from .kl import sequence_kl
from .ppo import (
    PPOConfig,
    ValueHead,
    answer_logprobs,
    answers_ended,
    apply_missing_eos_penalty,
    gae,
    make_rollout,
    masked_mean,
    masked_var,
    minibatches,
    optimizer_step,
    policy_step_outputs,
)
from .ppo_stage import load_ppo_models, rl_loop, train_ppo
from .reward_model import score_answers
from .training import TrainingDiverged
from .workers import side_by_side
from .world import Question, World

REWARDS = ("model", "verifiable", "both")


@dataclass
class CriticFreeConfig(Settings):
    """What GRPO and RLOO share: chapter 06's sampling and optimiser settings, with k answers
    per question instead of a value head."""

    method: ClassVar[str] = ""

    seed: int = setting_of(PPOConfig, "seed")
    steps: int = setting(30, "iterations (each: sample k answers to each of `prompts` "
                         "questions, then optimise on them)", range=(1, 10**6), quick=10)
    prompts: int = setting(16, "training questions per iteration", range=(1, 65536), quick=8)
    k: int = setting(4, "answers sampled per question (the group)", range=(2, 256))
    minibatch_size: int = setting(16, "answers per optimiser step; must divide prompts x k",
                                  range=(1, 65536))
    ppo_epochs: int = setting_of(PPOConfig, "ppo_epochs")
    lr: float = setting(2e-5, "peak learning rate of Adam", range=(1e-8, 1.0), quick=1e-4)
    lr_schedule: str = setting_of(PPOConfig, "lr_schedule")
    temperature: float = setting(1.0, "sampling temperature of the answers (log-probs use the "
                                 "same one)", range=(1e-3, 10.0))
    max_new_tokens: int = setting_of(PPOConfig, "max_new_tokens")
    missing_eos_penalty: float = setting_of(PPOConfig, "missing_eos_penalty")
    cliprange: float = setting_of(PPOConfig, "cliprange")
    kl_coef: float = setting(0.2, "weight of the KL to the SFT model (PPO's starting beta; "
                             "GRPO's paper used 0.04 on far longer answers)",
                             range=(0.0, 100.0))
    loss_aggregation: str = setting("sequence", "how per-token losses become one: 'sequence' "
                                    "(mean per answer, then over answers), 'token' (DAPO: over "
                                    "all tokens), 'constant' (Dr. GRPO)", choices=AGGREGATIONS)
    reward: str = setting("model", "what scores an answer: 'model' (chapter 04's reward "
                          "model), 'verifiable' (1 if the world checks it correct), 'both' "
                          "(their sum)", choices=REWARDS)
    verifiable_weight: float = setting(1.0, "weight of the verifiable reward in 'both'",
                                       range=(0.0, 100.0))
    eval_questions: int = setting(366, "held-out questions graded for the curves, every kind "
                                  "included", range=(12, 100000), quick=72)
    eval_every: int = setting_of(PPOConfig, "eval_every")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.prompts * self.k) % self.minibatch_size:
            raise SettingsError(f"{type(self).__name__}.minibatch_size = {self.minibatch_size} "
                                f"must divide prompts x k = {self.prompts * self.k}.")

    @property
    def batch_size(self) -> int:
        """Answers per iteration: prompts x k."""
        return self.prompts * self.k

    @property
    def name(self) -> str:
        """The artifact and report-card row: the method, then the reward when not the model's."""
        return self.method if self.reward == "model" else f"{self.method}_{self.reward}"


@dataclass
class GRPOConfig(CriticFreeConfig):
    """Chapter 10: GRPO (Shao et al., 2024): group-normalised advantages, KL in the loss."""

    method: ClassVar[str] = "grpo"

    scale_advantages: bool = setting(True, "divide each group's advantages by its standard "
                                     "deviation (False: Dr. GRPO, Liu et al., 2025)")


@dataclass
class RLOOConfig(CriticFreeConfig):
    """Chapter 10: RLOO (Ahmadian et al., 2024): leave-one-out baseline, KL in the reward.
    baseline='batch_mean' is REINFORCE with the batch's mean score as its baseline."""

    method: ClassVar[str] = "rloo"

    baseline: str = setting("leave_one_out", "'leave_one_out': the mean score of the other "
                            "k - 1 answers to the question (RLOO); 'batch_mean': the mean score "
                            "of the whole batch (REINFORCE)", choices=("leave_one_out",
                                                                       "batch_mean"))

    @property
    def name(self) -> str:
        method = "rloo" if self.baseline == "leave_one_out" else "reinforce"
        return method if self.reward == "model" else f"{method}_{self.reward}"


# ---------------------------------------------------------------- rewards

def verifiable_rewards(questions: list[Question], answers: list[str]) -> torch.Tensor:
    """The reward the world can check by itself: 1.0 where `gold.score_correct` finds the
    answer correct (the right fact or sum and no wrong one; on an unanswerable question, an
    admission), else 0.0. It checks correctness and nothing else: not kindness, not length."""
    return torch.tensor([score_correct(q, a) for q, a in zip(questions, answers)])


def answer_scores(cfg: CriticFreeConfig, questions: list[Question], answers: list[str],
                  reward_model=None, rm_tokenizer=None) -> torch.Tensor:
    """One score per answer under cfg.reward: the reward model's normalised score, the
    verifiable reward, or the first plus cfg.verifiable_weight times the second. (batch,)"""
    parts = []
    if cfg.reward in ("model", "both"):
        if reward_model is None:
            raise ValueError(f"reward = {cfg.reward!r} needs a reward model; pass one, or use "
                             "reward = 'verifiable'.")
        parts.append(score_answers(reward_model, rm_tokenizer, [q.text for q in questions],
                                   answers, normalise=True).float())
    if cfg.reward in ("verifiable", "both"):
        weight = cfg.verifiable_weight if cfg.reward == "both" else 1.0
        parts.append(weight * verifiable_rewards(questions, answers))
    return sum(parts)


# ---------------------------------------------------------------- one batch of groups

@dataclass
class GroupRollout:
    """k answers to each question, with one advantage per answer. Tensors over answer tokens
    are (batch, answer_len), 0 after each answer's end; batch = questions x k, the k answers
    of a question in consecutive rows.

    questions: the Question of every row; answers: texts; logprobs, ref_logprobs: of the
    sampled tokens under the policy and the SFT model; scores: (batch,) reward with the
    missing-EOS penalty; kl: (batch,) k1 KL of each answer from the SFT model; advantages:
    (batch,); ended: (batch,) bool."""

    questions: list
    answers: list[str]
    sequences: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    prompt_length: int
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    scores: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor
    ended: torch.Tensor

    def __len__(self) -> int:
        return self.sequences.shape[0]


def advantages_for(cfg: CriticFreeConfig, scores: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """One advantage per answer, by method: GRPO normalises the scores within each group (its
    KL goes in the loss); RLOO and REINFORCE first subtract kl_coef x KL from each score (the
    KL in the reward), then the leave-one-out or the batch-mean baseline."""
    if isinstance(cfg, GRPOConfig):
        return grpo_advantages(scores, cfg.k, scale=cfg.scale_advantages)
    penalised = scores - cfg.kl_coef * kl
    if getattr(cfg, "baseline", "leave_one_out") == "batch_mean":
        return reinforce_advantages(penalised)
    return rloo_advantages(penalised, cfg.k)


@torch.no_grad()
def group_rollout(policy, reference, tokenizer, questions: list[Question], cfg: CriticFreeConfig,
                  reward_model=None, rm_tokenizer=None) -> GroupRollout:
    """Sample cfg.k answers to each question at cfg.temperature (plain sampling), score each
    once, and compute log-probs, KL from the reference and advantages. No gradients.
    Under `accelerate launch` each process samples its own questions' groups."""
    rows = [q for q in questions for _ in range(cfg.k)]           # k consecutive answers each
    policy.eval()
    reference.eval()
    with distributed.process_rng():
        s = generation.sample(policy, tokenizer, [q.text for q in rows],
                              max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
    mask = s.answer_mask.float()                                   # (batch, answer_len)
    with distributed.autocast():
        logprobs = answer_logprobs(policy, s.sequences, s.attention_mask, s.prompt_length,
                                   cfg.temperature) * mask
        ref_logprobs = answer_logprobs(reference, s.sequences, s.attention_mask,
                                       s.prompt_length, cfg.temperature) * mask
    ended = answers_ended(s.sequences[:, s.prompt_length:], s.answer_mask,
                          tokenizer.eos_token_id)                  # (batch,)
    raw = answer_scores(cfg, rows, s.answers, reward_model, rm_tokenizer).to(mask.device)
    scores = apply_missing_eos_penalty(raw, ended, cfg.missing_eos_penalty)
    _, kl = sequence_kl(logprobs, ref_logprobs, mask, "k1")        # (batch,)
    return GroupRollout(rows, s.answers, s.sequences, s.attention_mask, s.answer_mask,
                        s.prompt_length, logprobs, ref_logprobs, scores, kl,
                        advantages_for(cfg, scores, kl), ended)


def critic_free_update(policy, optimizer: torch.optim.Optimizer, rollout: GroupRollout,
                       cfg: CriticFreeConfig, generator: torch.Generator | None = None
                       ) -> dict[str, float]:
    """cfg.ppo_epochs passes over the rollout in random minibatches of cfg.minibatch_size
    answers, each step minimising GRPO's loss (clipped surrogate + kl_coef x k3 in the loss)
    or RLOO's (the clipped surrogate alone; its KL is already in the advantages).

    Returns the mean over steps of loss, grad_norm (before clipping), clipfrac (share of
    tokens whose ratio left 1 +- cliprange), approx_kl (k2 of the old policy from the new),
    entropy (nats per token) and, for GRPO, kl_in_loss (mean k3 per token)."""
    policy.eval()                                  # no dropout: the first ratio is exactly 1
    params = list(policy.parameters())
    sums: dict[str, float] = {}
    steps = 0
    for epoch, index, rows in minibatches(len(rollout), cfg, generator, rollout.sequences.device):
        mask = rollout.answer_mask[rows].float()                   # (mb, answer_len)
        with distributed.autocast():
            logprobs, _, entropy = policy_step_outputs(
                policy, None, rollout.sequences[rows], rollout.attention_mask[rows],
                rollout.prompt_length, cfg.temperature)            # (mb, answer_len) each
        old, advantages = rollout.logprobs[rows], rollout.advantages[rows]
        stats = {}
        if isinstance(cfg, GRPOConfig):
            loss, stats["kl_in_loss"] = grpo_loss(
                logprobs, old, rollout.ref_logprobs[rows], advantages, mask, cfg.cliprange,
                cfg.kl_coef, cfg.loss_aggregation)
        else:
            loss = clipped_loss(logprobs, old, advantages, mask, cfg.cliprange,
                                cfg.loss_aggregation)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"The {type(cfg).method.upper()} loss became {loss.item()} (epoch {epoch}, "
                f"minibatch {index}). Lower cfg.lr (now {cfg.lr:.2g}, try {cfg.lr / 3:.1g}) "
                f"or raise cfg.kl_coef (now {cfg.kl_coef:g}).")
        grad_norm = optimizer_step(optimizer, loss, params)
        with torch.no_grad():
            log_ratio = logprobs.detach() - old
            stats.update(loss=loss.detach(), grad_norm=grad_norm,
                         clipfrac=masked_mean(((log_ratio.exp() - 1).abs()
                                               > cfg.cliprange).float(), mask),
                         approx_kl=masked_mean(0.5 * log_ratio ** 2, mask),
                         entropy=masked_mean(entropy.detach(), mask))
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        steps += 1
    return {key: distributed.mean(total / steps) for key, total in sums.items()}


def critic_free_iteration(policy, reference, reward_model, rm_tokenizer, tokenizer,
                          questions: list[Question], optimizer: torch.optim.Optimizer,
                          cfg: CriticFreeConfig, generator: torch.Generator | None = None
                          ) -> dict[str, float]:
    """One iteration: `group_rollout` on this process's questions, then `critic_free_update`.

    Returns score (mean score, penalty included), correct (share the world checks correct),
    kl (mean k1 KL per answer, nats), answer_length (mean tokens), ended (share that ended),
    flat_groups (share of questions whose k scores are all equal: their advantages are 0, so
    they teach nothing) and the metrics of the update; means over all processes."""
    rollout = group_rollout(policy, reference, tokenizer, distributed.shard(questions), cfg,
                            reward_model, rm_tokenizer)
    update = critic_free_update(policy, optimizer, rollout, cfg, generator)
    groups = rollout.scores.view(-1, cfg.k)
    flat = (groups.max(-1).values - groups.min(-1).values) < 1e-6
    return dict(score=distributed.mean(rollout.scores.mean()),
                correct=distributed.mean(verifiable_rewards(rollout.questions,
                                                            rollout.answers).mean()),
                kl=distributed.mean(rollout.kl.mean()),
                answer_length=distributed.mean(rollout.answer_mask.float().sum(-1).mean()),
                ended=distributed.mean(rollout.ended.float().mean()),
                flat_groups=distributed.mean(flat.float().mean()), **update)


def train_critic_free(policy, reference, reward_model, rm_tokenizer, tokenizer, train_questions,
                      eval_questions, cfg: CriticFreeConfig, live_plot=None,
                      progress: bool = True, tick=None
                      ) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """cfg.steps iterations of `critic_free_iteration` in chapter 06's loop (`rl_loop`): the
    same learning-rate schedule, question draws and held-out measurements as PPO. Returns the
    metrics, one row per iteration, and the graded held-out answers by iteration."""
    seed_everything(cfg.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    generator = torch.Generator().manual_seed(cfg.seed)

    def iteration(batch: list) -> dict:
        return critic_free_iteration(policy, reference, reward_model, rm_tokenizer, tokenizer,
                                     batch, optimizer, cfg, generator)
    return rl_loop(policy, tokenizer, reference, reward_model, rm_tokenizer, train_questions,
                   eval_questions, cfg, optimizer, iteration, batch_size=cfg.prompts,
                   desc=cfg.name.upper(), live_plot=live_plot, progress=progress, tick=tick)


# ---------------------------------------------------------------- the stages

@dataclass
class CriticFreeResult:
    """What chapter 10 shows of one run: settings, the trained policy, its reference, the
    metrics by iteration, the report card's evaluation of the policy, the seconds training
    took and the name of its artifact and report-card row."""

    cfg: CriticFreeConfig
    policy: object
    reference: object
    tokenizer: object
    history: pd.DataFrame
    after: object
    seconds: float
    name: str


def run_critic_free(cfg: CriticFreeConfig, save: bool = True, live_plot=None,
                    build_missing: bool = False, progress: bool = True,
                    start_from=None, name: str | None = None, tick=None) -> CriticFreeResult:
    """Chapter 10, one run: load the SFT model (or `start_from`, any causal LM) and the reward
    model, train with cfg's method and reward, measure the policy with the report card's
    evaluation, and save it as artifact `name` (default cfg.name: 'grpo', 'rloo',
    'grpo_verifiable', ...) with metrics.csv, and its row on the report card (`save_run`).
    `tick()`, if given, is called after every iteration."""
    name = name or cfg.name
    seed_everything(cfg.seed)
    policy, reference, tokenizer, reward_model, rm_tokenizer = load_ppo_models(build_missing,
                                                                                start_from)
    start = time.perf_counter()
    history, _ = train_critic_free(policy, reference, reward_model, rm_tokenizer, tokenizer,
                                   World().split("train"), curve_questions(cfg.eval_questions),
                                   cfg, live_plot, progress, tick)
    seconds = time.perf_counter() - start
    after = evaluate_model(policy, tokenizer, name, reference=reference,
                           reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                           progress=progress)
    result = CriticFreeResult(cfg, policy, reference, tokenizer, history, after, seconds, name)
    if save:
        save_run(result)
    return result


def save_run(run: CriticFreeResult) -> None:
    """Save a critic-free run's policy as artifact run.name (with metrics.csv) and put its
    evaluation on the report card."""
    cfg, summary = run.cfg, run.after.summary()
    artifacts.save_model(
        run.policy, run.tokenizer, run.name,
        {"config": {**cfg.__dict__, "method": cfg.method}, "gold_after": summary["gold"],
         "final_kl": summary["kl"], "seconds": run.seconds},
        write_more=lambda folder: run.history.to_csv(folder / "metrics.csv", index=False))
    report_card.record(run.after, notebook="10_beyond_ppo",
                       setting=f"{cfg.name}: {cfg.steps} iterations x {cfg.prompts} "
                               f"questions x {cfg.k} answers, lr {cfg.lr:g} "
                               f"{cfg.lr_schedule}, kl_coef {cfg.kl_coef:g}, reward "
                               f"{cfg.reward}")


def _unsaved_run(cfg: CriticFreeConfig, name: str, tick=None) -> CriticFreeResult:
    return run_critic_free(cfg, save=False, progress=False, name=name, tick=tick)


def run_side_by_side(runs: dict[str, CriticFreeConfig], save: bool = True,
                     processes: int | None = None) -> dict[str, CriticFreeResult]:
    """Independent critic-free runs, {name: cfg}, side by side, one process each on a CPU
    (`workers.side_by_side`): chapter 10's three hard GRPO runs, which differ only in the
    reward. Each run seeds itself, so it gives the numbers `run_critic_free` gives for it
    here. The policies are saved and recorded here, one after the other (`save_run`), so
    no two processes write the report card at once."""
    done = side_by_side(_unsaved_run, [(cfg, name) for name, cfg in runs.items()],
                        steps_per_job=max(cfg.steps for cfg in runs.values()),
                        desc=f"{len(runs)} runs, side by side", processes=processes)
    results = dict(zip(runs, done))
    if save:
        for result in results.values():
            save_run(result)
    return results


def run_grpo(cfg: GRPOConfig | None = None, save: bool = True, live_plot=None,
             build_missing: bool = False, progress: bool = True,
             start_from=None) -> CriticFreeResult:
    """`python -m rlhf_lab grpo`: chapter 10's GRPO run (`run_critic_free`)."""
    return run_critic_free(cfg or GRPOConfig.for_mode(), save, live_plot, build_missing,
                           progress, start_from)


def run_rloo(cfg: RLOOConfig | None = None, save: bool = True, live_plot=None,
             build_missing: bool = False, progress: bool = True,
             start_from=None) -> CriticFreeResult:
    """`python -m rlhf_lab rloo`: chapter 10's RLOO run (`run_critic_free`); with
    --baseline batch_mean, REINFORCE."""
    return run_critic_free(cfg or RLOOConfig.for_mode(), save, live_plot, build_missing,
                           progress, start_from)


# ---------------------------------------------------------------- PPO beside them

@dataclass
class MatchedPPO:
    """Chapter 06's PPO run for chapter 10's budget: the policy, its value head (kept for
    `advantage_spread`), the models it used, the metrics by iteration, the report card's
    evaluation and the seconds training took."""

    cfg: PPOConfig
    policy: object
    value_head: ValueHead
    reference: object
    tokenizer: object
    reward_model: object
    rm_tokenizer: object
    history: pd.DataFrame
    after: object
    seconds: float


def run_matched_ppo(cfg: PPOConfig, name: str = "ppo_short", save: bool = True, live_plot=None,
                    build_missing: bool = False, progress: bool = True, start_from=None,
                    offpolicy=None, notebook: str = "10_beyond_ppo",
                    setting: str | None = None, reward=None) -> MatchedPPO:
    """PPO with chapter 06's settings but chapter 10's budget (cfg.steps x cfg.batch_size
    answers, the same as the critic-free runs), evaluated by the report card and recorded as
    row `name`; no artifact is written (chapter 06's 'ppo' stays the course's PPO policy).
    Chapter 11 starts it from another SFT model (`start_from`, a model folder; the KL is then
    from that model) and mixes in off-policy answers (`offpolicy`, see `train_ppo`).
    Chapters 12 and 13 train on another reward model, `reward` = (model, tokenizer), e.g. one
    trained on thumbs; the report card still grades with chapter 04's, so rows compare."""
    seed_everything(cfg.seed)
    policy, reference, tokenizer, reward_model, rm_tokenizer = load_ppo_models(build_missing,
                                                                                start_from)
    value_head = ValueHead(policy.config.hidden_size).to(get_device())
    start = time.perf_counter()
    trained_on = reward or (reward_model, rm_tokenizer)
    history, _ = train_ppo(policy, value_head, reference, *trained_on, tokenizer,
                           World().split("train"), curve_questions(cfg.eval_questions), cfg,
                           live_plot, progress, offpolicy)
    seconds = time.perf_counter() - start
    after = evaluate_model(policy, tokenizer, name, reference=reference,
                           reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                           progress=progress)
    if save:
        report_card.record(after, notebook=notebook,
                           setting=setting or f"PPO as chapter 06 for chapter 10's budget: "
                                              f"{cfg.steps} iterations x {cfg.batch_size} answers")
    return MatchedPPO(cfg, policy, value_head, reference, tokenizer, reward_model, rm_tokenizer,
                      history, after, seconds)


def baseline_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, k: int,
                        lam: float) -> dict[str, torch.Tensor]:
    """Per-token advantages of one batch under five baselines, from per-token rewards, the value
    head's values and the mask, all (batch, seq) with the k answers of a question in
    consecutive rows (gamma 1). G_t is the return from token t to the end of the answer.

    none: G_t; batch mean (REINFORCE): G_t - the batch's mean G_0; RLOO: G_t - the mean G_0 of
    the other k - 1 answers to the question; value head: G_t - V(s_t) (Monte Carlo); GAE with
    `lam`, as PPO computes it (ppo.gae). Each (batch, seq), 0 after the answer's end."""
    mask = mask.float()
    returns, _ = gae(rewards, torch.zeros_like(values), mask, 1.0, 1.0)   # G_t
    total = returns[:, 0]                                          # (batch,) G_0, whole answer
    groups = total.view(-1, k)
    others = ((groups.sum(-1, keepdim=True) - groups) / (k - 1)).reshape(-1)
    gae_advantages, _ = gae(rewards, values, mask, 1.0, lam)
    return {
        "none: G_t": returns,
        "batch mean (REINFORCE)": (returns - total.mean()) * mask,
        "other answers, same question (RLOO)": (returns - others[:, None]) * mask,
        "value head: G_t - V(s_t)": (returns - values) * mask,
        f"value head, GAE (lambda {lam:g})": gae_advantages,
    }


@torch.no_grad()
def advantage_spread(ppo: MatchedPPO, questions: list[Question], k: int = 4,
                     seed: int = 0) -> pd.DataFrame:
    """What the value head buys: the size of each token's advantage under the five baselines
    of `baseline_advantages`, on the same k answers to each question sampled from the PPO
    policy, with PPO's per-token rewards (KL penalty at its last beta, the score at the last
    token) and its value head's values.

    Returns, per baseline, the root mean square (rms: the smaller, the less noise in the
    policy gradient), the mean over tokens, the rms relative to no baseline, and the share of
    the returns' variance the baseline explains, 1 - Var(advantage) / Var(G_t) (for the value
    head: the "explained variance" PPO implementations log; a constant baseline explains 0)."""
    seed_everything(seed)
    rows = [q for q in questions for _ in range(k)]
    kl_coef = float(ppo.history.next_kl_coef.dropna().iloc[-1])
    rollout = make_rollout(ppo.policy, ppo.value_head, ppo.reference, ppo.reward_model,
                           ppo.rm_tokenizer, ppo.tokenizer, rows, ppo.cfg, kl_coef)
    mask = rollout.answer_mask.float()
    baselines = baseline_advantages(rollout.rewards, rollout.values, mask, k, ppo.cfg.lam)
    spread_of_returns = masked_var(baselines["none: G_t"], mask)
    out = []
    for name, advantages in baselines.items():
        out.append({"baseline": name,
                    "rms": float(masked_mean(advantages ** 2, mask).sqrt()),
                    "mean": float(masked_mean(advantages, mask)),
                    "explains": float(1 - masked_var(advantages, mask) / spread_of_returns)})
    frame = pd.DataFrame(out).set_index("baseline")
    frame.insert(2, "rms vs none", frame["rms"] / frame["rms"].iloc[0])
    return frame
