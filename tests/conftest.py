"""Shared set-up. A test run never touches a learner's artifacts: unless RLHF_LAB_ARTIFACTS
is set, the whole session (unit tests and notebooks alike) writes to a temporary folder.
One quick-mode pretraining run is shared by every test that needs a trained model.
`make test` runs the notebooks and the unit tests side by side in two processes (below)."""
import os
import tempfile

import pytest

from rlhf_lab.pretraining import PretrainConfig


def pytest_configure(config):
    os.environ.setdefault("RLHF_LAB_ARTIFACTS", tempfile.mkdtemp(prefix="rlhf_lab_tests_"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        # `make test` runs two workers (pytest-xdist): the notebooks in order in one, the unit
        # tests in the other. Each gets its share of the cores, it and the kernels and
        # processes it starts: two torch processes that each use every core slow each other
        # down many times over.
        import torch
        threads = max(1, (os.cpu_count() or 2) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    config.addinivalue_line("markers", "slow: launches processes or runs whole stages (tens of "
                            "seconds); part of `make test`, left out by -m 'not slow'")


@pytest.fixture(scope="session")
def quick_artifacts(tmp_path_factory):
    """Quick mode, in a fresh artifacts folder of its own, for the rest of the session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path_factory.mktemp("artifacts")))
    mp.setenv("RLHF_LAB_QUICK", "1")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def pretrained(quick_artifacts):
    from rlhf_lab.pretraining import run_pretraining
    return run_pretraining(PretrainConfig.for_mode(quick=True))


@pytest.fixture(scope="session")
def sft_trained(pretrained):
    """One quick-mode SFT run on the shared pretrained model, saved as artifact 'sft'."""
    from rlhf_lab.sft import SFTConfig, run_sft
    return run_sft(SFTConfig.for_mode(quick=True))


@pytest.fixture(scope="session")
def reward_trained(sft_trained):
    """One quick-mode reward-model run on the shared SFT model, saved as 'reward_model'."""
    from rlhf_lab.reward_model import RewardConfig, run_reward_model
    return run_reward_model(RewardConfig.for_mode(quick=True), build_missing=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Two groups for `make test`'s two workers (`--dist loadgroup`): the notebooks, which must
    run in order in one process since each chapter reads the artifacts of the ones before,
    and the unit tests, which share one quick pretraining run and its descendants (the
    session fixtures above) and so also belong in one process. Without pytest-xdist the mark
    does nothing."""
    for item in items:
        group = "notebooks" if item.path.suffix == ".ipynb" else "unit-tests"
        item.add_marker(pytest.mark.xdist_group(group))
