"""Tiny untrained GPT-2 models, for tests that need a real model and tokenizer but no training
(the chat, in a kernel and in a browser; phrasing; KTO's loop)."""
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World, format_dialogue


def tiny_gpt(tokenizer, seed: int = 0, n_layer: int = 1, n_positions: int = 64):
    """An untrained GPT-2, 32 wide, seeded with `seed`, for `tokenizer`, in eval mode."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=n_layer, n_embd=32, n_head=2,
                        n_positions=n_positions, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config).eval()


def chat_models() -> dict:
    """Two tiny GPT-2s, "one" and "two", sharing a tokenizer trained on a few dialogues."""
    texts = [format_dialogue(q.text, "A cat is grey.") for q in World().split("train")[:20]] * 3
    tok = train_tokenizer(texts, vocab_size=300)
    return {name: (tiny_gpt(tok, seed, n_positions=96), tok) for name, seed in (("one", 0),
                                                                                ("two", 1))}
