import pytest
import torch

from rlhf_lab import config
from rlhf_lab.config import SettingsError
from rlhf_lab.pretraining import PretrainConfig


def test_quick_switch(monkeypatch):
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    assert config.is_quick() and config.mode_name() == "quick"
    assert PretrainConfig.for_mode().max_steps == 400
    monkeypatch.setenv("RLHF_LAB_QUICK", "0")
    assert not config.is_quick()
    assert PretrainConfig.for_mode().max_steps == 1200
    monkeypatch.delenv("RLHF_LAB_QUICK")
    assert config.mode_name() == "full"


def test_modes_use_separate_artifact_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    quick = config.artifacts_dir()
    monkeypatch.setenv("RLHF_LAB_QUICK", "0")
    assert quick == tmp_path / "quick" and config.artifacts_dir() == tmp_path / "full"


def test_quick_values_shrink_the_model_and_the_budget():
    """Quick mode trains a smaller model for fewer steps; the smaller model takes a larger
    learning rate (quick pretraining: 400 steps at 1e-2 reach a lower held-out loss than
    600 at full mode's 3e-3, in two thirds of the time); the batch stays full mode's."""
    quick, full = PretrainConfig.for_mode(quick=True), PretrainConfig.for_mode(quick=False)
    assert quick.n_embd < full.n_embd and quick.max_steps < full.max_steps
    assert quick.lr > full.lr and quick.batch_size == full.batch_size
    assert PretrainConfig.for_mode(quick=True, max_steps=7).max_steps == 7


def test_seed_everything_repeats_numbers():
    config.seed_everything(123)
    a = torch.randn(3)
    config.seed_everything(123)
    assert torch.equal(a, torch.randn(3))


def test_device_override(monkeypatch):
    monkeypatch.setenv("RLHF_LAB_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")
    assert config.get_device("meta") == torch.device("meta")


@pytest.mark.parametrize("field, value, fragment", [
    ("lr", 5.0, "valid range is [1e-06, 1.0]"),
    ("max_steps", 0, "PretrainConfig.max_steps = 0 is out of range"),
    ("max_steps", 2.5, "must be a int"),
    ("dropout", "high", "must be a float"),
])
def test_bad_values_name_field_and_range(field, value, fragment):
    with pytest.raises(SettingsError) as err:
        PretrainConfig(**{field: value})
    assert fragment in str(err.value)


def test_heads_must_divide_width():
    with pytest.raises(SettingsError, match="n_head = 3 must divide n_embd = 128"):
        PretrainConfig(n_head=3)


def test_describe_lists_every_field():
    table = PretrainConfig().describe()
    assert "lr" in table.index and table.loc["lr", "valid"] == "(1e-06, 1.0)"


def test_environment_sets_the_options_inside_the_block_and_restores_them(monkeypatch, tmp_path):
    import os

    from rlhf_lab.config import environment, is_quick
    monkeypatch.delenv("RLHF_LAB_QUICK", raising=False)
    monkeypatch.setenv("RLHF_LAB_DEVICE", "cpu")
    monkeypatch.chdir(tmp_path)
    with environment(quick=True, artifacts="arts"):
        assert is_quick()
        assert os.environ["RLHF_LAB_ARTIFACTS"] == str(tmp_path / "arts")   # made absolute
        assert os.environ["RLHF_LAB_DEVICE"] == "cpu"                     # unset: left alone
    assert not is_quick() and "RLHF_LAB_QUICK" not in os.environ
    assert os.environ["RLHF_LAB_DEVICE"] == "cpu"
