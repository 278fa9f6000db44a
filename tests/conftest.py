"""Shared fixtures: one quick-mode pretraining run per test session, in a temporary
artifacts folder, reused by every test that needs a trained model."""
import pytest

from rlhf_lab.config import PretrainConfig


@pytest.fixture(scope="session")
def quick_artifacts(tmp_path_factory):
    """Point RLHF_LAB_ARTIFACTS at a fresh folder, in quick mode, for the whole session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path_factory.mktemp("artifacts")))
    mp.setenv("RLHF_LAB_QUICK", "1")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def pretrained(quick_artifacts):
    from rlhf_lab.pretraining import run_pretraining
    return run_pretraining(PretrainConfig.for_mode(quick=True))
