import math
from types import SimpleNamespace

import pytest
import torch

from rlhf_lab.pretraining import PretrainConfig
from rlhf_lab.evaluation import unigram_perplexity
from rlhf_lab.model import build_model, count_parameters, flops_per_token
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.training import (IGNORE, LMData, TrainingDiverged, blocks_from_stream, evaluate_loss,
                               lr_at, next_token_loss, train_lm)

TEXTS = ["User: what colour is a frog?\nAssistant: A frog is green.",
         "User: what is 2 plus 3?\nAssistant: 2 plus 3 is 5.",
         "Cats are grey. A cat says meow."] * 40


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, 300)


def test_lr_schedule_by_hand():
    cfg = SimpleNamespace(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)   # halfway: cos = 0
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_blocks_from_stream():
    data = blocks_from_stream(list(range(10)), 4)
    assert data.input_ids.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert data.target_tokens.tolist() == [1, 2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="cannot fill one block"):
        blocks_from_stream([1, 2], 4)


def test_next_token_loss_by_hand():
    """Position t's logits predict the label at t + 1; IGNORE labels and the last position count
    for nothing. Two rows of three positions over a vocabulary of two, computed by hand."""
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [5.0, 5.0]],
                           [[1.0, 1.0], [0.0, 3.0], [9.0, -9.0]]])
    labels = torch.tensor([[IGNORE, 1, 0], [0, IGNORE, 1]])

    def nll(row, target):        # -log softmax(row)[target]
        return -(row[target] - math.log(sum(math.exp(v) for v in row)))
    # predicted: row 0 position 0 -> 1, position 1 -> 0; row 1 position 1 -> 1
    # (row 1 position 0 predicts IGNORE; the last positions predict nothing)
    terms = [nll([0.0, 1.0], 1), nll([2.0, 0.0], 0), nll([0.0, 3.0], 1)]
    assert next_token_loss(logits, labels, reduction="sum").item() == pytest.approx(sum(terms))
    assert next_token_loss(logits, labels).item() == pytest.approx(sum(terms) / 3)
    assert labels.tolist() == [[IGNORE, 1, 0], [0, IGNORE, 1]]      # the labels are not changed


def test_evaluate_loss_matches_hand_cross_entropy(tok):
    cfg = PretrainConfig.for_mode(quick=True, vocab_size=300)
    model = build_model(cfg, tok)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    labels = ids.clone()
    labels[1, 2:] = IGNORE
    data = LMData(ids, labels, torch.ones_like(ids))
    logits = model(input_ids=ids).logits.detach()
    logp = logits.log_softmax(-1)
    terms = [-logp[0, t, ids[0, t + 1]] for t in range(3)] + [-logp[1, 0, ids[1, 1]]]
    assert evaluate_loss(model, data, batch_size=1) == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_unigram_perplexity_by_hand():
    train = torch.tensor([0, 0, 0, 1])   # counts 3, 1, 0 -> add-one: 4, 2, 1 of 7
    targets = torch.tensor([0, 2])
    expected = math.exp(-(math.log(4 / 7) + math.log(1 / 7)) / 2)
    assert unigram_perplexity(train, targets, vocab_size=3) == pytest.approx(expected)


def test_parameter_count_and_flops(tok):
    cfg = PretrainConfig.for_mode(quick=True)
    model = build_model(cfg, tok)
    d, L, V, T = cfg.n_embd, cfg.n_layer, len(tok), cfg.block_size
    per_block = 12 * d * d + 13 * d          # attention and MLP matrices, biases, 2 layer norms
    expected = V * d + T * d + L * per_block + 2 * d
    assert count_parameters(model) == expected
    assert flops_per_token(model) == 6 * (expected - T * d) + 6 * L * T * d


def test_training_lowers_heldout_loss(tok, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_LIVE_PLOTS", "1")       # live figures on, as in a learner's lab
    cfg = PretrainConfig.for_mode(quick=True, vocab_size=300, max_steps=60, eval_every=20,
                                  block_size=32, batch_size=8, warmup_steps=5)
    stream = []
    for ids in tok(TEXTS)["input_ids"]:
        stream += ids + [tok.eos_token_id]
    data = blocks_from_stream(stream, cfg.block_size)
    model = build_model(cfg, tok)
    before = evaluate_loss(model, data, 8)
    seen = []
    history = train_lm(model, data, data, cfg, live_plot=seen.append)
    assert list(history.step) == [20, 40, 60]
    # the live figure redraws at the first and last evaluation (and every 5 s in between)
    assert [list(h.step) for h in seen] == [[20], [20, 40, 60]]
    assert history.val_loss.iloc[-1] < 0.5 * before


def test_divergence_is_reported(tok):
    cfg = PretrainConfig.for_mode(quick=True, vocab_size=300, max_steps=3, block_size=16)
    model = build_model(cfg, tok)
    with torch.no_grad():
        model.transformer.wte.weight.fill_(float("nan"))
    data = blocks_from_stream(list(range(64)), 16)
    with pytest.raises(TrainingDiverged, match="Lower cfg.lr"):
        train_lm(model, data, data, cfg)
