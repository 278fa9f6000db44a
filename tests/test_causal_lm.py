"""Any causal LM in place of the tiny GPT (rlhf_lab.causal_lm): a small Llama built from a
`transformers.LlamaConfig` and saved with a tokenizer the way hub models come (a start-of-text
token added to every text, no padding token, right padding, suggested sampling settings) reads the same whatever the
padding, and runs the SFT, reward-model and PPO stages through the command line; folders that
cannot be used get messages that say why. Nothing is downloaded."""
import json
import math

import pytest
import torch
from tokenizers import processors
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, T5Config

from rlhf_lab import artifacts, generation
from rlhf_lab import reward_model as rm
from rlhf_lab.causal_lm import ModelLoadError, context_length, load_causal_lm
from rlhf_lab.cli import main
from rlhf_lab.kl import token_logprobs
from rlhf_lab.comparisons import save_comparisons
from rlhf_lab.sft import sft_example
from rlhf_lab.tokenizer import train_tokenizer
from rlhf_lab.world import World, format_dialogue

QUESTIONS = World().split("train")[:200]
ANSWERS = ("I do not know.", "It is blue, and you are silly.")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A 2-layer Llama (hidden size 32) and its tokenizer, saved as a hub model would be."""
    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = train_tokenizer([format_dialogue(q.text, a) for q in QUESTIONS for a in ANSWERS],
                                400)
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)])          # as Llama's tokenizer does
    tokenizer.pad_token, tokenizer.padding_side = None, "right"  # as GPT-2's and Llama's
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, bos_token_id=bos,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GenerationConfig(do_sample=True, top_k=5, repetition_penalty=1.3).save_pretrained(folder)
    return folder


def test_a_llama_folder_loads_with_a_padding_token_and_its_context_length(llama_dir):
    model, tokenizer = load_causal_lm(llama_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    # the folder's suggested sampling is dropped: log-probs must be those that sampled
    assert model.generation_config.repetition_penalty in (None, 1.0)
    assert model.generation_config.top_k != 5
    assert tokenizer.pad_token_id == tokenizer.eos_token_id      # none saved: end-of-text pads
    assert context_length(model) == 128 and not hasattr(model.config, "n_positions")
    ids, labels = sft_example(tokenizer, "what colour is a frog?", "A frog is green.", 96)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_reward_is_read_at_the_last_real_token_on_llama_too(llama_dir, side):
    _, tokenizer = load_causal_lm(llama_dir)
    torch.manual_seed(0)
    model = rm.build_reward_model(llama_dir).eval()
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.score.in_features == model.config.hidden_size == 32
    tokenizer.padding_side = side
    prompts = ["what colour is a frog?", "how many legs does a frog have?"]
    answers = ["Green.", "A frog has four legs, and it can jump very far indeed."]
    batch = rm.reward_inputs(tokenizer, prompts, answers)
    assert (batch["attention_mask"][0] == 0).any()                  # the short row is padded
    with torch.no_grad():
        together = rm.rewards(model, **batch)
        alone = torch.cat([rm.rewards(model, **rm.reward_inputs(tokenizer, [p], [a]))
                           for p, a in zip(prompts, answers)])
    assert torch.allclose(together, alone, atol=1e-5), (side, together, alone)


def test_left_padded_answers_get_the_log_probs_they_get_alone_on_llama(llama_dir):
    model, tokenizer = load_causal_lm(llama_dir)
    torch.manual_seed(0)
    s = generation.sample(model, tokenizer, [q.text for q in QUESTIONS[:6]], max_new_tokens=6)
    assert (s.attention_mask[:, 0] == 0).any()                      # some prompts are padded
    with torch.no_grad():
        together = token_logprobs(model, s.sequences, s.attention_mask)
        for row in range(len(s.answers)):
            first = int((s.attention_mask[row] == 0).sum())         # its first real token
            alone = token_logprobs(model, s.sequences[row:row + 1, first:],
                                   s.attention_mask[row:row + 1, first:])
            real = s.attention_mask[row, first + 1:].bool()
            assert torch.allclose(together[row, first:][real], alone[0][real], atol=1e-5), row


@pytest.fixture(scope="module")
def llama_stages(llama_dir, tmp_path_factory):
    """SFT, reward model and PPO on the Llama, each through the command line with --model,
    in an artifacts folder of their own: (sft, reward, ppo) results and that folder."""
    root = tmp_path_factory.mktemp("llama_artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RLHF_LAB_ARTIFACTS", str(root))
        mp.setenv("RLHF_LAB_QUICK", "1")
        save_comparisons([{"prompt": q.text, "answer_a": ANSWERS[0], "answer_b": ANSWERS[1],
                     "model": "test", "model_b": "test"} for q in QUESTIONS[:40]])
        sft = main(["sft", "--model", str(llama_dir), "--max-steps", "4", "--batch-size", "8",
                    "--eval-every", "2", "--eval-batches", "2"])
        sft_dir = artifacts.artifact_path("sft")
        reward = main(["reward-model", "--model", str(sft_dir), "--ratings", "40",
                       "--max-steps", "4", "--batch-size", "8", "--eval-every", "2",
                       "--normalise-samples", "8"])
        ppo = main(["ppo", "--model", str(sft_dir), "--steps", "2", "--batch-size", "4",
                    "--minibatch-size", "2", "--max-new-tokens", "8", "--eval-questions", "12",
                    "--eval-every", "1"])
    return sft, reward, ppo, root


@pytest.mark.slow
def test_sft_reward_model_and_ppo_run_on_llama_from_the_command_line(llama_stages,
                                                                     monkeypatch):
    sft, reward, ppo, root = llama_stages
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(root))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    for history, columns in ((sft.history, ["train_loss", "val_loss"]),
                             (reward.history, ["train_loss", "val_loss"]),
                             (ppo.history.iloc[1:], ["policy_loss", "value_loss", "score", "kl"])):
        assert len(history) == 2
        assert all(math.isfinite(v) for v in history[columns].to_numpy().flatten()), history
    assert sft.history.train_loss.iloc[-1] < sft.history.train_loss.iloc[0]

    # every artifact is a Llama again on reload, and gives the numbers it gave before saving
    policy, tokenizer = artifacts.load_model("sft")
    assert type(policy).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([tokenizer("User: what colour is a frog?").input_ids])
    with torch.no_grad():
        assert torch.allclose(policy(ids).logits, sft.model(ids).logits, atol=1e-5)
    reward_model, rm_tokenizer = rm.load_reward_model()
    assert type(reward_model).__name__ == "LlamaForSequenceClassification"
    prompts, answers = [q.text for q in QUESTIONS[:4]], list(ANSWERS) * 2
    assert torch.allclose(rm.score_answers(reward_model, rm_tokenizer, prompts, answers),
                          rm.score_answers(reward.model, reward.tokenizer, prompts, answers),
                          atol=1e-5)
    ppo_policy, _ = artifacts.load_model("ppo")
    assert type(ppo_policy).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.allclose(ppo_policy(ids).logits, ppo.policy(ids).logits, atol=1e-5)
    assert json.loads((artifacts.require("ppo") / "rlhf_lab.json").read_text())["config"][
        "steps"] == 2


def test_folders_that_cannot_be_used_say_why(llama_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="There is no folder ./no/such/model"):
        load_causal_lm("./no/such/model")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_causal_lm(tmp_path)
    T5Config().save_pretrained(tmp_path / "t5")
    with pytest.raises(ModelLoadError, match="is a t5 model, not a causal language model"):
        load_causal_lm(tmp_path / "t5")
    (tmp_path / "no_tokenizer").mkdir()
    (tmp_path / "no_tokenizer" / "config.json").write_text((llama_dir / "config.json").read_text())
    with pytest.raises(ValueError, match="holds no tokenizer"):
        load_causal_lm(tmp_path / "no_tokenizer")


@pytest.mark.slow
def test_dpo_runs_on_llama_from_the_command_line(llama_stages, monkeypatch):
    pytest.importorskip("rlhf_lab.dpo", reason="chapter 08's rlhf_lab/dpo.py is not here yet")
    _, _, _, root = llama_stages
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(root))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    dpo = main(["dpo", "--model", str(artifacts.artifact_path("sft")), "--max-steps", "2",
                "--batch-size", "8", "--eval-every", "1"])
    assert all(math.isfinite(v) for v in dpo.history[["val_loss", "margin"]].to_numpy().flatten())
    policy, _ = artifacts.load_model("dpo")
    assert type(policy).__name__ == "LlamaForCausalLM"


@pytest.mark.slow
@pytest.mark.parametrize("command, extra", [("grpo", ["--reward", "both"]),
                                            ("rloo", ["--baseline", "batch_mean"])])
def test_grpo_and_rloo_run_on_llama_from_the_command_line(llama_stages, monkeypatch, command,
                                                          extra):
    _, _, _, root = llama_stages
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", str(root))
    monkeypatch.setenv("RLHF_LAB_QUICK", "1")
    result = main([command, "--model", str(artifacts.artifact_path("sft")), "--steps", "2",
                   "--prompts", "2", "--k", "2", "--minibatch-size", "2",
                   "--max-new-tokens", "8", "--eval-questions", "12", "--eval-every", "1",
                   *extra])
    history = result.history.iloc[1:]
    assert len(history) == 2
    assert all(math.isfinite(v) for v in history[["loss", "grad_norm", "score", "kl"]]
               .to_numpy().flatten()), history
    assert result.name == {"grpo": "grpo_both", "rloo": "reinforce"}[command]
    policy, _ = artifacts.load_model(result.name)
    assert type(policy).__name__ == "LlamaForCausalLM"
    saved = json.loads((artifacts.require(result.name) / "rlhf_lab.json").read_text())["config"]
    assert saved["method"] == command and saved["steps"] == 2
