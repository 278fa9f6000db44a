"""One rater's way through a list of items to rate: which item is next, how many are rated,
rate and undo, every click saved to the rater's file before the next item is shown.

Taught in notebooks/03_human_feedback.ipynb, through the rating widgets (`widget.py`) that
draw it; the class server (`class_server.py`) drives the same queue from a student's browser.

- A new queue on the same file (after a kernel restart or a page reload) resumes: items
  already rated or skipped are never asked again, and `rated` counts the ratings made before.
- `undo` appends an undo record for the latest rating of these items and asks its item again.
- A click that cannot be saved raises (OSError or ValueError) and changes nothing: the item
  stays on screen, so the caller can say so and the rater can click again.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import feedback

NOUNS = {"pair": "pairs", "single": "answers"}     # what a queue of each kind asks about


def item_id(kind: str, item: dict) -> str:
    """The id of an item to rate: `feedback.pair_id` of a pair {prompt, answer_a, answer_b},
    `feedback.answer_id` of a single answer {prompt, answer}; the `item_key` of its ratings."""
    if kind == "pair":
        return feedback.pair_id(item["prompt"], item["answer_a"], item["answer_b"])
    return feedback.answer_id(item["prompt"], item["answer"])


class RatingQueue:
    """items: the items to rate (dicts), each asked once; kind: "pair" or "single" (the kind of
    record a rating is); rater and folder: the file `<folder>/<rater>.jsonl`; target: how many
    ratings are asked for (default: all items)."""

    def __init__(self, items: Iterable[dict], kind: str, rater: str,
                 folder: str | Path | None = None, target: int | None = None):
        if kind not in NOUNS:
            raise ValueError(f"kind must be one of {list(NOUNS)}, not {kind!r}.")
        self.kind = kind
        self.writer = feedback.RatingsWriter(folder, rater)
        self.items: dict[str, dict] = {}
        for item in items:
            self.items.setdefault(item_id(kind, item), item)   # the same item is asked once
        if not self.items:
            raise ValueError(f"No {NOUNS[kind]} to rate: give at least one.")
        self.target = len(self.items) if target is None else target
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 1:
            raise ValueError(f"target must be a whole number >= 1, not {target!r}.")
        self.history = self._earlier_ratings()        # the undo stack, oldest first
        done = {feedback.item_key(r) for r in self.history}
        self.queue = [k for k in self.items if k not in done]

    def _earlier_ratings(self) -> list[dict]:
        """Ratings of these items already in the file, oldest first."""
        if not self.writer.path.exists():
            return []
        return [r for r in feedback.load_ratings(self.writer.path)
                if r["kind"] == self.kind and feedback.item_key(r) in self.items]

    @property
    def rater(self) -> str:
        return self.writer.rater

    @property
    def current(self) -> dict | None:
        """The item to rate now, or None when every item is rated or skipped."""
        return self.items[self.queue[0]] if self.queue else None

    @property
    def current_id(self) -> str | None:
        """The id (`item_id`) of the item to rate now, or None."""
        return self.queue[0] if self.queue else None

    @property
    def rated(self) -> int:
        """How many of these items have a rating (skips do not count)."""
        latest = feedback.latest_per_item(self.history)
        return sum(r["choice"] != "skip" for r in latest)

    def rate(self, record: dict) -> dict:
        """Save `record`, the rating of the current item, and move on to the next item.
        Raises ValueError for a record about another item; OSError or ValueError from the
        writer when it cannot be saved (nothing changes then)."""
        if self.current is None or feedback.item_key(record) != self.current_id:
            raise ValueError("This rating is not about the item on screen; it was not saved.")
        self.writer.append(record)
        self.history.append(record)
        self.queue.pop(0)
        return record

    def undo(self) -> dict | None:
        """Append an undo record for the latest rating and ask its item again first. Returns
        the rating undone, or None when there is nothing to undo. Raises like `rate` when the
        undo cannot be saved (the rating stands then)."""
        if not self.history:
            return None
        record = self.history[-1]
        self.writer.append(feedback.undo_record(self.rater, record["id"]))
        self.history.pop()
        key = feedback.item_key(record)
        if key not in {feedback.item_key(r) for r in self.history}:
            self.queue.insert(0, key)
        return record
