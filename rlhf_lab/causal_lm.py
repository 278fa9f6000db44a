"""Any causal language model in place of the tiny GPT: load one from a folder or a hub name,
and read its context length whatever its config calls it.

Used by `artifacts.load_model` (every notebook that loads a model) and by each stage's
`start_from`, the command line's `--model` (`python -m rlhf_lab sft --model PATH_OR_NAME`,
README "Going further"). The course needs only what every causal LM in `transformers` has:
logits from input ids, an attention mask and position ids, `generate`, hidden states of
`config.hidden_size` (PPO's value head), a `...ForSequenceClassification` twin with a `score`
head (the reward model), and a tokenizer with an end-of-text token. A hub name needs internet
the first time; tests only ever use folders.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .config import get_device
from .tokenizer import load_tokenizer

# what configs call their context length: Llama, Mistral, Qwen, GPT-2 (via its attribute
# map), OPT, ... / GPT-2, GPT-J / older GPT-2 / ChatGLM, Qwen-1 / others
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length",
                  "max_sequence_length")


class ModelLoadError(ValueError):
    """A model could not be used: the message says what is wrong and how to fix it."""


def check_model(path_or_name: str | Path) -> str:
    """Check, without loading any weights, that `path_or_name` is a causal LM (a folder saved
    with `save_pretrained`, or a hub name); return it as `from_pretrained` wants it.
    Raises ModelLoadError saying what is wrong and how to fix it."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    source = str(path_or_name)
    folder = Path(source).expanduser()
    if folder.exists():
        if not (folder / "config.json").exists():
            raise ModelLoadError(
                f"{source} has no config.json, so it is not a saved transformers model. Save "
                "one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder).")
        source = str(folder)
    elif source.startswith((".", "/", "~")):
        raise ModelLoadError(f"There is no folder {source}.")
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as error:
        raise ModelLoadError(
            f"Could not find the model '{source}' as a folder, in the hub cache, or on the hub "
            f"({type(error).__name__}). A hub name needs internet the first time; offline, "
            "pass a folder saved with save_pretrained.") from None
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ModelLoadError(
            f"'{source}' is a {config.model_type} model, not a causal language model: "
            "AutoModelForCausalLM cannot load it. Give a decoder-only LM (GPT-2, Llama, "
            "Mistral, Qwen, ...).")
    return source


def load_causal_lm(path_or_name: str | Path, device=None):
    """A causal LM (float32, eval mode, on `device` or `get_device()`) and its tokenizer,
    from a folder saved with `save_pretrained` or a hub name such as "gpt2"."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    source = check_model(path_or_name)
    tokenizer = load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelLoadError(
            f"The tokenizer in '{source}' has {len(tokenizer)} tokens but the model embeds only "
            f"{rows}; save the model with the tokenizer it was trained with, or call "
            "model.resize_token_embeddings(len(tokenizer)) before saving.")
    # Sampling is the course's own (generation.py): a hub model's suggested top_k, top_p or
    # repetition penalty would sample from another distribution than the one whose log-probs
    # PPO and the KL estimates read, so they are dropped.
    model.generation_config = GenerationConfig.from_model_config(model.config)
    model = model.to(device or get_device(), torch.float32)
    model.eval()
    return model, tokenizer


def context_length(model) -> int:
    """The longest sequence, in tokens, the model (or its config) can read."""
    config = getattr(model, "config", model)
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelLoadError(f"The {type(config).__name__} names no context length (looked for "
                         f"{', '.join(CONTEXT_FIELDS)}); set one of them in its config.json.")
