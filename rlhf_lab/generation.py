"""Sampling answers from a model: batched, left-padded, with temperature, top-k and top-p.

Taught in notebooks/01_pretraining.ipynb (samples) and used by every later chapter. The work
is done by `transformers` generation (with its KV cache); this module only prepares the
prompts in the course's dialogue format and cuts each answer where it ends.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .world import format_prompt


def answer_from_completion(text: str) -> str:
    """The answer is the first line the model writes after 'Assistant:'."""
    return text.split("\n")[0].strip()


@torch.no_grad()
def generate(model, tokenizer, questions: list[str], *, max_new_tokens: int = 40,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             batch_size: int = 64, seed: int | None = 0, progress: bool = False) -> list[str]:
    """Answer each question; temperature 0 means greedy decoding.

    Prompts are left-padded so that every answer starts right after its prompt, and
    generation stops at the end-of-text token, after `max_new_tokens`, or where the model's
    context is full.
    """
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError("need temperature >= 0, 0 < top_p <= 1 and top_k >= 0; got "
                         f"temperature={temperature}, top_p={top_p}, top_k={top_k}.")
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p) \
        if temperature > 0 else dict(do_sample=False)
    answers = []
    starts = range(0, len(questions), batch_size)
    for start in tqdm(starts, desc="generating", disable=not progress):
        prompts = [format_prompt(q) for q in questions[start:start + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
        room = model.config.max_position_embeddings - enc["input_ids"].shape[1]
        if room < 1:
            raise ValueError(f"A prompt of {enc['input_ids'].shape[1]} tokens leaves no room in "
                             f"the model's context of {model.config.max_position_embeddings}.")
        out = model.generate(**enc, max_new_tokens=min(max_new_tokens, room),
                             pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, **sampling)
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        answers += [answer_from_completion(t) for t in texts]
    model.eval()
    return answers
