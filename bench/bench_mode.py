"""Which artifacts a bench times: a learner's full-mode ones where the notebooks built them,
else the quick-mode ones, which the bench builds if missing (a few minutes). A bench that
trains does it in a copy of the full-mode ones (`full_mode_copy`)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def full_mode_if_built(artifact: str) -> bool:
    """Set RLHF_LAB_QUICK, for this process and the ones it starts, to full mode when
    artifact `artifact` exists there, else to quick mode, and say so; True for full mode."""
    from rlhf_lab import artifacts

    built = (artifacts.artifacts_dir().parent / "full" / artifact).exists()
    os.environ["RLHF_LAB_QUICK"] = "0" if built else "1"
    if not built:
        print(f"No full-mode '{artifact}' artifact: timing the quick-mode ones, built if missing.")
    return built


@contextlib.contextmanager
def full_mode_copy(needed: tuple[str, ...], built_by: str):
    """Full mode, in a temporary copy of the learner's full-mode artifacts, for the block: a
    bench that trains there changes nothing of the learner's. The copy leaves out the answer
    cache, so answers are sampled again, as on a first run. Yields the copy's folder, or None,
    after saying so, when an artifact of `needed` is missing (`built_by`: the notebooks that
    build them); quick mode has no numbers such a bench could use."""
    from rlhf_lab import artifacts

    full = artifacts.artifacts_dir().parent / "full"
    missing = [name for name in needed if not (full / name).exists()]
    if missing:
        print(f"SKIPPED: no full-mode {', '.join(missing)} in {full}. Run `make course` (or "
              f"{built_by}) first; this bench means nothing in quick mode.")
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="rlhf_lab_bench_") as scratch:
        copy = Path(scratch) / "full"
        shutil.copytree(full, copy, ignore=shutil.ignore_patterns("answer_cache"))
        os.environ["RLHF_LAB_ARTIFACTS"] = scratch
        os.environ["RLHF_LAB_QUICK"] = "0"
        yield copy
