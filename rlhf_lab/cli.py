"""The command line: every stage of the course outside the notebooks, on any causal LM, on one
device or several (README, "Going further").

    python -m rlhf_lab <stage> [--quick] [--artifacts DIR] [--model PATH_OR_NAME]
                               [--device DEVICE] [--build-missing] [--<setting> VALUE ...]
    python -m rlhf_lab report [--quick] [--artifacts DIR]
    accelerate launch [--multi_gpu --num_processes N] [--mixed_precision bf16] \\
        -m rlhf_lab <stage> ...

The stages are the table in `rlhf_lab.stages`. Each calls the very `run_*` function its
notebook calls and writes the same artifact under artifacts/<mode>/, so a notebook opened
afterwards loads it. Its options are the fields of the stage's settings dataclass: `--help`
lists each with its meaning, its valid range or choices and its defaults in full and quick
mode. Values are checked by the dataclass itself, so a bad one ends with the same
SettingsError message a notebook shows.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap

from . import artifacts, report_card
from .config import SettingsError, environment, get_device, mode_name
from .stages import BY_ARTIFACT, BY_COMMAND

# command -> stage, from the one table of stages (rlhf_lab.stages)
STAGES = BY_COMMAND


# --- options from the settings dataclass ---------------------------------------------------

def _valid(f: dataclasses.Field) -> str:
    if f.metadata.get("range") is not None:
        lo, hi = f.metadata["range"]
        return f"range [{lo}, {hi}]"
    if f.metadata.get("choices") is not None:
        return "choices: " + ", ".join(map(str, f.metadata["choices"]))
    return ""


def _help(f: dataclasses.Field) -> str:
    """The field's help, its valid values and its full- and quick-mode defaults."""
    quick = f.metadata.get("quick")
    default = f"default {f.default}" + ("" if quick is None else f", quick mode {quick}")
    parts = [f.metadata.get("help", ""), _valid(f), default]
    return "; ".join(p for p in parts if p).replace("%", "%%")     # argparse formats with %


def _converter(f: dataclasses.Field):
    """Text -> the field's type; a value that is no number says what is valid."""
    kind = type(f.default)

    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {noun}; {_valid(f) or 'see --help'}") from None
    convert.__name__ = kind.__name__
    return convert


def add_settings(parser: argparse.ArgumentParser, settings_class) -> None:
    """One option per field of the settings dataclass: `--field-name VALUE`, or
    `--flag/--no-flag` for a yes/no field. Unset options keep the mode's default."""
    group = parser.add_argument_group(f"{settings_class.__name__} (the stage's settings)")
    for f in dataclasses.fields(settings_class):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=_help(f))
        else:
            group.add_argument(flag, dest=f.name, type=_converter(f), default=None,
                               metavar=type(f.default).__name__.upper(), help=_help(f))


class _Formatter(argparse.HelpFormatter):
    """argparse's layout, but a word is never broken at its hyphen (over-optimises, 1e-06)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser(stage_name: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser, with the options of stage `stage_name` (None: no stage's).
    A stage's settings class is imported with the stage's module, and with it torch and
    transformers (seconds), so only the stage being run is loaded: `python -m rlhf_lab
    --help` and `python -m rlhf_lab report` start in about a second."""
    parser = argparse.ArgumentParser(
        prog="python -m rlhf_lab", description=__doc__.split("\n\n")[0],
        epilog="`python -m rlhf_lab <stage> --help` lists the stage's settings.")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="stage")
    for name, stage in STAGES.items():
        if name != stage_name:
            stages.add_parser(name, add_help=False,
                              help=f"notebooks/{stage.notebook}: writes '{stage.artifact}'")
            continue
        settings_class = stage.load("settings")
        sub = stages.add_parser(
            name, help=f"notebooks/{stage.notebook}: writes '{stage.artifact}'",
            formatter_class=_Formatter,
            description=f"{settings_class.__doc__} Calls {stage.run.replace(':', '.')}, as "
                        f"notebooks/{stage.notebook}.ipynb does, and writes the artifact "
                        f"'{stage.artifact}'.")
        sub.add_argument("--quick", action="store_true",
                         help="quick mode: the smaller settings tests use, artifacts in "
                              "artifacts/quick/ (default: $RLHF_LAB_QUICK, else full mode)")
        sub.add_argument("--artifacts", metavar="DIR",
                         help="root of the artifacts folder; the mode's full/ or quick/ is "
                              "added (default: $RLHF_LAB_ARTIFACTS, else artifacts/)")
        if stage.model:
            sub.add_argument("--model", metavar="PATH_OR_NAME",
                             help="any causal LM, a folder saved with save_pretrained or a hub "
                                  f"name (needs internet the first time): the stage {stage.model}")
        sub.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: $RLHF_LAB_DEVICE, "
                                          "else a GPU when there is one)")
        sub.add_argument("--build-missing", action="store_true",
                         help="build missing earlier artifacts first, in quick mode")
        add_settings(sub, settings_class)
        sub.set_defaults(stage_parser=sub, settings_class=settings_class)
    report = stages.add_parser("report", help="print and draw the report card: every model "
                               "measured by one evaluation (rlhf_lab.report_card)",
                               add_help=False)
    report.set_defaults(stage_parser=report, settings_class=None)
    return parser


# --- running a stage ------------------------------------------------------------------------

def _fail(parser: argparse.ArgumentParser, message: str) -> None:
    parser.exit(1, f"{parser.prog}: {message}\n")


def main(argv: list[str] | None = None):
    """Run one stage as the command line says; return what its run_* function returns
    (the notebook's result object). Bad settings exit with status 2, a missing artifact or
    an unusable model with status 1, each with a message instead of a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = build_parser().parse_known_args(argv)            # which stage, and no more
    if args.stage == "report":
        return report_card.main(unknown)
    from . import distributed
    from .causal_lm import ModelLoadError, check_model
    from .training import TrainingDiverged

    args, unknown = build_parser(args.stage).parse_known_args(argv)
    stage, sub = STAGES[args.stage], args.stage_parser
    if unknown:
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    with environment(args.quick, args.artifacts, args.device):
        fields = dataclasses.fields(args.settings_class)
        overrides = {f.name: getattr(args, f.name) for f in fields
                     if getattr(args, f.name) is not None}
        try:
            cfg = args.settings_class.for_mode(**overrides)
        except SettingsError as error:
            sub.error(str(error))
        kwargs = {"save": True, "build_missing": args.build_missing}
        model = getattr(args, "model", None)
        if model:
            try:
                kwargs["start_from"] = check_model(model)
            except ModelLoadError as error:
                _fail(sub, str(error))
        if distributed.is_main_process():
            print(f"rlhf_lab {args.stage}: {mode_name()} mode, device {get_device()}, "
                  f"processes {distributed.num_processes()}, starting from "
                  f"{model or 'the artifacts'}")
        try:
            result = stage.load("run")(cfg, **kwargs)
        except (ModelLoadError, TrainingDiverged) as error:
            _fail(sub, str(error))
        except artifacts.MissingArtifactError as error:
            maker = BY_ARTIFACT.get(error.name)
            how = (f"run `python -m rlhf_lab {maker.command}` first, or" if maker
                   else "no stage makes it;")
            _fail(sub, f"{error}\nFrom the command line: {how} add --build-missing to build "
                       "it now in quick mode.")
        if distributed.is_main_process():
            written = getattr(result, "name", None) or stage.artifact   # grpo --reward both: grpo_both
            print(f"wrote {artifacts.artifact_path(written)}")
            history = getattr(result, "history", None)
            if history is not None and len(history):
                print(history.tail(1).to_string(index=False))
    return result
