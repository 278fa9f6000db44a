"""A byte-level BPE tokenizer trained on the cleaned corpus with the `tokenizers` library.

Taught in notebooks/01_pretraining.ipynb. The result is a `PreTrainedTokenizerFast`, so every
later chapter (and `transformers` generation) uses it like any tokenizer from the hub.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"   # ends every document and every answer
PAD = "<|pad|>"         # fills batches to one length; never trained on


def train_tokenizer(texts: Iterable[str], vocab_size: int,
                    model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """Learn `vocab_size` tokens by byte-pair encoding: start from the 256 bytes, then merge
    the most frequent adjacent pair, again and again, until the vocabulary is full."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
        padding_side="left", model_max_length=model_max_length)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved in a model folder (or a hub model's, with internet). One without a
    padding token (GPT-2 and Llama from the hub) pads with its end-of-text token."""
    from transformers import AutoTokenizer

    folder = Path(path).expanduser()
    if folder.is_dir() and not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise ValueError(f"{path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                         "save the model's tokenizer beside it: tokenizer.save_pretrained(folder).")
    tokenizer = AutoTokenizer.from_pretrained(str(folder) if folder.is_dir() else str(path))
    if tokenizer.eos_token is None:
        raise ValueError(f"The tokenizer of {path} has no end-of-text token, which ends every "
                         "answer in the course; set tokenizer.eos_token and save it again.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
