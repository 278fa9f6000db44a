"""Sampling answers from a model: batched, left-padded, with temperature, top-k and top-p.

Taught in notebooks/01_pretraining.ipynb (samples) and used by every later chapter. The work
is done by `transformers` generation (with its KV cache); this module only prepares the
prompts in the course's dialogue format, keeps the sampled tokens for chapters that need
their log-probabilities (05, 06), and cuts each answer where it ends.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .causal_lm import context_length
from .world import format_prompt


def answer_from_completion(text: str) -> str:
    """The answer is the first line the model writes after 'Assistant:'."""
    return text.split("\n")[0].strip()


@dataclass
class Samples:
    """Sampled answers with their tokens. Shapes: (batch, seq) for the tensors.

    sequences: prompt (left-padded) and answer tokens; attention_mask: 1 on real tokens;
    answer_mask: 1 on answer tokens up to and including the end-of-text token;
    prompt_length: where answers start; answers: the decoded answers.
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    prompt_length: int
    answers: list[str]


def _check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError("need temperature >= 0, 0 < top_p <= 1 and top_k >= 0; got "
                         f"temperature={temperature}, top_p={top_p}, top_k={top_k}.")


@contextlib.contextmanager
def _no_false_padding_warning():
    """Silence transformers' "We strongly recommend passing in an `attention_mask`" during
    `generate`, a false alarm here: the mask is passed, but when no prompt of the batch is
    padded (best-of-n asks one question n times) generate replaces the all-ones mask by its
    causal mask and calls the model without one; the model then sees the padding that ends
    finished answers and warns. Only finished answers hold padding, and their tokens are
    cut off (`answer_mask`), so nothing is computed wrong."""
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(hf_logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@torch.no_grad()
def sample(model, tokenizer, questions: list[str], *, max_new_tokens: int = 40,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Samples:
    """One batch of answers, keeping the tokens. Temperature 0 means greedy decoding.

    Prompts are left-padded so that every answer starts right after its prompt, and
    generation stops at the end-of-text token, after `max_new_tokens`, or where the model's
    context is full.
    """
    _check_sampling(temperature, top_k, top_p)
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    enc = tokenizer([format_prompt(q) for q in questions], return_tensors="pt",
                    padding=True).to(device)
    prompt_length = enc["input_ids"].shape[1]
    room = context_length(model) - prompt_length
    if room < 1:
        raise ValueError(f"A prompt of {prompt_length} tokens leaves no room in the model's "
                         f"context of {context_length(model)}.")
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p) \
        if temperature > 0 else dict(do_sample=False)
    with _no_false_padding_warning():
        sequences = model.generate(**enc, max_new_tokens=min(max_new_tokens, room),
                                   pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id, **sampling)
    new = sequences[:, prompt_length:]                                  # (batch, answer)
    ended_before = (new == tokenizer.eos_token_id).long().cumsum(-1) - (new == tokenizer.eos_token_id).long()
    answer_mask = (ended_before == 0).long()        # up to and including the first end-of-text
    attention_mask = torch.cat([enc["attention_mask"], answer_mask], dim=1)
    texts = tokenizer.batch_decode(new * answer_mask + tokenizer.pad_token_id * (1 - answer_mask),
                                   skip_special_tokens=True)
    model.eval()
    return Samples(sequences, attention_mask, answer_mask, prompt_length,
                   [answer_from_completion(t) for t in texts])


def generate(model, tokenizer, questions: list[str], *, max_new_tokens: int = 40,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             batch_size: int = 64, seed: int | None = 0, progress: bool = False) -> list[str]:
    """Answer each question (text only), in batches of `batch_size`; see `sample`."""
    _check_sampling(temperature, top_k, top_p)
    if seed is not None:
        torch.manual_seed(seed)
    answers = []
    starts = range(0, len(questions), batch_size)
    for start in tqdm(starts, desc="generating", disable=not progress):
        answers += sample(model, tokenizer, questions[start:start + batch_size],
                          max_new_tokens=max_new_tokens, temperature=temperature,
                          top_k=top_k, top_p=top_p).answers
    return answers


def replace_answers(samples: Samples, tokenizer, answers: dict[int, str]) -> Samples:
    """`samples` with the answers of some rows replaced by given texts: {row: answer}.

    The new answer is tokenised as SFT tokenises a demonstration (" " + answer, then
    end-of-text) and written right after the row's prompt, which stays as sampled; the
    masks follow. Chapter 11 mixes answers the policy did not write into PPO's rollouts
    this way (off-policy exploration)."""
    if not answers:
        return samples
    start = samples.prompt_length
    new = {row: tokenizer(" " + text, add_special_tokens=False).input_ids
           + [tokenizer.eos_token_id] for row, text in answers.items()}
    width = max(samples.sequences.shape[1] - start, *(len(t) for t in new.values()))
    grow = start + width - samples.sequences.shape[1]
    sequences = torch.nn.functional.pad(samples.sequences, (0, grow),
                                        value=tokenizer.pad_token_id)
    answer_mask = torch.nn.functional.pad(samples.answer_mask, (0, grow))
    for row, tokens in new.items():
        sequences[row, start:] = tokenizer.pad_token_id
        sequences[row, start:start + len(tokens)] = torch.tensor(tokens)
        answer_mask[row] = 0
        answer_mask[row, :len(tokens)] = 1
    attention_mask = torch.cat([samples.attention_mask[:, :start], answer_mask], dim=1)
    texts = [answers.get(row, text) for row, text in enumerate(samples.answers)]
    return Samples(sequences, attention_mask, answer_mask, start, texts)
