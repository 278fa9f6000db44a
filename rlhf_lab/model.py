"""Building the tiny GPT: a real `transformers` GPT-2, configured small.

Taught in notebooks/01_pretraining.ipynb (choosing a size against data and compute).
"""
from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast


def build_model(cfg, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """A GPT-2 with the course's sizes; token embeddings and output layer share weights.
    `cfg`: chapter 01's settings (`rlhf_lab.pretraining.PretrainConfig`): its block_size,
    n_embd, n_layer, n_head, dropout and seed are read.

    The MLP's activation is GPT-2's tanh-approximated GELU computed by PyTorch's one fused
    kernel ("gelu_pytorch_tanh") rather than transformers' default "gelu_new", the same
    function written out as four elementwise operations, forward and backward: on a 2-core
    CPU the fused kernel makes a pretraining step about 10 % faster
    (bench/pretrain_throughput.py); on the full-mode SFT model the two give logits that differ
    by at most 9e-6."""
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.block_size, n_embd=cfg.n_embd,
        n_layer=cfg.n_layer, n_head=cfg.n_head, activation_function="gelu_pytorch_tanh",
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(config)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counting real tokens only: (batch, seq) -> (batch, seq).

    A left-padded row gets positions 0, 1, 2, ... from its first real token, exactly as if
    it stood alone without padding; padding positions get 0 (they are masked anyway).
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def flops_per_token(model: GPT2LMHeadModel) -> int:
    """Training FLOPs per token, forward and backward: 6 N plus the attention term
    6 * n_layer * n_ctx * n_embd (Kaplan et al. 2020; the PaLM paper's appendix B)."""
    c = model.config
    n = count_parameters(model) - c.n_positions * c.n_embd   # position table does no matmul
    return 6 * n + 6 * c.n_layer * c.n_positions * c.n_embd
