"""Answers already sampled: the same model, asked the same questions with the same seed, writes
the same answers, so the course samples them once and keeps them.

Used by `evaluation.sample_answers`, the sampling behind the report card's evaluation
(notebooks/02_sft.ipynb) and the held-out points of every RL curve (chapters 06-13). The same
work comes back often: each RL run from SFT first measures SFT with the report card's first
seed, which chapter 02 already did; a run's last curve point is the first seed of the
evaluation that follows it; chapter 06 evaluates SFT again beside PPO.

An entry is keyed by everything the answers depend on: the policy's weights, the reference's
weights (the KL), the tokenizer, the questions, the seed, the answer length, the device kind
and the source of the sampling code. A key is a digest of those bytes, so a changed model or a
changed question is a new key and never a stale answer. Entries live in memory and as small
JSON files under artifacts/<mode>/answer_cache/ (written whole, then renamed into place),
so the next chapter finds them too. An unreadable file is sampled again and rewritten.

RLHF_LAB_ANSWER_CACHE=0 in the environment, or `with answer_cache.disabled():`, samples every
time (the unit tests do, so that a test of reproducibility samples twice).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from .config import artifacts_dir

FOLDER = "answer_cache"
IN_MEMORY = 256                     # entries kept in this process (each a few tens of kB)
_memory: OrderedDict[str, tuple[list[str], list[float]]] = OrderedDict()
_switched_off = 0                   # depth of `disabled()` blocks


def enabled() -> bool:
    """Whether answers are looked up (RLHF_LAB_ANSWER_CACHE is not "0", no `disabled()`)."""
    return _switched_off == 0 and os.environ.get("RLHF_LAB_ANSWER_CACHE", "1") != "0"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Sample every time inside this block: nothing is looked up or stored."""
    global _switched_off
    _switched_off += 1
    try:
        yield
    finally:
        _switched_off -= 1


def model_digest(model) -> str:
    """SHA-256 of a model's class, and of every tensor of its state dict: name, dtype, shape
    and bytes. Two models with equal digests compute the same function."""
    import torch

    h = hashlib.sha256(type(model).__name__.encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1).contiguous().cpu()
            h.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
            h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """SHA-256 of a tokenizer's definition (vocabulary, merges, special tokens), without its
    padding and truncation settings, which sampling sets itself (left padding)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        definition = {"vocab": tokenizer.get_vocab()}
    else:
        definition = json.loads(backend.to_str())
        definition.pop("padding", None)
        definition.pop("truncation", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def source_digest(*files: str | Path) -> str:
    """SHA-256 of the source files whose code decides the answers: `generation` and `kl`
    always, and the caller's own `files`. Read once per process: the code that runs is the
    code that was imported."""
    from . import generation, kl
    h = hashlib.sha256()
    for file in (generation.__file__, kl.__file__, *files):
        h.update(Path(file).read_bytes())
    return h.hexdigest()


def answers_key(policy, tokenizer, prompts: list[str], seed: int, reference,
                max_new_tokens: int, code: str) -> str:
    """The key of one seed's answers to `prompts` by `policy` (KL from `reference`, or None);
    `code` is the `source_digest` of the sampling code."""
    device = next(policy.parameters()).device.type
    parts = {"policy": model_digest(policy),
             "reference": None if reference is None else model_digest(reference),
             "tokenizer": tokenizer_digest(tokenizer), "prompts": list(prompts), "seed": seed,
             "max_new_tokens": max_new_tokens, "device": device, "code": code}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _path(key: str) -> Path:
    return artifacts_dir() / FOLDER / f"{key}.json"


def _read(key: str, n: int) -> tuple[list[str], list[float]] | None:
    try:
        stored = json.loads(_path(key).read_text())
        answers, kl = stored["answers"], [float(x) for x in stored["kl"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(answers) != n or len(kl) != n or not all(isinstance(a, str) for a in answers):
        return None
    return answers, kl


def _write(key: str, answers: list[str], kl: list[float]) -> None:
    """Store an entry; a folder that cannot be written (a full disk, read-only artifacts)
    costs only the saving, never the evaluation: a warning says so."""
    path = _path(key)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"answers": answers, "kl": kl}))     # NaN is written as NaN
        os.replace(tmp, path)
    except OSError as error:
        warnings.warn(f"Could not keep sampled answers in {path.parent} ({error}); they will "
                      "be sampled again next time. Free space there, or set "
                      "RLHF_LAB_ANSWER_CACHE=0.", stacklevel=3)


def cached_answers(key: str, n: int, sample: Callable[[], tuple[list[str], list[float]]]
                   ) -> tuple[list[str], list[float]]:
    """The answers and KL stored under `key` (n of each); if there are none, `sample()` them
    and store them. Returns new lists, so the caller may change them freely."""
    if not enabled():
        return sample()
    found = _memory.get(key) or _read(key, n)
    if found is None:
        answers, kl = sample()
        found = (list(answers), [float(x) for x in kl])
        _write(key, *found)
    _memory[key] = found
    _memory.move_to_end(key)
    while len(_memory) > IN_MEMORY:
        _memory.popitem(last=False)
    return list(found[0]), list(found[1])


def clear_memory() -> None:
    """Forget the entries kept in this process (the files stay)."""
    _memory.clear()
