"""Which artifacts a bench times: a learner's full-mode ones where the notebooks built them,
else the quick-mode ones, which the bench builds if missing (a few minutes)."""
from __future__ import annotations

import os


def full_mode_if_built(artifact: str) -> bool:
    """Set RLHF_LAB_QUICK, for this process and the ones it starts, to full mode when
    artifact `artifact` exists there, else to quick mode, and say so; True for full mode."""
    from rlhf_lab import artifacts

    built = (artifacts.artifacts_dir().parent / "full" / artifact).exists()
    os.environ["RLHF_LAB_QUICK"] = "0" if built else "1"
    if not built:
        print(f"No full-mode '{artifact}' artifact: timing the quick-mode ones, built if missing.")
    return built
