"""Install PyTorch into the running Python, choosing the build that fits this machine.

Run by `make install` before the rest of the dependencies, so that pip never pulls a
multi-gigabyte CUDA build onto a machine without a GPU. Nothing here pins a version:
the requirement is the same range as in pyproject.toml.

- torch already importable and in range: nothing to do.
- An NVIDIA GPU (nvidia-smi answers): the default build from PyPI, which carries CUDA.
- macOS: the default build from PyPI (CPU and Apple's MPS).
- Otherwise (a CPU-only Linux or Windows machine):
  1. a CPU wheel already on this machine (pip's configured --find-links), no download;
  2. else PyTorch's own CPU index, the standard way to get the small CPU build.

Options given to this script (`make install` gives `--no-compile`) are passed on to every
pip install it runs.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys

REQUIREMENT = "torch>=2.4"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


PIP_OPTIONS: list[str] = []   # set from this script's arguments in main()


def pip(*args: str) -> bool:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *PIP_OPTIONS, *args]
    print("+", " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd) == 0


def torch_in_range() -> bool:
    """Whether this Python has torch >= 2.4 installed. Reads the installed version without
    importing torch: right after the --no-deps install below, torch cannot import yet."""
    importlib.invalidate_caches()
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", version).groups())
    return (major, minor) >= (2, 4)


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.call([smi, "-L"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL) == 0


def main(pip_options: list[str]) -> int:
    PIP_OPTIONS[:] = pip_options
    if torch_in_range():
        print("torch is already installed and recent enough.")
        return 0
    if has_nvidia_gpu() or platform.system() == "Darwin":
        return 0 if pip(REQUIREMENT) else 1
    # CPU-only: a local CPU wheel first (no download), its dependencies from the index.
    if pip("--no-index", "--no-deps", "--only-binary=:all:", REQUIREMENT) and torch_in_range():
        return 0 if pip(REQUIREMENT) else 1
    print("No local torch wheel; using PyTorch's CPU index.", flush=True)
    ok = pip("--retries", "1", "--timeout", "30", "--index-url", CPU_INDEX,
             "--extra-index-url", "https://pypi.org/simple", REQUIREMENT)
    if ok:
        return 0
    print("PyTorch's CPU index is out of reach; installing the default build from PyPI.")
    return 0 if pip(REQUIREMENT) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
