"""Chapter 06 as a stage: the learning-rate schedule, measuring without disturbing training,
the live figure's gaps, and a seeded quick-mode PPO run that must beat the SFT model on the
gold score, which PPO never sees, while staying near it in KL."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lab import artifacts
from rlhf_lab.plots import LivePlot
from rlhf_lab.ppo import PPOConfig, lr_at_iteration


def test_linear_schedule_decays_to_lr_over_steps_and_constant_stays():
    cfg = PPOConfig(steps=4, lr=1e-4)
    # 1e-4 * (1 - i/4) for i = 0..3
    assert [lr_at_iteration(i, cfg) for i in range(4)] == pytest.approx(
        [1e-4, 0.75e-4, 0.5e-4, 0.25e-4])
    constant = PPOConfig(steps=4, lr=1e-4, lr_schedule="constant")
    assert [lr_at_iteration(i, constant) for i in range(4)] == [1e-4] * 4


def test_live_plot_draws_a_sparse_column_as_a_line_through_its_measurements():
    history = pd.DataFrame({"iteration": [0, 1, 2, 3, 4],
                            "gold": [1.0, np.nan, 2.0, np.nan, 3.0]})
    fig = LivePlot({"gold": ["gold"]}, x="iteration").draw(history)
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [0, 2, 4]
    assert list(line.get_ydata()) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("live, expected", [("1", [1, 10, 20, 25]), ("0", [25])])
def test_the_live_figure_redraws_at_measurements_and_at_the_end_not_every_iteration(
        monkeypatch, live, expected):
    from rlhf_lab import ppo_stage
    monkeypatch.setenv("RLHF_LAB_LIVE_PLOTS", live)
    graded = pd.DataFrame({"total": [1.0, 2.0], "reward": [0.0, 0.5], "kl": [0.1, 0.3]})
    monkeypatch.setattr(ppo_stage, "evaluate_with_reward", lambda *args, **kwargs: graded)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    drawn = []
    history, measured = ppo_stage.rl_loop(
        None, None, None, None, None, list(range(100)), [], PPOConfig(steps=25, eval_every=10),
        optimizer, lambda batch: {"score": float(len(batch))}, batch_size=4, desc="test",
        live_plot=lambda h: drawn.append(int(h.iteration.iloc[-1])), progress=False)
    # instant iterations: the 5-second clock never fires, so only the first iteration, the
    # measurements and the end draw; with live plots off (a headless run), only the end
    assert drawn == expected
    assert sorted(measured) == [0, 10, 20, 25] and len(history) == 26
    assert history.gold.dropna().tolist() == [1.5] * 4 and history.score.iloc[1] == 4.0


# --- a seeded quick-mode run on the session's quick SFT model and reward model -------------

@pytest.fixture(scope="module")
def ppo_run(reward_trained):
    from rlhf_lab.ppo_stage import run_ppo
    return run_ppo(PPOConfig.for_mode(quick=True), progress=False)


def test_quick_ppo_raises_the_gold_score_over_sft_at_bounded_kl(ppo_run):
    # Quick mode: 40 iterations of 32 answers. Measured with seed 0 on the report card's quick
    # questions (144 answers): gold 2.17 -> 2.38, reward +0.82, KL 0.93 nats per answer; with
    # 60 iterations 2.36, +0.88 and 0.93, no measurable difference, so quick mode stops at 40.
    # The earlier quick recipe (pretraining 600 steps at 3e-3, SFT 150 at 1e-3, reward model
    # 120 at 1e-4) gave gold 1.95 -> 2.03 (seeds 1-3: +0.16, +0.11, +0.20), reward +0.65 to
    # +0.71, KL about 0.9; so the margin is +0.05 and the KL bound 3 nats.
    before, after = ppo_run.before.answers.total.mean(), ppo_run.after.answers.total.mean()
    history = ppo_run.history
    assert after > before + 0.05, (before, after)
    assert ppo_run.after.answers.reward.mean() > ppo_run.before.answers.reward.mean() + 0.3, "reward did not rise"
    assert ppo_run.after.answers.kl.mean() < 3.0, ppo_run.after.answers.kl.mean()      # nats per answer
    assert history.kl.iloc[1:].max() < 6.0, history.kl.max()          # rollouts too
    assert history.kl.iloc[1] < 1e-4                # first rollout: policy == reference
    assert history.gold.notna().sum() == 1 + math.ceil(40 / 10)   # iteration 0 and every 10
    assert torch.isfinite(torch.tensor(history.drop(columns=["gold", "gold_low", "gold_high", "heldout_reward",
                                                             "heldout_kl"])
                                       .iloc[1:].to_numpy(dtype=float))).all()


def test_ppo_artifact_holds_the_policy_and_its_metrics(ppo_run):
    folder = artifacts.require("ppo")
    metrics = pd.read_csv(folder / "metrics.csv")
    assert list(metrics.columns) == list(ppo_run.history.columns)
    assert len(metrics) == ppo_run.cfg.steps + 1
    meta = artifacts.read_metadata("ppo")
    assert meta["gold_after"] == pytest.approx(ppo_run.after.answers.total.mean())
    policy, _ = artifacts.load_model("ppo")
    for name, saved in policy.state_dict().items():
        torch.testing.assert_close(saved, ppo_run.policy.state_dict()[name])


def test_the_default_pipeline_admits_where_no_answer_exists_and_rarely_hedges(ppo_run):
    # The demonstrations hold admissions to unanswerable questions (issue 16). Measured with the
    # exact probability of opening with an admission (teacher forcing; quick mode's 24 sampled
    # answers to unanswerable questions are too few), seed 0: quick SFT 0.049 where no answer
    # exists and 0.032 where one does, quick PPO 0.048 and 0.033 (after 40 iterations; 0.039 and
    # 0.028 after 60), against < 1e-4 for the same SFT without the admissions. Full mode (the
    # note of issue 16): sampled admissions 84 % after SFT. Quick mode's small model separates
    # the two kinds of question far less, and by how much depends on the draw: the earlier quick
    # recipe (pretraining 600 steps at 3e-3, SFT 150 at 1e-3) gave SFT 0.058 and 0.025; seven
    # other recipes gave SFT ratios of 1.35 to 2.34. So the test asks for the direction, not a
    # margin.
    from rlhf_lab.evaluation import evaluation_questions
    from rlhf_lab.exploration import admission_logprob
    from rlhf_lab.sft import SFTConfig, demonstrations_with_admissions, run_sft

    questions = evaluation_questions()
    unanswerable = [q for q in questions if not q.answerable]
    answerable = [q for q in questions if q.answerable]
    tok = ppo_run.tokenizer

    def p_admit(model, qs):
        return admission_logprob(model, tok, qs).exp().mean().item()

    without = run_sft(SFTConfig.for_mode(quick=True), save=False, progress=False,
                      demonstrations=demonstrations_with_admissions(0), name="sft_no_admissions")
    assert p_admit(without.model, unanswerable) < 1e-4
    for model in (ppo_run.reference, ppo_run.policy):              # the SFT model, then PPO's
        yes, hedge = p_admit(model, unanswerable), p_admit(model, answerable)
        assert yes > 0.03, yes
        assert hedge < 0.04 and yes > hedge, (yes, hedge)
    assert ppo_run.after.summary()["hedges_answerable"] <= 0.05
