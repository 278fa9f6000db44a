"""Generation near the model's cost? `generation.sample` (transformers' `generate` with its KV
cache) against a plain KV-cached sampling loop of the same model, batch and length.

Both sample a PPO batch (64 training questions, at most 40 new tokens, temperature 1) from the
same model, in interleaved rounds so that the machine's drift hits both alike. The plain loop
is the least any sampler must do: one forward pass over the prompts, then one forward pass of
one token per step on the cache, a softmax and a multinomial draw, stopping when every answer
has ended. ratio = plain seconds / sample seconds (1.0: no overhead; issue 21 asks >= 0.8).
It also reports the answer tokens per second and `answer_mfu`: 2 x parameters FLOPs per answer
token over the device's float32 matmul rate (the prompts' forward pass is not counted).

Uses the full-mode 'sft' artifact when it exists; otherwise builds the quick-mode one. Prints
a table and writes bench/results/generation.csv.

    .venv/bin/python bench/generation.py [--rounds 5] [--batch 64]
"""
from __future__ import annotations

import argparse
import inspect
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from bench_mode import full_mode_if_built
from pretrain_throughput import matmul_flops, sync   # bench/ is on the path when run

RESULTS = Path(__file__).parent / "results"


def _cache_of(out):
    return getattr(out, "cache", None) or out.past_key_values


@torch.no_grad()
def plain_sample(model, tokenizer, prompts: list[str], max_new_tokens: int,
                 temperature: float) -> int:
    """A plain KV-cached sampling loop; returns the number of answer tokens generated."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    mask = enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # the cache's keyword: `cache` in recent transformers, `past_key_values` before
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                use_cache=True, logits_to_keep=1)
    past, logits = _cache_of(out), out.logits[:, -1]
    position = positions[:, -1:] + 1
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    generated = 0
    for _ in range(max_new_tokens):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        token = torch.multinomial(probs, 1).squeeze(1)
        token = torch.where(done, tokenizer.pad_token_id, token)
        generated += int((~done).sum())
        done |= token == tokenizer.eos_token_id
        if done.all():
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                    use_cache=True, **{key: past})
        past, logits = _cache_of(out), out.logits[:, -1]
        position = position + 1
    return generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timed rounds")
    parser.add_argument("--batch", type=int, default=64, help="questions per batch (PPO: 64)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()

    from rlhf_lab import artifacts
    from rlhf_lab.config import seed_everything
    from rlhf_lab.generation import sample
    from rlhf_lab.world import World, format_prompt

    full_mode_if_built("sft")
    model, tokenizer = artifacts.load_model("sft", build_if_missing=True)
    model.eval()
    device = next(model.parameters()).device
    questions = [q.text for q in World().split("train")[: args.batch]]
    prompts = [format_prompt(q) for q in questions]
    parameters = sum(p.numel() for p in model.parameters())
    seed_everything(0)
    sample(model, tokenizer, questions, max_new_tokens=args.max_new_tokens)      # warm-up
    plain_sample(model, tokenizer, prompts, args.max_new_tokens, 1.0)
    times = {"sample": [], "plain": []}
    tokens = {"sample": [], "plain": []}
    for round_ in range(args.rounds):
        torch.manual_seed(round_)
        sync(device)
        start = time.perf_counter()
        samples = sample(model, tokenizer, questions, max_new_tokens=args.max_new_tokens)
        sync(device)
        times["sample"].append(time.perf_counter() - start)
        tokens["sample"].append(int(samples.answer_mask.sum()))
        torch.manual_seed(round_)
        sync(device)
        start = time.perf_counter()
        tokens["plain"].append(plain_sample(model, tokenizer, prompts, args.max_new_tokens, 1.0))
        sync(device)
        times["plain"].append(time.perf_counter() - start)
    peak = max(matmul_flops(device, n) for n in (256, 512, 1024))
    rows = []
    for name in ("sample", "plain"):
        seconds = statistics.median(times[name])
        per_second = statistics.median(t / s for t, s in zip(tokens[name], times[name]))
        rows.append({"sampler": name, "median_s": round(seconds, 4),
                     "answer_tokens": round(statistics.mean(tokens[name]), 1),
                     "answer_tokens_per_s": round(per_second),
                     "answer_mfu": round(2 * parameters * per_second / peak, 4)})
    table = pd.DataFrame(rows)
    ratios = [p / s for p, s in zip(times["plain"], times["sample"])]   # round by round
    table["ratio_plain_over_sample"] = [round(statistics.median(ratios), 3), 1.0]
    table["ratio_range"] = [f"{min(ratios):.2f} to {max(ratios):.2f}", ""]
    table["batch"], table["threads"], table["parameters"] = (args.batch,
                                                             torch.get_num_threads(), parameters)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "generation.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
