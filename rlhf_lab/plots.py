"""Figures: live training curves that redraw in place, and saving every figure as PNG.

Taught in notebooks/01_pretraining.ipynb; every training chapter uses `LivePlot`.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .config import artifacts_dir


def figures_dir() -> Path:
    path = artifacts_dir() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def figure_path(name: str) -> Path:
    """artifacts/<mode>/figures/<name>.png, where every saved figure goes."""
    return figures_dir() / f"{name}.png"


def save_figure(fig: plt.Figure, name: str) -> Path:
    """Save `fig` as artifacts/<mode>/figures/<name>.png and return the path."""
    path = figure_path(name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def png_bytes(fig: plt.Figure) -> bytes:
    """`fig` as PNG at its own resolution (100 dpi by default, as a notebook shows it); its
    layout is already tight (`LivePlot.draw`), so no second pass trims the margins."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


LIVE_PLOT_SECONDS = 5.0   # the least time between two redraws of a live figure in a loop


def live_plots() -> bool:
    """Whether live figures redraw while a loop runs (RLHF_LAB_LIVE_PLOTS=1, the default) or
    are drawn once, at the end of the loop (RLHF_LAB_LIVE_PLOTS=0). Runs nobody watches set 0:
    `make test` and `make course` execute the notebooks headless, where a redraw is only
    replaced by the next one, and the last picture, the one a notebook keeps, is the same."""
    value = os.environ.get("RLHF_LAB_LIVE_PLOTS", "1")
    if value not in ("0", "1"):
        raise ValueError(f"RLHF_LAB_LIVE_PLOTS={value!r}: use 1 (live figures redraw while "
                         "training) or 0 (each is drawn once, when its loop ends).")
    return value == "1"


def redraw_due(last_drawn: float | None = None, final: bool = False,
               measured: bool = False) -> bool:
    """Whether a training loop should redraw its live figure now: on the loop's last call
    (`final`) always; while it runs, only if `live_plots()`, and then on the first call, on a
    measurement the loop wants seen at once (`measured`), and otherwise once
    LIVE_PLOT_SECONDS have passed since the last redraw (`last_drawn`, time.perf_counter()).
    A redraw costs about half a second (bench/live_plot.py: 0.54 s for chapter 06's four
    panels), against 2 to 4 s for a full-mode PPO iteration on a 2-core CPU."""
    if final:
        return True
    if not live_plots():
        return False
    return measured or last_drawn is None or time.perf_counter() - last_drawn >= LIVE_PLOT_SECONDS


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


class LivePlot:
    """A figure of training curves that redraws in place each time it is called.

    panels: one subplot per entry, title -> list of history columns drawn in it.
    Call it with the history DataFrame so far; in a notebook the figure updates where it
    stands, elsewhere nothing is shown. `name` saves the last picture as PNG.
    """

    def __init__(self, panels: dict[str, list[str]], x: str = "step", name: str | None = None,
                 ylabels: dict[str, str] | None = None):
        self.panels, self.x, self.name = panels, x, name
        self.ylabels = ylabels or {}
        self.handle = None
        self.fig = None

    def draw(self, history: pd.DataFrame) -> plt.Figure:
        fig, axes = plt.subplots(1, len(self.panels), figsize=(5.2 * len(self.panels), 3.4),
                                 squeeze=False)
        for ax, (title, columns) in zip(axes[0], self.panels.items()):
            for col in columns:
                if col in history:     # a column measured every few steps has gaps: skip them
                    points = history[[self.x, col]].dropna()
                    ax.plot(points[self.x], points[col], marker="o", markersize=3, label=col)
            ax.set_title(title)
            ax.set_xlabel(self.x)
            ax.set_ylabel(self.ylabels.get(title, title))
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        return fig

    def __call__(self, history: pd.DataFrame) -> None:
        """Redraw with `history`: in a notebook the picture where it stands, and the PNG file
        (`name`). Both are the same bytes, rendered once: rendering is most of a redraw's cost
        (bench/live_plot.py, four panels: 0.54 s a redraw, of which 0.21 s drawing; shown
        and saved apart, 1.18 s), and a training loop waits while it runs."""
        self.fig = self.draw(history)
        in_notebook = _in_notebook()
        if in_notebook or self.name:
            png = png_bytes(self.fig)
        if in_notebook:
            from IPython.display import Image, display
            picture = Image(data=png, format="png")
            if self.handle is None:
                self.handle = display(picture, display_id=True)
            else:
                self.handle.update(picture)
        if self.name:
            figure_path(self.name).write_bytes(png)
        plt.close(self.fig)
