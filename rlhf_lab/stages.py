"""The stages of the course, in one table: for each artifact, the notebook that makes it, the
function that makes it, its settings and its command-line name.

Taught in notebooks/00_setup.ipynb. Everything that needs to know the stages reads this table:
`artifacts.require` (which notebook to run for a missing artifact, and what to call to build
it now in quick mode), the command line (`python -m rlhf_lab <command>`) and its messages.

The table names functions as "module:function" text, so that it, and `artifacts` which reads
it, sit at the bottom of the package and import no stage: `Stage.load` imports the stage's
module only when the stage is run.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage: what it writes, which notebook teaches it, and how to run it elsewhere."""

    artifact: str       # what it writes under artifacts/<mode>/
    notebook: str       # notebooks/<notebook>.ipynb makes it
    command: str        # python -m rlhf_lab <command>
    run: str            # "module:function", called as run(cfg, save=True, build_missing=...)
    settings: str       # "module:Settings subclass"
    model: str = ""     # what --model replaces (empty: the stage takes no --model)

    def load(self, what: str):
        """The run function (`what="run"`) or the settings class (`what="settings"`)."""
        module, name = getattr(self, what).split(":")
        return getattr(importlib.import_module(module), name)

    def build_quick(self) -> None:
        """Build this stage's artifact in quick mode, building missing earlier ones first."""
        settings = self.load("settings").for_mode(quick=True)
        self.load("run")(settings, save=True, build_missing=True)


STAGES = [
    Stage("pretrained", "01_pretraining", "pretrain", "rlhf_lab.pretraining:run_pretraining",
          "rlhf_lab.pretraining:PretrainConfig",
          "goes on pretraining that model with its own tokenizer instead of a new tokenizer and "
          "tiny GPT (vocab_size, n_layer, n_embd, n_head and dropout are then unused)"),
    Stage("sft", "02_sft", "sft", "rlhf_lab.sft:run_sft", "rlhf_lab.sft:SFTConfig",
          "fine-tunes that model instead of the 'pretrained' artifact"),
    Stage("pairs", "03_human_feedback", "comparisons", "rlhf_lab.comparisons:run_comparisons",
          "rlhf_lab.comparisons:ComparisonsConfig"),
    Stage("reward_model", "04_reward_model", "reward-model",
          "rlhf_lab.reward_model:run_reward_model", "rlhf_lab.reward_model:RewardConfig",
          "puts the reward head on that model instead of the 'sft' artifact"),
    Stage("ppo", "06_ppo", "ppo", "rlhf_lab.ppo_stage:run_ppo", "rlhf_lab.ppo:PPOConfig",
          "starts the policy and its frozen reference from that model instead of the 'sft' "
          "artifact; the reward model stays the 'reward_model' artifact"),
    Stage("dpo", "08_dpo", "dpo", "rlhf_lab.dpo:run_dpo", "rlhf_lab.dpo:DPOConfig",
          "starts the policy and its frozen reference from that model instead of the 'sft' "
          "artifact"),
    Stage("iterated", "09_iterate", "iterate", "rlhf_lab.iterate:run_iterate",
          "rlhf_lab.iterate:IterateConfig"),
    Stage("grpo", "10_beyond_ppo", "grpo", "rlhf_lab.critic_free_stage:run_grpo",
          "rlhf_lab.critic_free_stage:GRPOConfig",
          "starts the policy and its frozen reference from that model instead of the 'sft' "
          "artifact; the reward model stays the 'reward_model' artifact"),
    Stage("rloo", "10_beyond_ppo", "rloo", "rlhf_lab.critic_free_stage:run_rloo",
          "rlhf_lab.critic_free_stage:RLOOConfig",
          "starts the policy and its frozen reference from that model instead of the 'sft' "
          "artifact; the reward model stays the 'reward_model' artifact"),
]
BY_ARTIFACT = {stage.artifact: stage for stage in STAGES}
BY_COMMAND = {stage.command: stage for stage in STAGES}
