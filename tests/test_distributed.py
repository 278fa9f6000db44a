"""The training loops under `accelerate launch` (rlhf_lab.distributed): launched on 2 CPU
processes (gloo), pretraining (`train_lm`), the reward-model loop, a PPO update and a GRPO
update end with identical parameters on both processes, equal to a single-process run at the
same global batch within float32 rounding; a whole PPO iteration keeps both processes identical; one process
writes the artifact; bf16 mixed precision runs the forward passes in bfloat16.

The jobs live in tests/distributed_worker.py. About 15 s on 2 cores: two launches (2 processes
in float32, 1 in bf16), most of it importing torch and transformers.
"""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import distributed_worker as worker

pytestmark = pytest.mark.slow
WORKER = Path(worker.__file__)

# How far a weight may be from the single-process run's. Two processes average two means of 4
# rows where one process averages 8 rows, so each gradient differs in float32 rounding (about
# 1e-7 relative), and Adam, which divides every gradient by its running size, turns the
# rounding of gradients that are nearly 0 into steps of up to the learning rate. Measured
# largest differences (2 cores, torch 2.13): pretraining 2.3e-6 after 8 steps, reward model
# 7.9e-6 after 4, PPO 1.2e-7 after 3. TOLERANCE leaves a 6x margin over the largest, and each
# run moves some weight at least 20 x TOLERANCE (asserted), so a process that trained on the
# wrong rows, or alone, would be caught.
TOLERANCE = 5e-5


def launch(job_dir: Path, *options: str) -> float:
    """Run the worker under `accelerate launch` with `options`; return the seconds it took."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RLHF_LAB_QUICK": "1",
           "RLHF_LAB_ARTIFACTS": str(job_dir / "artifacts")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", *options, "--num_machines", "1",
         "--dynamo_backend", "no", "--main_process_port", "0", str(WORKER), str(job_dir)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(single, ranks, seconds): the jobs in this process (no Accelerator), and what each of
    the 2 launched processes saved."""
    job_dir = tmp_path_factory.mktemp("accelerate")
    worker.prepare(job_dir)
    single = {name: job(job_dir) for name, job in worker.JOBS.items() if name != "ppo_iteration"}
    seconds = launch(job_dir, "--multi_gpu", "--num_processes", "2", "--mixed_precision", "no")
    ranks = [torch.load(job_dir / f"no_rank{rank}.pt") for rank in (0, 1)]
    return job_dir, single, ranks, seconds


def largest_difference(a: dict, b: dict, skip: tuple[str, ...] = ()) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a if not k.endswith(skip))


def test_the_helpers_split_average_and_gather_over_two_processes(runs):
    _, _, ranks, _ = runs
    first, second = (r["helpers"] for r in ranks)
    assert first["shard"] == [0, 1, 2, 3] and second["shard"] == [4, 5, 6, 7]
    assert first["mean"] == second["mean"] == 0.5                 # ranks 0 and 1
    assert first["gradient"] == second["gradient"] == [1.5] * 3   # gradients 1 and 2
    assert "batch_size = 7 does not split evenly over 2 processes" in first["uneven"]


@pytest.mark.parametrize("job, skip", [
    ("pretrain", ()),
    # The Bradley-Terry loss sees only r_a - r_b, and the last LayerNorm's bias shifts every
    # reward alike: its gradient is 0 but for rounding, which Adam turns into steps of about
    # the learning rate in a direction the loss cannot see. It is left out.
    ("reward", ("ln_f.bias",)),
    ("ppo_update", ()),
    ("grpo_update", ()),
])
def test_two_processes_end_identical_and_match_one_process(runs, job, skip):
    job_dir, single, ranks, seconds = runs
    first, second = (r[job] for r in ranks)
    for name in first["params"]:
        assert torch.equal(first["params"][name], second["params"][name]), name
    difference = largest_difference(first["params"], single[job]["params"], skip)
    print(f"{job}: largest difference from one process {difference:.2g}; launch {seconds:.1f} s")
    assert difference < TOLERANCE, difference
    start = worker.starting_params(job_dir, job)
    moved = largest_difference(single[job]["params"], start, skip)
    assert moved > 20 * TOLERANCE, moved
    metrics = "stats" if job.endswith("_update") else "train_loss"
    assert first[metrics] == second[metrics]                     # gathered: the same on both
    assert first[metrics] == pytest.approx(single[job][metrics], rel=1e-5)


def test_a_whole_ppo_iteration_keeps_both_processes_identical(runs):
    _, _, ranks, _ = runs
    first, second = (r["ppo_iteration"] for r in ranks)
    assert all(torch.equal(first["params"][k], second["params"][k]) for k in first["params"])
    assert first["stats"] == second["stats"]
    assert first["stats"]["answer_length"] > 0
    assert all(math.isfinite(v) for v in first["stats"].values())


def test_one_process_writes_the_artifact(runs):
    from rlhf_lab.causal_lm import load_causal_lm

    job_dir, _, ranks, _ = runs
    folder = job_dir / "artifacts" / "quick" / "pretrained"
    assert (folder / "COMPLETE").exists() and not folder.with_name("pretrained.tmp").exists()
    model, _ = load_causal_lm(folder)
    saved = {f"0.{name}": p for name, p in model.named_parameters()}
    assert largest_difference(saved, ranks[0]["pretrain"]["params"]) == 0


def test_bf16_mixed_precision_runs_the_forward_passes_in_bfloat16(runs):
    job_dir, single, _, _ = runs
    launch(job_dir, "--num_processes", "1", "--cpu", "--mixed_precision", "bf16")
    bf16 = torch.load(job_dir / "bf16_rank0.pt")["bf16"]
    assert bf16["autocast"] == "torch.bfloat16"
    # bf16 keeps 8 bits of mantissa, so the weights end far apart (measured 9.7e-3), but the
    # mean losses average the rounding out (measured 2e-5 and 3e-5 relative to float32's)
    fp32 = single["pretrain"]
    assert largest_difference(bf16["params"], fp32["params"]) > 20 * TOLERANCE
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=1e-3)
