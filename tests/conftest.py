"""Shared set-up of the unit tests. The repository's conftest.py keeps every test run
(unit tests and notebooks alike) out of a learner's artifacts. One quick-mode pretraining run
is shared by every test that needs a trained model. Answers are sampled afresh every time
(RLHF_LAB_ANSWER_CACHE=0), so that a test of reproducibility samples twice; the tests of the
cache switch it on."""
import os

import pytest

from rlhf_lab.pretraining import PretrainConfig


def pytest_configure(config):
    os.environ["RLHF_LAB_ANSWER_CACHE"] = "0"
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
