"""The command line (rlhf_lab.cli): `--help` documents every setting of every stage with its
valid values, bad values end with the settings' own message, and quick stages run through it
write the artifacts the notebooks read."""
import dataclasses
import json
import re
import shutil
import subprocess
import sys

import pytest

from rlhf_lab import artifacts
from rlhf_lab.cli import STAGES, main
from rlhf_lab.comparisons import save_comparisons
from rlhf_lab.world import World


def help_entries(stage: str, capsys) -> tuple[str, dict[str, str]]:
    """`<stage> --help` as one line, and the entry of each setting in it, by field name."""
    with pytest.raises(SystemExit) as done:
        main([stage, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())      # argparse wraps lines anywhere
    options = text[text.index("(the stage's settings):"):]
    names = [f.name for f in dataclasses.fields(STAGES[stage].load("settings"))]
    starts = [re.search(re.escape("--" + name.replace("_", "-")) + "[ ,]", options).start()
              for name in names]
    assert starts == sorted(starts)                         # in the dataclass's order
    return text, {name: options[start:end]
                  for name, start, end in zip(names, starts, starts[1:] + [len(options)])}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_help_lists_every_setting_with_its_valid_values_and_defaults(stage, capsys):
    text, entries = help_entries(stage, capsys)
    for option in ("--quick", "--artifacts DIR", "--device", "--build-missing"):
        assert option in text
    assert ("--model PATH_OR_NAME" in text) == bool(STAGES[stage].model)
    for f in dataclasses.fields(STAGES[stage].load("settings")):
        entry = entries[f.name]
        assert " ".join(f.metadata["help"].split()) in entry, f.name
        if f.metadata.get("range") is not None:
            lo, hi = f.metadata["range"]
            assert f"range [{lo}, {hi}]" in entry, f.name
        if f.metadata.get("choices") is not None:
            assert "choices: " + ", ".join(f.metadata["choices"]) in entry, f.name
        assert f"default {f.default}" in entry, f.name
        if f.metadata.get("quick") is not None:
            assert f"quick mode {f.metadata['quick']}" in entry, f.name


def test_a_value_out_of_range_exits_with_the_settings_message(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sft", "--lr", "5"])
    assert done.value.code == 2
    assert "SFTConfig.lr = 5.0 is out of range; valid range is [1e-06, 1.0]" in \
        capsys.readouterr().err


def test_rules_between_settings_and_choices_are_checked_by_the_dataclass(capsys):
    with pytest.raises(SystemExit):
        main(["ppo", "--batch-size", "16", "--minibatch-size", "5"])
    assert "PPOConfig.minibatch_size = 5 must divide batch_size = 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ppo", "--lr-schedule", "cosine"])
    assert "PPOConfig.lr_schedule = 'cosine' is not valid; choose one of ('linear', " \
           "'constant')" in capsys.readouterr().err


def test_python_dash_m_rejects_a_value_that_is_no_number():
    done = subprocess.run([sys.executable, "-m", "rlhf_lab", "pretrain", "--max-steps", "lots"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "argument --max-steps: 'lots' is not a whole number; range [1, 10000000]" in done.stderr


def test_every_stage_of_the_table_is_a_command_with_a_run_function_that_takes_the_same_options():
    """One table (rlhf_lab.stages) drives the command line: every stage resolves, and its run
    function is called alike (cfg, save, build_missing; start_from where --model applies)."""
    import inspect

    from rlhf_lab import stages
    assert set(STAGES) == {stage.command for stage in stages.STAGES}
    for stage in stages.STAGES:
        accepts = inspect.signature(stage.load("run")).parameters
        assert {"save", "build_missing"} <= set(accepts), stage.command
        assert ("start_from" in accepts) == bool(stage.model), stage.command


def test_the_comparisons_command_writes_the_pairs_chapter_04_reads(copied_artifacts, monkeypatch):
    root = str(copied_artifacts)
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", root)
    pairs = main(["comparisons", "--quick", "--artifacts", root, "--n-pairs", "12"])
    from rlhf_lab.comparisons import load_comparisons
    assert load_comparisons() == pairs and 0 < len(pairs) <= 12


def test_a_missing_artifact_names_the_command_that_makes_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["sft", "--quick", "--artifacts", str(tmp_path)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert "The artifact 'pretrained' is missing" in err
    assert "run `python -m rlhf_lab pretrain` first, or add --build-missing" in err


def test_report_is_a_command_and_a_missing_card_names_the_notebook(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["report", "--quick", "--artifacts", str(tmp_path)])
    assert done.value.code == 1
    assert "notebooks/02_sft.ipynb" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"], ["report", "--quick"]])
def test_help_and_report_start_without_torch(argv, tmp_path):
    """Only a stage that is run imports its module, and with it torch and transformers
    (seconds): the list of stages and the report card come at once."""
    if "report" in argv:
        argv = [*argv, "--artifacts", str(tmp_path)]           # an empty folder: no card
    code = ("import sys\nfrom rlhf_lab.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('imported:', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "imported: []", done.stdout + done.stderr
    assert "usage: python -m rlhf_lab" in done.stdout or "notebooks/02_sft" in done.stderr


def test_a_model_that_does_not_exist_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["sft", "--quick", "--artifacts", str(tmp_path), "--model", "./no/such/model"])
    assert done.value.code == 1
    assert "There is no folder ./no/such/model" in capsys.readouterr().err


@pytest.fixture()
def copied_artifacts(sft_trained, tmp_path):
    """The session's quick 'pretrained' and 'sft' in a folder of this test's own (so shortened
    runs do not replace them), with 40 hand-made pairs to rate."""
    for name in ("pretrained", "sft"):
        shutil.copytree(artifacts.artifact_path(name), tmp_path / "quick" / name)
    return tmp_path


def test_quick_sft_and_reward_model_through_the_command_line_write_their_artifacts(
        copied_artifacts, monkeypatch):
    root = str(copied_artifacts)
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", root)
    save_comparisons([{"prompt": q.text, "answer_a": "I do not know.", "answer_b": "You are silly.",
                 "model": "test", "model_b": "test"} for q in World().split("train")[:40]])
    common = ["--quick", "--artifacts", root, "--max-steps", "4", "--eval-every", "2"]
    sft = main(["sft", *common, "--eval-batches", "1"])
    reward = main(["reward-model", *common, "--ratings", "40", "--normalise-samples", "8"])
    for name, result in (("sft", sft), ("reward_model", reward)):
        folder = copied_artifacts / "quick" / name
        assert (folder / "COMPLETE").exists() and (folder / "model.safetensors").exists()
        meta = json.loads((folder / "rlhf_lab.json").read_text())
        assert meta["mode"] == "quick" and meta["config"]["max_steps"] == 4
        assert result.history.step.tolist() == [2, 4]
    model, _ = artifacts.load_model("sft")              # what notebook 04 then loads
    reloaded = dict(model.named_parameters())
    for name, p in sft.model.named_parameters():
        assert (p.detach().cpu() == reloaded[name].detach().cpu()).all(), name
