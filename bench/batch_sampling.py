"""Larger sampling batches without changing a single answer: noise that belongs to the question.

`generation.generate` draws each batch's random numbers from one generator, row after row, so
an answer depends on which other questions share its batch: the course samples in batches of
64 and must keep that size to keep its numbers. A sampler whose noise belongs to each
(seed, question, copy) gives the same answer in any batch. Gumbel-max does it with
transformers' own loop: argmax(logits / T + G), with G independent Gumbel noise, is a sample
of softmax(logits / T); here G comes from a generator seeded by the row's key, and a logits
processor adds it before `generate`'s greedy step.

This bench samples the report card's evaluation (every held-out question, 4 seeds: 1,464
answers, temperature 1, at most 40 new tokens) from the full-mode SFT model four ways, in
interleaved rounds: the course's sampler at batch 64 (what the report card does) and at
batch 256, and the per-question sampler at both. It reports each way's seconds, the speed-up
of batch 256 over 64 for each sampler (median over rounds, and range), what each sampler at
batch 256 gains over the course's at 64 (`course_64_over_this_256`), the share of answers
that are the same at both batch sizes, and the gold score of each sampler's answers at batch
64 with their paired difference (the same questions and seeds; a different random stream, so
only the distribution should agree). Sampling only: the KL and reward passes that follow it in
an evaluation are not timed.

Uses the full-mode 'sft' artifact when it exists; otherwise builds the quick-mode one. Prints
a table and writes bench/results/batch_sampling.csv.

    .venv/bin/python bench/batch_sampling.py [--rounds 2] [--large 256]
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from bench_mode import full_mode_if_built
from transformers import LogitsProcessor, LogitsProcessorList

RESULTS = Path(__file__).parent / "results"
MAX_NEW_TOKENS = 40


def row_seed(*key) -> int:
    """A 63-bit seed from a row's key, the same in every process and on every machine."""
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big") >> 1


class RowGumbel(LogitsProcessor):
    """Adds each row's own Gumbel noise to the scaled logits; `generate`'s greedy step then
    picks a sample of softmax(logits / temperature)."""

    def __init__(self, seeds: list[int], prompt_length: int, vocab: int, temperature: float):
        uniform = torch.empty(len(seeds), MAX_NEW_TOKENS, vocab)
        for row, seed in enumerate(seeds):
            uniform[row].uniform_(generator=torch.Generator().manual_seed(seed))
        tiny = torch.finfo(uniform.dtype).tiny
        self.noise = -torch.log(-torch.log(uniform.clamp(tiny, 1 - 1e-7)))
        self.prompt_length, self.temperature = prompt_length, temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        return scores / self.temperature + self.noise[:, step, : scores.shape[-1]].to(scores.device)


@torch.no_grad()
def per_question_answers(model, tokenizer, texts: list[str], seed: int,
                         batch_size: int) -> list[str]:
    """One answer per text, each from the noise of (seed, text, its copy number)."""
    from rlhf_lab.generation import answer_from_completion
    from rlhf_lab.world import format_prompt

    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    copies: dict[str, int] = {}
    keys = []
    for text in texts:                      # a question asked twice gets two draws
        keys.append((seed, text, copies.get(text, 0)))
        copies[text] = copies.get(text, 0) + 1
    answers = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        enc = tokenizer([format_prompt(t) for t in batch], return_tensors="pt",
                        padding=True).to(device)
        length = enc["input_ids"].shape[1]
        noise = RowGumbel([row_seed(*k) for k in keys[start:start + batch_size]], length,
                          model.config.vocab_size, temperature=1.0)
        out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             logits_processor=LogitsProcessorList([noise]),
                             pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        texts_out = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
        answers += [answer_from_completion(t) for t in texts_out]
    return answers


def course_answers(model, tokenizer, texts: list[str], seed: int, batch_size: int) -> list[str]:
    from rlhf_lab.generation import generate

    return generate(model, tokenizer, texts, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0,
                    batch_size=batch_size, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timed rounds")
    parser.add_argument("--large", type=int, default=256, help="the larger batch size")
    args = parser.parse_args()

    from rlhf_lab import artifacts
    from rlhf_lab.evaluation import SEEDS, Evaluation, evaluation_questions, paired_difference

    full_mode_if_built("sft")
    model, tokenizer = artifacts.load_model("sft", build_if_missing=True)
    model.eval()
    questions = evaluation_questions()
    texts = [q.text for q in questions]
    seeds = SEEDS[:4]
    samplers = {"course": course_answers, "per_question": per_question_answers}
    ways = [(name, batch) for name in samplers for batch in (64, args.large)]
    seconds = {way: [] for way in ways}
    answers = {}
    for _ in range(args.rounds):
        for way in ways:
            name, batch = way
            start = time.perf_counter()
            answers[way] = [samplers[name](model, tokenizer, texts, seed, batch)
                            for seed in seeds]
            seconds[way].append(time.perf_counter() - start)
    rows = []
    graded = {name: Evaluation.from_answers(name, questions, answers[name, 64])
              for name in samplers}
    for name in samplers:
        small, large = seconds[name, 64], seconds[name, args.large]
        ratios = [s / g for s, g in zip(small, large)]
        same = sum(a == b for seed_small, seed_large in zip(answers[name, 64],
                                                           answers[name, args.large])
                   for a, b in zip(seed_small, seed_large))
        against_course = [c / g for c, g in zip(seconds["course", 64], large)]
        s = graded[name].summary()
        rows.append({"sampler": name, "answers": len(texts) * len(seeds), "rounds": args.rounds,
                     "seconds_batch_64": statistics.median(small),
                     f"seconds_batch_{args.large}": statistics.median(large),
                     "speedup": statistics.median(ratios),
                     "speedup_range": f"{min(ratios):.2f} to {max(ratios):.2f}",
                     f"course_64_over_this_{args.large}": statistics.median(against_course),
                     "same_answer_share": same / (len(texts) * len(seeds)),
                     "gold_batch_64": s["gold"], "gold_low": s["gold_low"],
                     "gold_high": s["gold_high"]})
    d = paired_difference(graded["per_question"], graded["course"])
    rows[1] |= {"gold_vs_course": d["difference"], "gold_vs_course_low": d["low"],
                "gold_vs_course_high": d["high"]}
    table = pd.DataFrame(rows)
    print(table.round(3).T.to_string())
    RESULTS.mkdir(exist_ok=True)
    table.round(4).to_csv(RESULTS / "batch_sampling.csv", index=False)


if __name__ == "__main__":
    main()
