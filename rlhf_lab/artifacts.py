"""Artifacts: what one notebook saves under artifacts/<mode>/ and the next one loads.

Taught in notebooks/00_setup.ipynb. A missing artifact never ends in a raw traceback: the
learner reads which notebook makes it, and may ask for it to be built now in quick mode.
Models are saved with `save_pretrained` (safetensors) into a temporary folder that is renamed
into place only when complete, so a crash mid-save never leaves half a model behind.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .config import artifacts_dir, mode_name
from .stages import BY_ARTIFACT


class MissingArtifactError(FileNotFoundError):
    """An artifact an earlier notebook should have made is not there."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        msg = (f"The artifact '{name}' is missing ({mode_name()} mode, looked in "
               f"{display_path(name)}).")
        if name not in BY_ARTIFACT:
            msg += f" No notebook makes an artifact of that name; known: {sorted(BY_ARTIFACT)}."
        else:
            msg += (f" Run notebooks/{BY_ARTIFACT[name].notebook}.ipynb first, or build it now "
                    f"in quick mode (about a minute): require('{name}', build_if_missing=True).")
        super().__init__(msg)

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: just the message."""
        return [f"MissingArtifactError: {self}"]


def artifact_path(name: str) -> Path:
    return artifacts_dir() / name


def display_path(name: str) -> str:
    """Where artifact `name` lives, as a learner sees it: artifacts/<mode>/<name>."""
    return f"artifacts/{mode_name()}/{name}"


def exists(name: str) -> bool:
    path = artifact_path(name)
    return path.exists() and (path.is_file() or (path / "COMPLETE").exists())


def require(name: str, build_if_missing: bool = False) -> Path:
    """The path of artifact `name`. If it is missing: build it in quick mode when asked to
    (its stage in `stages.STAGES` says how), otherwise raise MissingArtifactError naming the
    notebook that makes it."""
    if not exists(name):
        if not build_if_missing or name not in BY_ARTIFACT:
            raise MissingArtifactError(name, artifact_path(name))
        stage = BY_ARTIFACT[name]
        print(f"Building '{name}' now in quick mode; notebooks/{stage.notebook}.ipynb "
              "builds a better one.")
        stage.build_quick()
    return artifact_path(name)


def save_dir(name: str, write: Callable[[Path], None], metadata: dict | None = None) -> Path:
    """Write a folder artifact atomically: `write(tmp)` fills a temporary folder, which is
    renamed into place with a COMPLETE marker and `metadata` as JSON. Under `accelerate
    launch` the main process writes and the others wait until it has (rlhf_lab.distributed)."""
    from . import distributed

    final = artifact_path(name)
    if not distributed.is_main_process():
        distributed.wait_for_everyone()
        return final
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    meta = {"mode": mode_name(), **(metadata or {})}
    (tmp / "rlhf_lab.json").write_text(json.dumps(meta, indent=2, default=str))
    (tmp / "COMPLETE").write_text("")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    distributed.wait_for_everyone()
    return final


def quiet_transformers() -> None:
    """No progress bars from `transformers` for loading or saving: the course's models are a
    few MB, and a bar per load only clutters the notebooks."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def save_model(model, tokenizer, name: str, metadata: dict | None = None,
               write_more: Callable[[Path], None] | None = None) -> Path:
    """Save a `transformers` model and its tokenizer as artifact `name`; `write_more(folder)`
    may add files of its own (a metrics CSV, say) to the same atomic save."""
    quiet_transformers()

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if write_more is not None:
            write_more(tmp)
    return save_dir(name, write, metadata)


def load_model(name: str, build_if_missing: bool = False, device=None):
    """Load model and tokenizer saved by `save_model`; see `require` for a missing one."""
    from .causal_lm import load_causal_lm

    path = require(name, build_if_missing)
    quiet_transformers()
    return load_causal_lm(path, device)


def read_metadata(name: str) -> dict:
    return json.loads((require(name) / "rlhf_lab.json").read_text())
