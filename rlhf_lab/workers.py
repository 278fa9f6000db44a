"""Independent runs side by side, one process each, so that a tiny model keeps every core busy.

Used by chapter 09 (`iterate.run_seeds`: its three seeds) and chapter 10
(`critic_free_stage.run_side_by_side`: its three hard GRPO runs). A model of a million parameters
is too small to keep two CPU cores busy from one process: on the course's 2-core machine one
PPO optimiser step (minibatch 16) runs only about 1.4 times faster on two threads than on
one, and sampling an answer token hardly faster at all, because each step is many small
operations (bench/ppo_step.py). Runs that do not depend on each other, such as the seeds of
one experiment, therefore finish sooner in their own processes, one thread each, than one
after the other with every thread.

`side_by_side(fn, jobs)` calls `fn(*job, tick=...)` for every job and returns the results in
the order of `jobs`. `fn` must live in a module (a notebook's own function cannot be sent to
another process) and calls `tick()` after each of its steps; one progress bar counts the steps
of every job. Each job must seed everything it draws (chapter 09's experiment seeds itself
before it draws its first value head); then it gives the same numbers in whichever process
runs it (tests/test_iterate.py checks this for chapter 09's seeds). On a GPU, or with one job, the
jobs run one after the other in this process.

Models travel between the processes as their class, config and weights, and are built anew
on arrival (`_pack`, `_unpack`): a `transformers` model copied whole by pickle arrives without
the registry its output hooks need, and would answer `output_hidden_states=True` with None.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence


def cpu_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def core_budget() -> int:
    """The cores this process may keep busy: `cpu_cores()`, or fewer where torch was told to
    use fewer threads (`make test` gives each of its two pytest processes half the cores)."""
    import torch

    return max(1, min(cpu_cores(), torch.get_num_threads()))


def planned_processes(jobs: int) -> int:
    """How many processes `side_by_side` starts for `jobs` jobs: one per job (at most two per
    core of `core_budget()`) on a CPU; 1 on a GPU (one device, which one process already
    keeps busy), on a budget of one core (processes would only take turns on it) or for a
    single job. Three jobs on two cores get three processes sharing the cores, not two and
    then one: the last job would otherwise run alone while a core idles (measured on
    bench/seeds_side_by_side.py's experiment, 2 cores: 218 s with three processes, 282 s with
    two, 269 s one after the other in one process)."""
    from .config import get_device

    cores = core_budget()
    if jobs <= 1 or cores == 1 or get_device().type != "cpu":
        return 1
    return min(jobs, 2 * cores)


def _context(fn: Callable):
    """The way worker processes start. On Linux, a fork server: one helper process imports
    torch, transformers' GPT-2 and `fn`'s module once, the first time this process runs jobs
    side by side, and every worker after that is a copy of it, ready at once. Elsewhere
    (macOS, where Python itself avoids forking by default, and Windows) each worker is a
    fresh interpreter that imports them itself, which on a 2-core laptop takes several
    seconds a worker. Neither way copies this process (a notebook's kernel, with its threads
    and models): a worker holds only what a job sends it."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers.models.gpt2.modeling_gpt2",
                                    __name__, fn.__module__])
    return context


def _course_environment() -> dict[str, str]:
    """This process's course settings (RLHF_LAB_*: quick mode, artifacts folder, device...)."""
    return {k: v for k, v in os.environ.items() if k.startswith("RLHF_LAB_")}


def _start_worker(threads: int, environment: dict[str, str]) -> None:
    """A worker's set-up: its share of the threads, and the course settings of the process
    that started it as they are now (a fork server's copy keeps those it started with)."""
    import torch

    for name in _course_environment().keys() - environment.keys():
        del os.environ[name]
    os.environ.update(environment)
    torch.set_num_threads(threads)


@dataclasses.dataclass
class _PackedModel:
    """A `transformers` model in transit: rebuilt from its class, config and weights."""

    model_class: type
    config: Any
    state_dict: dict
    training: bool

    def build(self):
        model = self.model_class(self.config)
        model.load_state_dict(self.state_dict)
        return model.train(self.training)


def _replace_parts(value, chosen: Callable[[Any], bool], convert: Callable[[Any], Any]):
    """`value` with every part for which `chosen(part)` holds replaced by `convert(part)`, in
    tuples (named ones too), lists, dicts and dataclasses, however deep."""
    if chosen(value):
        return convert(value)

    def inner(v):
        return _replace_parts(v, chosen, convert)

    if isinstance(value, tuple) and hasattr(value, "_fields"):          # a named tuple
        return type(value)(*map(inner, value))
    if isinstance(value, (list, tuple)):
        return type(value)(map(inner, value))
    if isinstance(value, dict):
        return {k: inner(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: inner(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def _pack(value):
    """`value` with every `transformers` model inside it replaced by a `_PackedModel`."""
    from transformers import PreTrainedModel

    return _replace_parts(value, lambda v: isinstance(v, PreTrainedModel),
                          lambda m: _PackedModel(type(m), m.config, m.state_dict(), m.training))


def _unpack(value):
    """The inverse of `_pack`: every `_PackedModel` built into its model again."""
    return _replace_parts(value, lambda v: isinstance(v, _PackedModel), _PackedModel.build)


def _run_job(fn: Callable, job: tuple, ticks) -> Any:
    return _pack(fn(*_unpack(job), tick=lambda: ticks.put(1)))


def worker_threads(processes: int) -> int:
    """The torch threads of each of `processes` worker processes: an equal share of
    `core_budget()`, at least one."""
    return max(1, core_budget() // processes)


def side_by_side(fn: Callable, jobs: Sequence[tuple], *, steps_per_job: int = 1,
                 desc: str = "runs", processes: int | None = None,
                 progress: bool = True) -> list:
    """[fn(*job, tick=...) for job in jobs], run in `processes` processes at once
    (`planned_processes` by default), each with `worker_threads(processes)` torch threads.
    A progress bar counts `steps_per_job` ticks per job. An exception in a job is raised
    here, after the other jobs end, with the job's own traceback as its cause.
    """
    from tqdm.auto import tqdm

    jobs = [tuple(job) for job in jobs]
    processes = planned_processes(len(jobs)) if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes = {processes}: choose 1 or more (1 runs the jobs here, "
                         "one after the other).")
    with tqdm(total=len(jobs) * steps_per_job, desc=desc, disable=not progress) as bar:
        if processes == 1:
            return [fn(*job, tick=lambda: bar.update(1)) for job in jobs]
        context = _context(fn)
        threads = worker_threads(processes)
        with context.Manager() as manager, ProcessPoolExecutor(
                processes, mp_context=context, initializer=_start_worker,
                initargs=(threads, _course_environment())) as pool:
            ticks = manager.Queue()
            futures = [pool.submit(_run_job, fn, _pack(job), ticks) for job in jobs]
            while not all(f.done() for f in futures):
                try:
                    ticks.get(timeout=0.5)
                    bar.update(1)
                except queue.Empty:
                    pass
            while not ticks.empty():
                ticks.get()
                bar.update(1)
            return [_unpack(f.result()) for f in futures]
