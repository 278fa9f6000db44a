"""Reward model: pooling under any padding, the Bradley-Terry loss and its tie rule, the noise
ceiling by hand, where the ratings come from, and a seeded test that training beats chance."""
import json
import math

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhf_lab import feedback, preferences
from rlhf_lab import reward_model as rm
from rlhf_lab.config import DATA_DIR
from rlhf_lab.raters import SimulatedRater
from rlhf_lab.reward_model import RewardConfig
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World

PROMPT, ANSWER = "what colour is a frog?", "A frog is green."


@pytest.fixture(scope="module")
def tiny():
    """A tokenizer and an untrained GPT2ForSequenceClassification with a scalar head."""
    tok = train_tokenizer([f"User: {PROMPT}\nAssistant: {ANSWER}"] * 30, 300)
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        num_labels=1, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(config).eval(), tok


@pytest.mark.parametrize("side", ["left", "right"])
def test_reward_is_read_at_the_last_real_token_whatever_the_padding(tiny, side, monkeypatch):
    model, tok = tiny
    monkeypatch.setattr(tok, "padding_side", side)
    alone = rm.reward_inputs(tok, [PROMPT], [ANSWER])
    batch = rm.reward_inputs(tok, [PROMPT, "how many legs does a frog have?"],
                             [ANSWER, "A frog has four legs, and it can jump very far indeed."])
    assert (batch["attention_mask"][0] == 0).any()                  # the short row is padded
    assert batch["input_ids"][0, -1 if side == "left" else alone["input_ids"].shape[1] - 1] \
        == tok.eos_token_id                                         # every row ends with EOS
    with torch.no_grad():
        r_alone = rm.rewards(model, **alone)
        r_batch = rm.rewards(model, **batch)
    assert r_batch.shape == (2,)
    assert torch.allclose(r_batch[0], r_alone[0], atol=1e-5), (side, r_batch, r_alone)


def test_score_answers_batches_and_normalises(tiny):
    model, tok = tiny
    prompts, answers = [PROMPT] * 5, [ANSWER, "Green.", "Ugh. A frog is blue.", "No idea.", "Hi"]
    raw = rm.score_answers(model, tok, prompts, answers, batch_size=2, normalise=False)
    one_batch = rm.score_answers(model, tok, prompts, answers, normalise=False)
    assert raw.shape == (5,) and torch.allclose(raw, one_batch, atol=1e-5)
    assert torch.equal(rm.score_answers(model, tok, prompts, answers), one_batch)  # none stored
    rm.set_normalisation(model, *rm.reward_stats(model, tok, prompts, answers))
    r = rm.score_answers(model, tok, prompts, answers)
    assert abs(r.mean().item()) < 1e-5 and abs(r.std().item() - 1) < 1e-5
    del model.config.reward_mean, model.config.reward_std


def test_preference_loss_matches_hand_computed_values():
    r_a, r_b = torch.tensor([1.0]), torch.tensor([0.0])             # r_a - r_b = 1
    a_wins = rm.preference_loss(r_a, r_b, torch.tensor([1.0]))
    b_wins = rm.preference_loss(r_a, r_b, torch.tensor([0.0]))
    tie = rm.preference_loss(r_a, r_b, torch.tensor([0.5]))
    assert a_wins.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)    # 0.3133
    assert a_wins.item() == pytest.approx(0.3133, abs=1e-4)
    assert b_wins.item() == pytest.approx(1.3133, abs=1e-4)         # log(1 + e^1)
    assert tie.item() == pytest.approx(0.8133, abs=1e-4)            # half a win each way
    assert tie.item() == pytest.approx((a_wins.item() + b_wins.item()) / 2, abs=1e-6)


def test_preference_loss_is_minus_log_sigmoid_of_the_chosen_margin():
    g = torch.Generator().manual_seed(0)
    r_a, r_b = torch.randn(50, generator=g) * 3, torch.randn(50, generator=g) * 3
    target = torch.randint(0, 2, (50,), generator=g).float()
    chosen_margin = torch.where(target == 1, r_a - r_b, r_b - r_a)
    explicit = -torch.log(torch.sigmoid(chosen_margin)).mean()
    assert rm.preference_loss(r_a, r_b, target).item() == pytest.approx(explicit.item(), rel=1e-5)


class KnownScores(SimulatedRater):
    """A rater whose perceived scores are given by hand, not by the gold scorer."""

    def __init__(self, scores: dict, temperature: float):
        super().__init__("known", temperature=temperature)
        self.scores = scores

    def perceived_score(self, prompt, answer):
        return self.scores[answer]


def test_noise_ceiling_by_hand():
    scores = {"good": 4.0, "fine": 3.0, "meh": 2.0, "okay": 2.5}
    examples = pd.DataFrame([
        {"prompt": "q1", "answer_a": "good", "answer_b": "fine", "target": 0.0},   # d = 1
        {"prompt": "q2", "answer_a": "meh", "answer_b": "okay", "target": 0.0},    # d = -0.5
        {"prompt": "q3", "answer_a": "good", "answer_b": "meh", "target": 0.5}])   # a tie: left out
    # temperature 0.5: p = sigmoid(2) = 0.8808 and sigmoid(-1) = 0.2689, so max(p, 1-p)
    # is 0.8808 and 0.7311; the ceiling is their mean, 0.8059, whatever the rater chose.
    ceiling = rm.noise_ceiling(examples, KnownScores(scores, temperature=0.5))
    assert ceiling == pytest.approx((0.880797 + 0.731059) / 2, abs=1e-5)
    assert rm.noise_ceiling(examples, KnownScores(scores, temperature=0.0)) == 1.0
    # Each pair judged by its own rater: the second by a noisier one (temperature 1):
    # sigmoid(-0.5) = 0.3775, so max(p, 1-p) = 0.6225 and the ceiling is (0.8808 + 0.6225) / 2.
    examples["rater"] = ["careful", "hasty", "careful"]
    raters = {"careful": KnownScores(scores, 0.5), "hasty": KnownScores(scores, 1.0)}
    assert rm.noise_ceiling(examples, raters) == pytest.approx((0.880797 + 0.622459) / 2, abs=1e-5)


def test_ceiling_raters_match_who_rated():
    examples = pd.DataFrame({"rater": ["sample", "simulated", "me"]})
    raters = rm.ceiling_raters(examples, RewardConfig.for_mode(rater_temperature=2.0))
    assert {name: r.temperature for name, r in raters.items()} == {
        "sample": 0.5, "simulated": 2.0, "me": 2.0}    # a person's noise: the filling rater's


def test_ratings_become_examples_with_soft_targets():
    def record(choice, answer_a="A frog is green.", kind="pair"):
        if kind == "single":
            return feedback.single_record("me", PROMPT, answer_a, choice, "sft")
        return feedback.pair_record("me", PROMPT, answer_a, "Ugh.", choice, "sft")
    records = [record("a"), record("b", "Green."), record("tie", "Frogs are green."),
               record("skip", "Blue."), record("up", kind="single")]
    examples = preferences.ratings_to_examples(records)
    assert list(examples.target) == [1.0, 0.0, 0.5]
    assert list(examples.columns) == ["prompt", "answer_a", "answer_b", "target", "rater"]
    frame = feedback.ratings_frame([])
    assert preferences.ratings_to_examples(frame).empty


def test_own_ratings_first_then_the_sample_then_the_simulated_rater(monkeypatch, tmp_path):
    questions = [q.text for q in World().split("train")[:40]]
    writer_own = feedback.RatingsWriter(tmp_path, "me")
    writer_sample = feedback.RatingsWriter(tmp_path, "sample")
    for q in questions[:3]:
        writer_own.append(feedback.pair_record("me", q, "Yes.", "No.", "a", "sft"))
    for q in questions[3:33]:
        writer_sample.append(feedback.pair_record("sample", q, "Yes.", "No.", "b", "scripted"))
    pairs = [{"prompt": q, "answer_a": "I do not know.", "answer_b": "Ugh.", "model": "sft"}
             for q in questions[33:]]                                 # 7 pairs nobody rated
    monkeypatch.setattr(feedback, "FEEDBACK_DIR", tmp_path)
    monkeypatch.setattr(preferences, "load_comparisons", lambda: pairs)

    def counts(ratings):
        records, report = preferences.training_ratings(RewardConfig.for_mode(ratings=ratings))
        assert report.set_index("rater").ratings["total"] == len(records) == ratings
        return [r["rater"] for r in records]
    assert counts(20) == ["me"] * 3 + ["sample"] * 17                 # the sample is capped
    assert counts(40) == ["me"] * 3 + ["sample"] * 30 + ["simulated"] * 7
    with pytest.raises(ValueError, match="Or lower RewardConfig.ratings"):
        counts(41)                                                    # no pairs left to rate
    _, report = preferences.training_ratings(RewardConfig.for_mode(ratings=40))
    sources = report.set_index("rater").source
    assert (sources["me"], sources["sample"], sources["simulated"]) == (
        "human", "shipped sample (a simulated rater)", "simulated")   # the sample is not people


def test_a_moved_ratings_folder_still_trains_with_the_shipped_sample(monkeypatch, tmp_path):
    questions = [q.text for q in World().split("train")[:3]]
    writer = feedback.RatingsWriter(tmp_path, "me")                  # RLHF_LAB_FEEDBACK=tmp_path
    for q in questions:
        writer.append(feedback.pair_record("me", q, "Yes.", "No.", "a", "sft"))
    monkeypatch.setattr(feedback, "FEEDBACK_DIR", tmp_path)
    monkeypatch.setattr(preferences, "load_comparisons", lambda: [])
    assert preferences.sample_path() == DATA_DIR / "feedback" / "sample.jsonl"
    records, _ = preferences.training_ratings(RewardConfig.for_mode(ratings=20))
    assert [r["rater"] for r in records] == ["me"] * 3 + ["sample"] * 17
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.jsonl"]   # nothing copied there


# --- a seeded training run in quick mode -------------------------------------------------

@pytest.fixture(scope="module")
def trained(reward_trained):
    return reward_trained


def test_reward_model_beats_chance_and_nears_the_noise_ceiling(trained):
    # Measured with seed 0 in quick mode (300 sample ratings, 45 held out, 34 of them not
    # ties): accuracy 0.794, noise ceiling 0.898, chance 0.5; about 11 s of training on one
    # CPU thread. Seeds 1 and 2 gave 0.722 / 0.875 and 0.750 / 0.879, so the margins leave room.
    assert trained.chance == 0.5
    assert trained.accuracy > 0.65, trained.accuracy
    assert trained.accuracy > 0.8 * trained.noise_ceiling, (trained.accuracy, trained.noise_ceiling)
    history = trained.history
    assert list(history.columns) == ["step", "train_loss", "train_accuracy", "val_loss",
                                     "val_accuracy", "lr"]
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]


def test_saved_reward_model_reloads_with_its_normalisation(trained):
    from rlhf_lab import artifacts

    model, tok = rm.load_reward_model()
    val = trained.val
    for side in ("left", "right"):
        tok.padding_side = side
        before = rm.score_answers(trained.model, trained.tokenizer, list(val.prompt),
                                  list(val.answer_a))
        after = rm.score_answers(model, tok, list(val.prompt), list(val.answer_a))
        assert torch.allclose(before, after, atol=1e-5)
    tok.padding_side = "left"
    assert model.config.reward_mean == pytest.approx(trained.reward_mean)
    assert model.config.reward_std == pytest.approx(trained.reward_std)
    prompts, answers = rm.sft_answers(trained.cfg.normalise_samples, trained.cfg.seed)
    r = rm.score_answers(model, tok, prompts, answers)        # normalised on these very answers
    assert abs(r.mean().item()) < 1e-4 and abs(r.std().item() - 1) < 1e-4
    meta = json.loads((artifacts.require("reward_model") / "rlhf_lab.json").read_text())
    assert meta["accuracy"] == pytest.approx(trained.accuracy) and meta["chance"] == 0.5
