"""What a read-back answer costs against a sampled one (rlhf_lab/answer_cache.py).

The report card's evaluation of the SFT model (every held-out question, 4 seeds, KL from SFT,
scored by the reward model), three ways, alternating for --rounds rounds: with the cache off
(every seed sampled), with an empty cache (sampled and stored), and again with the cache full
(read back: the digests of both models and the tokenizer, and a JSON file per seed). Checks that
all three give the same answers and numbers. A read-back evaluation still grades every answer
and scores it with the reward model; the look-up alone (digests, then memory or file) is timed
apart. Uses the full-mode artifacts when they exist; otherwise builds the quick-mode ones (a
few minutes). Prints a table and writes bench/results/answer_cache.csv.

    .venv/bin/python bench/answer_cache.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_mode import full_mode_if_built   # bench/ is on the path when run

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    args = parser.parse_args()

    from rlhf_lab import answer_cache, artifacts
    from rlhf_lab.evaluation import (SEEDS, evaluate_model, evaluation_questions, sample_answers,
                                     samples_per_question)
    from rlhf_lab.reward_model import load_reward_model

    full = full_mode_if_built("reward_model")
    sft, tokenizer = artifacts.load_model("sft", build_if_missing=True)
    reference, _ = artifacts.load_model("sft")
    reward_model, rm_tokenizer = load_reward_model(build_if_missing=True)
    # From here on the artifacts folder is a scratch one (everything is loaded), so the
    # entries never go to the learner's answer_cache.
    scratch = tempfile.mkdtemp(prefix="answer_cache_bench_")
    os.environ["RLHF_LAB_ARTIFACTS"] = scratch
    store = artifacts.artifacts_dir()

    def evaluation():
        return evaluate_model(sft, tokenizer, "sft", reference=reference,
                              reward_model=reward_model, rm_tokenizer=rm_tokenizer,
                              progress=False)

    times = {"off": [], "empty": [], "full": []}
    answers = {}
    for _ in range(args.rounds):
        for way in times:
            answer_cache.clear_memory()
            if way == "empty":
                shutil.rmtree(store / answer_cache.FOLDER, ignore_errors=True)
            os.environ["RLHF_LAB_ANSWER_CACHE"] = "0" if way == "off" else "1"
            start = time.perf_counter()
            result = evaluation()
            times[way].append(time.perf_counter() - start)
            answers[way] = result.answers
    for way in ("empty", "full"):
        pd.testing.assert_frame_equal(answers[way], answers["off"])
    # The look-up alone (digests of both models and the tokenizer, then memory or the file),
    # without the grading and the reward model's scores that every evaluation still does.
    questions = evaluation_questions()
    lookups = {"memory": [], "file": []}
    for where in lookups:
        for seed in SEEDS[:samples_per_question()]:
            if where == "file":
                answer_cache.clear_memory()
            start = time.perf_counter()
            sample_answers(sft, tokenizer, questions, seed, reference=reference)
            lookups[where].append(time.perf_counter() - start)
    shutil.rmtree(scratch, ignore_errors=True)
    n, k = answers["off"].question.nunique(), answers["off"]["sample"].nunique()
    table = pd.DataFrame([{
        "mode": "full" if full else "quick",
        "questions": n, "seeds": k,
        "sampled_s": round(min(times["off"]), 2),
        "sampled_and_stored_s": round(min(times["empty"]), 2),
        "read_back_s": round(min(times["full"]), 2),
        "lookup_from_memory_ms": round(1000 * min(lookups["memory"])),
        "lookup_from_file_ms": round(1000 * min(lookups["file"])),
        "ratio": round(min(times["off"]) / min(times["full"]), 1),
        "rounds": args.rounds, "same_numbers": True}])
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "answer_cache.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
