"""What one redraw of a live training figure costs, the way a notebook shows it.

A training loop stops while its figure redraws (`plots.LivePlot`, at most every
`plots.LIVE_PLOT_SECONDS`, and at every held-out measurement). Times, alternating for --rounds
rounds, chapter 06's four-panel PPO figure over a 100-iteration history, two ways:
- before: the figure handed to IPython's display (which renders it as a tight PNG), then saved
  once more with `save_figure` (another render, at 110 dpi, tight);
- one render: `plots.png_bytes`, the bytes shown and the bytes saved (what `LivePlot` does).
Both draw the figure first (`LivePlot.draw`). Needs no model; prints a table and writes
bench/results/live_plot.csv.

    .venv/bin/python bench/live_plot.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def history(iterations: int = 100, every: int = 10) -> pd.DataFrame:
    """A PPO history with every column chapter 06's figure draws; held-out ones every 10."""
    from rlhf_lab.ppo_stage import PANELS

    rng = np.random.default_rng(0)
    columns = {c for cols in PANELS.values() for c in cols}
    rows = pd.DataFrame({"iteration": range(iterations + 1)})
    for c in sorted(columns):
        values = np.cumsum(rng.normal(0.01, 0.1, iterations + 1))
        rows[c] = [v if not c.startswith(("gold", "heldout")) or i % every == 0 else np.nan
                   for i, v in enumerate(values)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating timed rounds")
    args = parser.parse_args()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.environ["RLHF_LAB_ARTIFACTS"] = tempfile.mkdtemp(prefix="live_plot_bench_")
    from rlhf_lab import plots
    from rlhf_lab.ppo_stage import ppo_live_plot

    live, rows = ppo_live_plot("bench_curves"), history()

    def before() -> None:
        fig = live.draw(rows)
        fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")   # IPython's display
        plots.save_figure(fig, "bench_curves")
        plt.close(fig)

    def one_render() -> None:
        fig = live.draw(rows)
        png = plots.png_bytes(fig)
        plots.figure_path("bench_curves").write_bytes(png)
        plt.close(fig)

    def draw_only() -> None:
        plt.close(live.draw(rows))

    ways = {"before": before, "one_render": one_render, "draw_only": draw_only}
    for way in ways.values():                                   # warm-up: fonts, caches
        way()
    times = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    ratios = [b / o for b, o in zip(times["before"], times["one_render"])]
    table = pd.DataFrame([{
        "panels": len(live.panels), "iterations": len(rows) - 1,
        "before_s": round(median["before"], 3), "one_render_s": round(median["one_render"], 3),
        "draw_only_s": round(median["draw_only"], 3),
        "ratio": round(statistics.median(ratios), 2),
        "ratio_range": f"{min(ratios):.2f} to {max(ratios):.2f}", "rounds": args.rounds}])
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "live_plot.csv", index=False)


if __name__ == "__main__":
    main()
