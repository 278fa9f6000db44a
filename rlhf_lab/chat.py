"""A chat with the course's models: ask your own question, compare their answers side by side,
and press thumbs up or down under each, as ChatGPT asks its users.

Taught in notebooks/12_thumbs.ipynb, where the thumbs you give here train the next model (KTO)
and the chat shows you its answers.

- Every thumb is saved at once, as a chapter 03 `single` record naming the model that wrote the
  answer (`feedback.RatingsWriter`: one line, flushed and fsynced before the click returns).
- A save that fails is shown under the answer, in red; the click is never silently lost.
- The sampling temperature is visible and settable; Regenerate samples new answers to the
  same question with the next seed.
- Where the world knows the question (it is one of `World().questions`, greeting and all), the
  gold score of each answer is shown beside it.
"""
from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets

from . import feedback
from .gold import gold_score
from .world import World

MAX_QUESTION_CHARS = 300      # a longer question is refused with a message, not truncated
MAX_NEW_TOKENS = 40           # as the report card's evaluation
TEMPERATURES = (0.1, 2.0)     # the range the chat offers


def question_problem(question: object) -> str | None:
    """Why `question` cannot be asked (empty, too long, not text), or None if it can. The
    class server (`class_server.py`) checks its students' questions with this too."""
    if not isinstance(question, str):
        return f"A question is text, not {type(question).__name__}."
    if not question.strip():
        return "Type a question first."
    if len(question) > MAX_QUESTION_CHARS:
        return (f"That question has {len(question)} characters; the models read at most "
                f"{MAX_QUESTION_CHARS}. Ask something shorter.")
    return None


def answer_gold(world: World, question: str, answer: str) -> float | None:
    """The gold score of `answer` to `question` (0 to 4), or None where the world does not know
    the question (a question of the learner's own)."""
    try:
        known = world.lookup(question)
    except KeyError:
        return None
    return gold_score(known, answer).total


def load_chat_models(names: list[str]) -> dict[str, tuple]:
    """{name: (model, tokenizer)} for each name: an artifact ('sft', 'ppo', ...) or a model
    folder (any causal LM saved with `save_pretrained`)."""
    from . import artifacts
    from .causal_lm import check_model, load_causal_lm

    models = {}
    for name in names:
        if Path(name).is_dir():
            models[Path(name).name] = load_causal_lm(check_model(name))
        elif "/" in name or "\\" in name:         # a path, not an artifact's name
            raise FileNotFoundError(f"No model folder at {name}: give a folder saved with "
                                    "save_pretrained, or an artifact name such as sft or ppo.")
        else:
            models[name] = artifacts.load_model(name)
    return models


class ChatWidget(widgets.VBox):
    """Type a question, get one answer from each model, side by side, thumbs under each.

    models: {name: (model, tokenizer)}; rater: your name (the file `<folder>/<rater>.jsonl`);
    folder: default `feedback.FEEDBACK_DIR`; temperature: the sampling temperature to start
    with; seed: the first sampling seed (each Ask or Regenerate uses the next one).
    """

    def __init__(self, models: dict[str, tuple], rater: str, folder: str | Path | None = None,
                 temperature: float = 1.0, seed: int = 0):
        super().__init__()
        if not models:
            raise ValueError("Give the chat at least one model: {name: (model, tokenizer)}, "
                             "e.g. load_chat_models(['sft', 'ppo']).")
        self.models = dict(models)
        self.writer = feedback.RatingsWriter(folder, rater)
        self.seed = seed
        self.world = World()
        self.question: str | None = None
        self.answers: dict[str, str] = {}
        self.saved: list[dict] = []
        self._build(temperature)

    # --- actions -------------------------------------------------------------------------
    def ask(self, question: str | None = None) -> None:
        """Answer `question` (default: the text box) with every model, at the slider's
        temperature, with the next seed."""
        from .generation import generate   # here: the class server's rating path needs no torch

        question = (self.question_box.value if question is None else question).strip()
        self.question_box.value = question
        problem = question_problem(question)
        if problem:
            self.status.value = _coloured(problem, "#b00")
            return
        self.question = question
        self.seed += 1
        temperature = self.temperature.value
        self.answers = {name: generate(model, tokenizer, [question], temperature=temperature,
                                       max_new_tokens=MAX_NEW_TOKENS, seed=self.seed)[0]
                        for name, (model, tokenizer) in self.models.items()}
        self.status.value = (f"Answers sampled at temperature {temperature:g} (seed "
                             f"{self.seed}). Press 👍 or 👎 under an answer: it is saved at once.")
        self._render()

    def regenerate(self) -> None:
        """New answers to the same question (the next seed)."""
        if self.question is None:
            self.status.value = _coloured("Ask a question first.", "#b00")
            return
        self.ask(self.question)

    def thumb(self, name: str, choice: str) -> dict | None:
        """Save a thumb ('up' or 'down') for model `name`'s answer on screen. Returns the
        record, or None when it could not be saved (the reason is shown under the answer)."""
        if name not in self.answers:
            raise KeyError(f"No answer from {name!r} on screen; the models are {list(self.models)}.")
        try:
            record = self.writer.append(feedback.single_record(
                self.writer.rater, self.question, self.answers[name], choice, name))
        except (OSError, ValueError) as error:
            self.notes[name].value = _coloured(f"Not saved: {error}", "#b00")
            return None
        self.saved.append(record)
        for button in self.thumbs[name].values():
            button.disabled = True
        self.notes[name].value = _coloured(
            f"Saved {'👍' if choice == 'up' else '👎'} to {self.writer.path.name}", "#070")
        return record

    def gold(self, answer: str) -> float | None:
        """The gold score of `answer` to the question on screen, or None if the world does
        not know the question."""
        return answer_gold(self.world, self.question, answer)

    # --- display -------------------------------------------------------------------------
    def _build(self, temperature: float) -> None:
        self.question_box = widgets.Text(placeholder="Ask a question, e.g. what colour is a cat?",
                                         layout=widgets.Layout(width="60%"))
        ask = widgets.Button(description="Ask", button_style="primary")
        ask.on_click(lambda _: self.ask())
        again = widgets.Button(description="Regenerate")
        again.on_click(lambda _: self.regenerate())
        low, high = TEMPERATURES
        self.temperature = widgets.FloatSlider(value=temperature, min=low, max=high, step=0.1,
                                               description="temperature", readout_format=".1f",
                                               style={"description_width": "initial"})
        self.columns, self.bodies, self.notes, self.thumbs = {}, {}, {}, {}
        for name in self.models:
            self.bodies[name] = widgets.HTML()
            self.notes[name] = widgets.HTML()
            self.thumbs[name] = {choice: widgets.Button(description=label, disabled=True)
                                 for choice, label in (("up", "👍 Good"), ("down", "👎 Bad"))}
            for choice, button in self.thumbs[name].items():
                button.on_click(lambda _, n=name, c=choice: self.thumb(n, c))
            self.columns[name] = widgets.VBox(
                [self.bodies[name], widgets.HBox(list(self.thumbs[name].values())),
                 self.notes[name]],
                layout=widgets.Layout(border="1px solid #bbb", padding="6px", margin="2px",
                                      width=f"{100 // len(self.models) - 1}%"))
        self.status = widgets.HTML()
        self.children = [widgets.HBox([self.question_box, ask, again]), self.temperature,
                         widgets.HBox(list(self.columns.values())), self.status]
        self._render()

    def _render(self) -> None:
        for name in self.models:
            answer = self.answers.get(name)
            title = f"<b>{html.escape(name)}</b>"
            if answer is None:
                self.bodies[name].value = title
            else:
                gold = self.gold(answer)
                score = "" if gold is None else f" <small>(gold {gold:.2f} of 4)</small>"
                self.bodies[name].value = (f"{title}{score}<div style='white-space: pre-wrap'>"
                                           f"{html.escape(answer)}</div>")
            for button in self.thumbs[name].values():
                button.disabled = answer is None
            self.notes[name].value = ""


def _coloured(text: str, colour: str) -> str:
    return f"<span style='color: {colour}'>{html.escape(text)}</span>"
