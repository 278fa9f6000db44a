"""Where `make test`'s time goes: every test file and every notebook, in seconds of one core.

Runs the two pytest processes of `make test` (the unit tests, then the notebooks), one after
the other and each on one thread, as `make test` runs each of them beside the other, with
`--durations=0`, and adds up the setup, call and teardown times per test file and per
notebook. The two totals say how long each track takes alone; `make test` runs them side by
side, so its wall time is about the longer of the two plus the install, a little more where
the two share the memory bus. Prints the largest entries and writes
bench/results/test_time.csv (track, file, seconds, share of its track).

    .venv/bin/python bench/test_time.py                    # about 25 minutes on 2 cores
    .venv/bin/python bench/test_time.py --logs U.txt N.txt  # add up the logs of earlier runs

--logs reads the output of `pytest -q --durations=0 tests` and of the same for `notebooks`,
run as above (RLHF_LAB_QUICK=1, OMP_NUM_THREADS=1), instead of running them.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)s (setup|call|teardown)\s+(\S+?)::")
TRACKS = ("tests", "notebooks")


def run_track(track: str) -> str:
    """Run pytest on `track` as `make test` runs it (quick mode, one thread); its output."""
    env = os.environ | {"RLHF_LAB_QUICK": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "--durations=0", track],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"pytest {track} failed; its output ends:\n{done.stdout[-3000:]}")
    return done.stdout


def per_file(log: str) -> pd.Series:
    """Seconds per test file or notebook, from the --durations=0 table of a pytest output."""
    seconds: dict[str, float] = {}
    for line in log.splitlines():
        m = DURATION.match(line.strip())
        if m:
            seconds[m.group(3)] = seconds.get(m.group(3), 0.0) + float(m.group(1))
    if not seconds:
        sys.exit("no durations found: run pytest with --durations=0 (and without -vv hiding them)")
    return pd.Series(seconds).sort_values(ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", nargs=2, metavar=("UNITS_LOG", "NOTEBOOKS_LOG"),
                        help="outputs of earlier pytest runs to add up instead of running them")
    args = parser.parse_args()
    logs = ([Path(p).read_text() for p in args.logs] if args.logs
            else [run_track(track) for track in TRACKS])
    frames = []
    for track, log in zip(TRACKS, logs):
        s = per_file(log)
        frames.append(pd.DataFrame({"track": track, "file": s.index, "seconds": s.values.round(1),
                                    "share": (s.values / s.sum()).round(3)}))
        print(f"{track}: {s.sum():.0f} s of one core; the largest:")
        print(s.head(12).round(1).to_string(), "\n")
    table = pd.concat(frames, ignore_index=True)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "test_time.csv", index=False)
    print(f"wrote {RESULTS / 'test_time.csv'}")


if __name__ == "__main__":
    main()
