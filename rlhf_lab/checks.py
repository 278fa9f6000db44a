"""The setup check of notebooks/00_setup.ipynb: one line per check, [OK] or [FAIL] with the fix."""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import DATA_DIR, artifacts_dir, get_device, mode_name

PACKAGES = ["torch", "transformers", "tokenizers", "safetensors", "ipywidgets", "matplotlib",
            "pandas", "tqdm"]
DATA_FILES = ["raw/web_dump.txt", "sft/demonstrations.jsonl", "prompts/train.jsonl",
              "prompts/heldout.jsonl"]
FIX_INSTALL = "run `make lab` from the project folder (it installs everything into .venv)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        status = "[OK]  " if self.ok else "[FAIL]"
        text = f"{status} {self.name}: {self.detail}"
        return text if self.ok else f"{text}\n       fix: {self.fix}"


def check_python() -> Check:
    v = sys.version_info
    return Check("python", v >= (3, 10), f"{v.major}.{v.minor}.{v.micro}",
                 "install Python 3.10 or newer, then `make lab` again")


def check_package(name: str) -> Check:
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        return Check(name, False, f"not importable ({err})", FIX_INSTALL)
    return Check(name, True, getattr(module, "__version__", "installed"))


def check_device() -> Check:
    import torch

    device = get_device()
    try:
        x = torch.ones(64, 64, device=device)
        ok = bool((x @ x)[0, 0].item() == 64)
    except RuntimeError as err:
        return Check("device", False, f"{device}: {err}",
                     "set RLHF_LAB_DEVICE=cpu before starting JupyterLab")
    return Check("device", ok, f"{device} (a 64x64 matrix product works)",
                 "set RLHF_LAB_DEVICE=cpu before starting JupyterLab")


def check_data(data_dir: Path = DATA_DIR) -> Check:
    missing = [f for f in DATA_FILES if not (data_dir / f).exists()]
    if missing:
        return Check("data", False, f"missing {', '.join(missing)}",
                     "restore them with `git checkout data/` or regenerate with `make data`")
    return Check("data", True, f"{len(DATA_FILES)} files under data/")


def check_artifacts_writable() -> Check:
    folder = artifacts_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        return Check("artifacts", False, f"cannot write ({err})",
                     "run the notebooks from a folder you can write to, or set "
                     "RLHF_LAB_ARTIFACTS to one")
    return Check("artifacts", True, f"writable, {mode_name()} mode saves to artifacts/{mode_name()}/")


def run_checks() -> list[Check]:
    """Every check, in the order the notebook prints them."""
    return [check_python(), *map(check_package, PACKAGES), check_device(), check_data(),
            check_artifacts_writable()]
