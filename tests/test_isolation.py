"""`make test` runs the notebooks as a pytest process of their own (Makefile, test-notebooks).
That process, too, must keep out of a learner's artifacts: the repository's conftest.py
points RLHF_LAB_ARTIFACTS at a temporary folder for any pytest run, whatever it collects."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_pytest_run_of_the_notebooks_alone_writes_to_a_temporary_folder(tmp_path):
    (tmp_path / "show_artifacts.py").write_text(
        "import os\n\n\ndef pytest_collection_finish(session):\n"
        "    print('ARTIFACTS=' + os.environ.get('RLHF_LAB_ARTIFACTS', '<unset>'))\n")
    env = {k: v for k, v in os.environ.items() if k != "RLHF_LAB_ARTIFACTS"}
    env["PYTHONPATH"] = str(tmp_path)
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "show_artifacts",
               "notebooks/00_setup.ipynb"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    shown = [line for line in run.stdout.splitlines() if line.startswith("ARTIFACTS=")]
    assert run.returncode == 0 and len(shown) == 1, run.stdout + run.stderr
    folder = Path(shown[0].split("=", 1)[1])
    assert folder.name.startswith("rlhf_lab_tests_")
    assert Path(tempfile.gettempdir()).resolve() in folder.resolve().parents
