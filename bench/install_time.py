"""How long `make install` takes to put the course's dependencies in a new virtual
environment: with pip alone (what it did before) and with uv after torch (what it does now).

Both ways start from a fresh venv with PyTorch already installed by scripts/install_torch.py
(timed too; the same step in both), then install `-e ".[dev]"`: pip with --no-compile, or
pip installs uv and uv installs the rest, with an empty uv cache of its own, as on a new CI
machine. The two venvs must end with the same packages at the same versions (uv's own aside).
Prints the seconds, the ratio, and writes bench/results/install_time.csv. About 2 minutes;
needs the package index that `make install` uses.

    .venv/bin/python bench/install_time.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
PIP = ["-m", "pip", "install", "--disable-pip-version-check", "--no-compile", "--quiet"]


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def packages(python: Path) -> set[str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze",
                          "--disable-pip-version-check"], capture_output=True, text=True,
                         check=True).stdout
    return {line for line in out.splitlines() if not line.startswith("uv==")}


def main() -> int:
    rows, installed = [], {}
    with tempfile.TemporaryDirectory(prefix="install_time_") as tmp:
        for way in ("pip", "uv"):
            venv = Path(tmp) / way
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            python = venv / "bin" / "python"
            torch_s = timed([str(python), "scripts/install_torch.py", "--no-compile"])
            if way == "pip":
                rest_s = timed([str(python), *PIP, "-e", ".[dev]"])
            else:
                env = os.environ | {"UV_CACHE_DIR": str(Path(tmp) / "uv-cache")}
                rest_s = timed([str(python), *PIP, "uv"])
                rest_s += timed([str(venv / "bin" / "uv"), "pip", "install", "--quiet",
                                 "--python", str(python), "-e", ".[dev]"], env)
            installed[way] = packages(python)
            rows.append({"way": way, "torch_s": round(torch_s, 1), "rest_s": round(rest_s, 1),
                         "packages": len(installed[way])})
            print(f"{way}: torch {torch_s:.1f} s, the rest {rest_s:.1f} s, "
                  f"{len(installed[way])} packages", flush=True)
    table = pd.DataFrame(rows)
    different = installed["pip"] ^ installed["uv"]
    table["same_versions"] = not different
    print(table.to_string(index=False))
    print(f"uv installs the rest in {rows[1]['rest_s'] / rows[0]['rest_s']:.2f} of pip's time")
    if different:
        print("The two ways installed different versions:", sorted(different))
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "install_time.csv", index=False)
    return 1 if different else 0


if __name__ == "__main__":
    raise SystemExit(main())
