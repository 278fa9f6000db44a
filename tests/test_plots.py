"""The live figure: in a notebook it shows, and saves, one rendered picture per redraw, and
every later redraw replaces the picture where it stands."""
import io
import time

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from rlhf_lab import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header (the IHDR chunk right after the magic bytes)."""
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(tmp_path))
    return lambda: plots.figures_dir()


class FakeHandle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, picture):
        self.shown.append(("update", picture))


def test_in_a_notebook_the_picture_shown_is_the_file_saved_and_redraws_replace_it(figures,
                                                                                   monkeypatch):
    import IPython.display

    shown = []

    def display(picture, display_id=False):
        assert display_id is True
        shown.append(("display", picture))
        return FakeHandle(shown)

    monkeypatch.setattr(plots, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    live = plots.LivePlot({"loss": ["train_loss", "val_loss"], "lr": ["lr"]}, name="curves")
    history = pd.DataFrame({"step": [0, 10], "train_loss": [3.0, 2.0], "val_loss": [3.1, 2.2],
                            "lr": [1e-3, 5e-4]})
    live(history.iloc[:1])
    live(history)
    assert [how for how, _ in shown] == ["display", "update"]      # one output, replaced
    first, last = (picture.data for _, picture in shown)
    saved = (figures() / "curves.png").read_bytes()
    assert saved == last != first                                   # the file is the last picture
    # two panels of 5.2 x 3.4 inches at the figure's 100 dpi
    assert png_size(last) == (1040, 340)
    assert plt.get_fignums() == []                                  # nothing left open


def test_outside_a_notebook_the_picture_is_only_saved(figures, monkeypatch):
    monkeypatch.setattr(plots, "_in_notebook", lambda: False)
    live = plots.LivePlot({"gold": ["gold"]}, x="iteration", name="gold")
    live(pd.DataFrame({"iteration": [0, 1], "gold": [3.5, 3.6]}))
    saved = (figures() / "gold.png").read_bytes()
    assert png_size(saved) == (520, 340)
    buffer = io.BytesIO()
    live.fig.savefig(buffer, format="png")
    assert buffer.getvalue() == saved                               # the figure, as drawn
    plots.LivePlot({"gold": ["gold"]})(pd.DataFrame({"step": [0], "gold": [1.0]}))
    assert sorted(p.name for p in figures().iterdir()) == ["gold.png"]   # no name: no file


@pytest.mark.parametrize("live, first, measured, waited, final", [
    ("1", True, True, True, True), ("0", False, False, False, True)])
def test_redraw_due_redraws_while_training_only_when_live_plots_are_on(monkeypatch, live, first,
                                                                      measured, waited, final):
    monkeypatch.setenv("RLHF_LAB_LIVE_PLOTS", live)
    now = time.perf_counter()
    assert plots.redraw_due(None) is first                               # the first call
    assert plots.redraw_due(now, measured=True) is measured
    assert plots.redraw_due(now - plots.LIVE_PLOT_SECONDS - 1) is waited  # the clock fired
    assert plots.redraw_due(now, final=True) is final                    # the loop's last call
    assert plots.redraw_due(now) is False                                 # just drawn: wait


def test_a_bad_live_plots_setting_names_the_valid_values(monkeypatch):
    monkeypatch.setenv("RLHF_LAB_LIVE_PLOTS", "no")
    with pytest.raises(ValueError, match=r"RLHF_LAB_LIVE_PLOTS='no': use 1 .* or 0"):
        plots.redraw_due(None)
