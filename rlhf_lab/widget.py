"""The rating widgets: click which of two answers is better, or thumbs up/down on one answer.

Taught in notebooks/03_human_feedback.ipynb. The state behind them is `rating_queue.RatingQueue`,
which the class server (`make rate`) draws in a plain page.

- The rubric sits at the top, so every rater judges by the same four criteria.
- Every click appends one record to `<folder>/<rater>.jsonl` and flushes it to disk at once
  (`feedback.RatingsWriter`), before the next item is shown.
- A new widget on the same file (after a kernel restart, say) resumes: items already rated
  or skipped are never shown again, and the progress counts the ratings already made.
- Undo appends an undo record for the latest rating of these items and shows that item again.
- Keyboard: Tab to a button and press Space or Enter; or click into the "Keys" box and type
  a letter (pairs: a, b, t, s, u; thumbs: +, -, s, u).
"""
from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

import ipywidgets as widgets

from . import feedback
from .gold import RUBRIC
from .rating_queue import NOUNS, RatingQueue


def _box(width: str) -> widgets.Layout:
    return widgets.Layout(border="1px solid #bbb", padding="6px", margin="2px", width=width)


def _text_html(title: str, text: str) -> str:
    """A title and a text, HTML-escaped, line breaks kept."""
    return (f"<b>{html.escape(title)}</b><div style='white-space: pre-wrap'>"
            f"{html.escape(text)}</div>")


class _RatingWidget(widgets.VBox):
    """What both widgets share: the file, the queue of items, progress, undo and keys.

    A subclass sets `kind` (of record) and `actions` (choice, button label, key), and
    implements `_record` (a new record for a choice), `_answers_box` (the widgets that show
    answers) and `_render`.
    """

    kind: str
    actions: tuple[tuple[str, str, str], ...]

    def __init__(self, items: Iterable[dict], rater: str, model: str,
                 target: int | None = None, folder: str | Path | None = None):
        super().__init__()
        self.model = model
        self.ratings = RatingQueue(items, self.kind, rater, folder, target)
        self._build()
        self._show()

    # --- state: the rating queue ------------------------------------------------------------
    @property
    def writer(self) -> feedback.RatingsWriter:
        """Appends to the rater's file."""
        return self.ratings.writer

    @property
    def target(self) -> int:
        """How many ratings are asked for."""
        return self.ratings.target

    @property
    def current(self) -> dict | None:
        """The item on screen, or None when every item is rated or skipped."""
        return self.ratings.current

    @property
    def rated(self) -> int:
        """How many of these items have a rating (skips do not count)."""
        return self.ratings.rated

    @property
    def history(self) -> list[dict]:
        """The ratings of these items, oldest first: the undo stack."""
        return self.ratings.history

    # --- actions -------------------------------------------------------------------------
    def rate(self, choice: str) -> None:
        """Save `choice` for the item on screen, then show the next one."""
        if self.current is None:
            return
        try:
            self.ratings.rate(self._record(self.current, choice))
        except (OSError, ValueError) as error:      # a full disk, a file made read-only, ...
            self._show(f"NOT SAVED: {error}. Your click was not recorded; try again, or tell "
                       "your instructor.")
            return
        self._show(f"Saved: {self._label(choice)}.")

    def undo(self) -> None:
        """Append an undo record for the latest rating and show its item again."""
        try:
            record = self.ratings.undo()
        except (OSError, ValueError) as error:
            self._show(f"NOT UNDONE: {error}. The rating stands; try again, or tell your "
                       "instructor.")
            return
        self._show("Nothing to undo." if record is None else
                   f"Undone: {self._label(record['choice'])}.")

    def _label(self, choice: str) -> str:
        return next(label for c, label, _ in self.actions if c == choice)

    def _on_key(self, change: dict) -> None:
        typed = change["new"][-1:].lower()
        if not typed:
            return
        self.key_box.value = ""
        choices = {key: choice for choice, _, key in self.actions}
        if typed == "u":
            self.undo()
        elif typed in choices:
            self.rate(choices[typed])
        else:
            self._show(f"The key {typed!r} does nothing here.")

    # --- display -------------------------------------------------------------------------
    def _build(self) -> None:
        rubric = widgets.HTML(_text_html("The rubric", RUBRIC))
        self.progress = widgets.IntProgress(min=0, max=self.target)
        self.progress_label = widgets.Label()
        self.prompt = widgets.HTML()
        self.buttons = {choice: widgets.Button(description=label, tooltip=f"key: {key}")
                        for choice, label, key in self.actions}
        self.buttons["undo"] = widgets.Button(description="Undo", tooltip="key: u",
                                              button_style="warning")
        for choice, button in self.buttons.items():
            button.on_click(lambda _, c=choice: self.undo() if c == "undo" else self.rate(c))
        letters = ", ".join(key for _, _, key in self.actions)
        self.key_box = widgets.Text(value="", description="Keys:", continuous_update=True,
                                 placeholder=f"click here, then type {letters} (u: undo)")
        self.key_box.observe(self._on_key, names="value")
        self.status = widgets.Label()
        help_text = widgets.HTML("<small>Keyboard: Tab to a button, then Space or Enter; "
                                 f"or click into Keys and type {letters}, u to undo.</small>")
        self.children = [rubric, widgets.HBox([self.progress, self.progress_label]),
                         self.prompt, self._answers_box(),
                         widgets.HBox(list(self.buttons.values())), self.key_box, help_text,
                         self.status]

    def _show(self, message: str = "") -> None:
        rated = self.rated
        self.progress.value = min(rated, self.target)
        self.progress_label.value = f"rated {rated} / {self.target}"
        if rated >= self.target:
            self.progress_label.value += " (target reached: stop here or go on)"
        item = self.current
        for choice, _, _ in self.actions:
            self.buttons[choice].disabled = item is None
        self.buttons["undo"].disabled = not self.history
        if item is None:
            self.prompt.value = f"<b>No {NOUNS[self.kind]} left to rate. Thank you!</b>"
        else:
            self.prompt.value = _text_html("Prompt", item["prompt"])
        self._render(item)
        self.status.value = message


class RatingWidget(_RatingWidget):
    """Pairwise ratings: two answers to one prompt side by side; A better, B better, Tie, Skip.

    pairs: dicts {prompt, answer_a, answer_b} (optionally "model" and "model_b", the
    policies that wrote each answer; `model` is used where they are absent).
    target: how many ratings are asked for (default: all pairs).
    folder: where `<rater>.jsonl` lives (default `feedback.FEEDBACK_DIR`).
    """

    kind = "pair"
    actions = (("a", "A better", "a"), ("b", "B better", "b"), ("tie", "Tie", "t"),
               ("skip", "Skip", "s"))

    def _record(self, pair: dict, choice: str) -> dict:
        return feedback.pair_record(self.writer.rater, pair["prompt"], pair["answer_a"],
                                    pair["answer_b"], choice,
                                    *feedback.item_models(pair, self.model))

    def _answers_box(self) -> widgets.HBox:
        self.answer_a = widgets.HTML(layout=_box("50%"))
        self.answer_b = widgets.HTML(layout=_box("50%"))
        return widgets.HBox([self.answer_a, self.answer_b])

    def _render(self, pair: dict | None) -> None:
        self.answer_a.value = _text_html("Answer A", pair["answer_a"]) if pair else ""
        self.answer_b.value = _text_html("Answer B", pair["answer_b"]) if pair else ""


class SingleRatingWidget(_RatingWidget):
    """Thumbs up or down on one answer at a time. items: dicts {prompt, answer}."""

    kind = "single"
    actions = (("up", "👍 Good", "+"), ("down", "👎 Bad", "-"), ("skip", "Skip", "s"))

    def _record(self, item: dict, choice: str) -> dict:
        return feedback.single_record(self.writer.rater, item["prompt"], item["answer"],
                                      choice, feedback.item_models(item, self.model)[0])

    def _answers_box(self) -> widgets.HTML:
        self.answer = widgets.HTML(layout=_box("100%"))
        return self.answer

    def _render(self, item: dict | None) -> None:
        self.answer.value = _text_html("Answer", item["answer"]) if item else ""
