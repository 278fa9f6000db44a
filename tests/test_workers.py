"""Independent runs side by side (workers.py, chapter 09's seeds): results in the order of
the jobs, the same numbers as a run in this process, a failing job named, bad input refused."""
import os
import sys

import pytest
import torch

from rlhf_lab.workers import core_budget, cpu_cores, planned_processes, side_by_side, worker_threads


def fit_line(seed: int, steps: int, tick) -> tuple[list[float], int]:
    """A seeded little regression, `tick()` after every step: its weights and the thread count
    it ran with."""
    torch.manual_seed(seed)
    x = torch.randn(64, 8)
    y = x @ torch.arange(8.0) + 0.1 * torch.randn(64)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tick()
    return model.weight.detach().flatten().tolist(), torch.get_num_threads()


def fail_on_three(seed: int, tick) -> int:
    if seed == 3:
        raise ValueError(f"seed {seed} is not allowed here")
    tick()
    return seed


@pytest.mark.slow
def test_jobs_in_other_processes_give_this_process_numbers_in_job_order():
    jobs = [(seed, 20) for seed in (5, 1, 7)]
    here = side_by_side(fit_line, jobs, steps_per_job=20, processes=1, progress=False)
    there = side_by_side(fit_line, jobs, steps_per_job=20, processes=3, progress=False)
    assert [w for w, _ in there] == [w for w, _ in here]            # same numbers, same order
    assert here[0][0] != here[1][0]                                 # the seeds did differ
    assert all(threads == 1 for _, threads in there)                # 3 processes on <= 3 cores


@pytest.mark.slow
def test_a_failing_job_raises_its_own_error_here():
    with pytest.raises(ValueError, match="seed 3 is not allowed"):
        side_by_side(fail_on_three, [(1,), (3,)], processes=2, progress=False)


def test_processes_are_planned_per_job_and_a_bad_count_is_refused(monkeypatch):
    monkeypatch.setenv("RLHF_LAB_DEVICE", "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cores = min(2, cpu_cores())
        assert core_budget() == cores
        assert planned_processes(1) == 1
        assert planned_processes(3) == (1 if cores == 1 else 3)    # 3 on 2 cores: none waits
        assert planned_processes(10**6) == (1 if cores == 1 else 2 * cores)
        torch.set_num_threads(1)                  # told to use one core (make test's halves)
        assert core_budget() == 1 and planned_processes(3) == 1 and worker_threads(3) == 1
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("RLHF_LAB_DEVICE", "cuda")
    assert planned_processes(3) == 1                  # one GPU: one process keeps it busy
    with pytest.raises(ValueError, match="choose 1 or more"):
        side_by_side(fail_on_three, [(1,)], processes=0, progress=False)


def course_setting(name: str, tick) -> str | None:
    tick()
    return os.environ.get(name)


@pytest.mark.slow
def test_workers_see_the_course_settings_as_they_are_when_the_jobs_start(monkeypatch):
    """Workers start from a fork server that keeps the environment it began with; each job
    must still see this process's RLHF_LAB_* settings as they are now (quick mode, the
    artifacts folder), set, changed or removed."""
    jobs = [("RLHF_LAB_WORKER_PROBE",)] * 2
    monkeypatch.setenv("RLHF_LAB_WORKER_PROBE", "first")
    assert side_by_side(course_setting, jobs, processes=2, progress=False) == ["first"] * 2
    monkeypatch.setenv("RLHF_LAB_WORKER_PROBE", "second")
    assert side_by_side(course_setting, jobs, processes=2, progress=False) == ["second"] * 2
    monkeypatch.delenv("RLHF_LAB_WORKER_PROBE")
    assert side_by_side(course_setting, jobs, processes=2, progress=False) == [None] * 2


def test_workers_start_from_a_fork_server_on_linux_and_as_fresh_interpreters_elsewhere(monkeypatch):
    from rlhf_lab import workers

    monkeypatch.setattr(sys, "platform", "darwin")
    assert workers._context(fit_line).get_start_method() == "spawn"
    monkeypatch.setattr(sys, "platform", "win32")
    assert workers._context(fit_line).get_start_method() == "spawn"
    monkeypatch.setattr(sys, "platform", "linux")
    assert workers._context(fit_line).get_start_method() == "forkserver"
