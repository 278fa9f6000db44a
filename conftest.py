"""Loaded by every pytest run in this repository, whatever it collects: `make test` runs the
unit tests (tests/) and the notebooks (notebooks/) as two processes, and neither may touch a
learner's artifacts. Unless RLHF_LAB_ARTIFACTS is set, the whole session writes to a
temporary folder of its own."""
import os
import tempfile


def pytest_configure(config):
    os.environ.setdefault("RLHF_LAB_ARTIFACTS", tempfile.mkdtemp(prefix="rlhf_lab_tests_"))


def pytest_runtest_setup(item):
    """`make test-notebooks` runs beside the unit tests on half the cores. Once the unit tests
    have ended (the file named by RLHF_LAB_UNITS_RUNNING is gone), the next notebook's kernel,
    which starts with this environment, may take every core."""
    flag = os.environ.get("RLHF_LAB_UNITS_RUNNING")
    if flag and not os.path.exists(flag):
        os.environ["OMP_NUM_THREADS"] = str(os.cpu_count() or 2)
