"""The package's structure: one table of stages, and layers checked by import-linter."""
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_lab import artifacts, stages

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rlhf_lab"


def test_every_stage_resolves_and_names_a_notebook_that_exists():
    for stage in stages.STAGES:
        assert (ROOT / "notebooks" / f"{stage.notebook}.ipynb").exists(), stage.notebook
        assert stage.load("settings").for_mode(quick=True) is not None
        assert callable(stage.load("run"))
    assert len(stages.BY_ARTIFACT) == len(stages.BY_COMMAND) == len(stages.STAGES)


def test_a_missing_artifact_names_the_notebook_of_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    for stage in stages.STAGES:
        with pytest.raises(artifacts.MissingArtifactError,
                           match=f"Run notebooks/{stage.notebook}.ipynb first"):
            artifacts.require(stage.artifact)
    with pytest.raises(artifacts.MissingArtifactError, match="No notebook makes"):
        artifacts.require("no_such_thing", build_if_missing=True)


def test_importing_a_low_module_imports_no_stage():
    """artifacts reads the table, which names stages as text: no stage module is imported."""
    code = ("import sys, rlhf_lab.artifacts; "
            "print(sorted(m for m in sys.modules if m.startswith('rlhf_lab.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    for stage_module in ("rlhf_lab.sft", "rlhf_lab.ppo_stage", "rlhf_lab.dpo",
                         "rlhf_lab.reward_model", "rlhf_lab.pretraining"):
        assert f"'{stage_module}'" not in loaded


def _contract_modules() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    layers = parser["importlinter:contract:layers"]["layers"]
    return {name.strip() for line in layers.splitlines() for name in line.split(":")
            if name.strip()}


def test_every_module_of_the_package_has_a_layer():
    modules = {f"rlhf_lab.{path.stem}" for path in PACKAGE.glob("*.py")
               if path.stem != "__init__"}
    assert modules == _contract_modules()


def test_the_import_contract_holds():
    """No upward import between layers and no cycle anywhere (`make test` runs it too)."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (it is in the dev extra: make test)")
    done = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
