import json

import pytest

from rlhf_lab import artifacts
from rlhf_lab.artifacts import MissingArtifactError


@pytest.fixture(autouse=True)
def tmp_artifacts(monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    return tmp_path


def test_missing_artifact_names_the_notebook_and_the_quick_build():
    with pytest.raises(MissingArtifactError) as err:
        artifacts.require("pretrained")
    msg = str(err.value)
    assert "Run notebooks/01_pretraining.ipynb first" in msg
    assert "require('pretrained', build_if_missing=True)" in msg
    assert "artifacts/quick/pretrained" in msg
    # IPython shows the message alone, not a traceback
    assert err.value._render_traceback_() == [f"MissingArtifactError: {msg}"]


def test_unknown_artifact_lists_the_known_ones():
    with pytest.raises(MissingArtifactError, match="No notebook makes an artifact of that name"):
        artifacts.require("pretrianed", build_if_missing=True)


def test_save_dir_is_atomic_and_keeps_the_old_version_on_crash(tmp_artifacts):
    artifacts.save_dir("thing", lambda d: (d / "a.txt").write_text("v1"), {"step": 1})
    assert artifacts.exists("thing")
    assert json.loads((artifacts.require("thing") / "rlhf_lab.json").read_text())["step"] == 1

    def crash(d):
        (d / "a.txt").write_text("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        artifacts.save_dir("thing", crash)
    assert (artifacts.require("thing") / "a.txt").read_text() == "v1"
    artifacts.save_dir("thing", lambda d: (d / "a.txt").write_text("v2"))
    assert (artifacts.require("thing") / "a.txt").read_text() == "v2"


def test_incomplete_folder_counts_as_missing(tmp_artifacts):
    (tmp_artifacts / "quick" / "pretrained").mkdir(parents=True)
    assert not artifacts.exists("pretrained")


def test_build_if_missing_builds_the_stage_of_the_table(monkeypatch):
    """require() finds the stage in stages.STAGES and calls its quick build."""
    built = []

    class FakeStage:
        notebook = "01_pretraining"

        def build_quick(self):
            artifacts.save_dir("pretrained", lambda d: built.append(d))
    monkeypatch.setitem(artifacts.BY_ARTIFACT, "pretrained", FakeStage())
    path = artifacts.require("pretrained", build_if_missing=True)
    assert built and path.exists()
