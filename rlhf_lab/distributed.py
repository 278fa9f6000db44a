"""Running the training loops on several processes or devices with Accelerate.

Used by the loops of chapters 01-02 (`training.train_lm`), 04 (`reward_model.train_reward_model`)
and 06 (`ppo.ppo_update`, `ppo.ppo_iteration`) when a stage runs under `accelerate launch`
(`accelerate launch -m rlhf_lab <stage>`, README "Going further"). In a notebook, or under
plain `python`, there is no Accelerator and every helper below does nothing: the loops run
exactly as the notebooks teach them.

Under `accelerate launch` (or `torchrun`) there is one process per device, and data
parallelism is four habits:
- every process draws the same global batch (the loops' generators share a seed) and keeps
  its own contiguous share of it (`shard`);
- after backward, the gradients are averaged over the processes (`average_gradients`), so
  every process takes the same optimiser step and the weights stay identical everywhere;
- metrics are averaged over the processes (`mean`), so every process logs the global numbers;
- one process writes artifacts while the others wait (`is_main_process`, `wait_for_everyone`).
Each process averages its loss over its own share. Averaging their gradients gives the mean
of those means, which is the single-process loss when every share holds as many predicted
tokens (pretraining; rated pairs; PPO answers of equal length) and weighs tokens slightly
differently otherwise (SFT rows and PPO answers of unequal length), as data-parallel trainers do.

Mixed precision: `accelerate launch --mixed_precision bf16` runs the forward passes under
bf16 autocast (`autocast`) while weights, gradients and the optimiser stay in float32. fp16
would need loss scaling, which these loops do not do, so it is refused with a message.
Without a GPU the processes talk over gloo on the CPU (tests/test_distributed.py does that).
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch

from .config import get_device


def launched() -> bool:
    """True inside `accelerate launch` or `torchrun`, which set these variables."""
    return "ACCELERATE_MIXED_PRECISION" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


@functools.cache
def current():
    """This process's `accelerate.Accelerator`, created on first use; None outside a launcher."""
    if not launched():
        return None
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=get_device().type == "cpu")    # no GPU: gloo on the CPU
    if accelerator.mixed_precision == "fp16":
        raise RuntimeError("fp16 needs loss scaling, which the rlhf_lab loops do not do. Launch "
                           "with --mixed_precision bf16 (GPUs from Ampere on, and CPUs) or no.")
    return accelerator


def num_processes() -> int:
    accelerator = current()
    return 1 if accelerator is None else accelerator.num_processes


def is_main_process() -> bool:
    """True in a single process, and in the process of rank 0 under a launcher."""
    accelerator = current()
    return accelerator is None or accelerator.is_main_process


def wait_for_everyone() -> None:
    """A barrier: every process waits here until all have arrived (alone: returns at once)."""
    accelerator = current()
    if accelerator is not None:
        accelerator.wait_for_everyone()


def local_size(n: int, what: str = "batch_size") -> int:
    """How many rows of a global batch of `n` each process takes: n / processes."""
    k = num_processes()
    if n % k:
        raise ValueError(f"{what} = {n} does not split evenly over {k} processes; choose a "
                         f"{what} that is a multiple of {k}.")
    return n // k


def shard(rows):
    """This process's contiguous share of a global batch (a tensor or list of rows):
    rows [rank * n/k, (rank + 1) * n/k) of n over k processes; all of them in one process."""
    accelerator = current()
    if accelerator is None:
        return rows
    size = local_size(len(rows))
    start = accelerator.process_index * size
    return rows[start:start + size]


def average_gradients(parameters) -> None:
    """Replace every gradient by its mean over the processes, in one all-reduce.

    A parameter without a gradient counts as 0 (the course's models use every parameter
    in every step, so this never happens in its loops). Alone: does nothing.
    """
    accelerator = current()
    if accelerator is None or accelerator.num_processes == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = accelerator.reduce(torch.cat([p.grad.reshape(-1) for p in params]), reduction="mean")
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def mean(value) -> float:
    """A metric (a number or a one-element tensor) averaged over the processes, as a float;
    alone, the number itself."""
    value = value.item() if isinstance(value, torch.Tensor) else float(value)
    accelerator = current()
    if accelerator is None or accelerator.num_processes == 1:
        return value
    local = torch.tensor(value, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(local, reduction="mean").item()


def autocast():
    """The forward-pass context: bf16 autocast under `accelerate launch --mixed_precision
    bf16`, nothing otherwise."""
    accelerator = current()
    return contextlib.nullcontext() if accelerator is None else accelerator.autocast()


@contextlib.contextmanager
def process_rng():
    """Random numbers of this process's own, for sampling: on several processes, a seed drawn
    from the shared random stream (the same on all) plus the rank, so each process samples
    differently and every run samples the same. Alone: the random stream as it is."""
    accelerator = current()
    if accelerator is None or accelerator.num_processes == 1:
        yield
        return
    seed = int(torch.randint(2**31, ()).item())
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + accelerator.process_index)
        yield
