"""The command line: ``python -m helpers STEP [SETTINGS.json] [--FIELD VALUE ...]``.

Every settings field is an option, with its help, type and choices taken from the field's metadata
(`helpers.settings`): ``python -m helpers sft --help`` lists them. A settings JSON file gives the starting
values; options override single fields. ``--run_size`` (default ``quick``) fills the sizes that neither the file
nor an option gives (`helpers.presets.RUN_SIZES`): pass ``--run_size full`` for all the data. Bad input ends the
command with one line naming the fix (exit 2) before any model loads or any file is written.

    python -m helpers sft assets/recipe/run/sft-settings.json --learning_rate 1e-4
    python -m helpers pairs settings.json --strategy on_policy
    python -m helpers dpo settings.json
    python -m helpers eval settings.json --modes cot,cloze

SFT, DPO and evaluation also run as several processes, one per GPU (DDP; gloo on a machine without one):

    accelerate launch --multi_gpu --num_processes 2 -m helpers sft settings/sft.json

Only the main process writes what the processes share (settings, metrics, adapter, results table);
evaluation gives each process a share of the questions and merges their records. Pairs are built by one
process. (``accelerate launch --cpu`` starts one process, whatever ``--num_processes`` says: on CPU use
``--multi_gpu`` or ``torchrun --nproc_per_node N``.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from helpers.fields import describe, parse_text
from helpers.settings import STEP_SETTINGS, Settings


def _field_help(f, hint) -> str:  # noqa: ANN001
    meta = f.metadata
    parts = [meta.get("help", ""), f"({describe(hint)}"]
    if meta.get("choices"):
        many = typing.get_origin(hint) is tuple
        parts[-1] += ("; some of " if many else "; one of ") + ", ".join(map(str, meta["choices"]))
    if meta.get("labels"):
        parts[-1] += "; " + ", ".join(f"{v} = {label}" for v, label in meta["labels"])
    default = f.default if f.default is not MISSING else None
    parts[-1] += f"; default {','.join(default) if isinstance(default, tuple) else default})"
    return " ".join(parts).replace("%", "%%")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) instead of the whole usage of every field."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser_for(step: str) -> argparse.ArgumentParser:
    """An argument parser for one step: the settings file, and one option per settings field."""
    cls = STEP_SETTINGS[step]
    parser = _OneLineParser(prog=f"python -m helpers {step}", description=f"{cls.__doc__}")
    parser.add_argument("settings", nargs="?", help=f"a JSON file of {cls.__name__} fields (unknown keys are refused)")
    hints = cls.field_hints()
    group = parser.add_argument_group(f"{cls.__name__} fields (override the file)")
    for f in fields(cls):
        group.add_argument(
            f"--{f.name}", metavar="VALUE", default=argparse.SUPPRESS, help=_field_help(f, hints[f.name])
        )
    return parser


def _join_values(cls: type[Settings], argv: list[str]) -> list[str]:
    """``--FIELD -1e-3`` -> ``--FIELD=-1e-3``: argparse takes a value starting with "-" (other than a plain
    negative number such as -1 or -0.5) for an option, so ``-1e-3`` would never reach the field's check."""
    names = {f"--{f.name}" for f in fields(cls)}
    out: list[str] = []
    for arg in argv:
        option = arg.split("=")[0] in names or arg in ("-h", "--help")
        if out and out[-1] in names and arg.startswith("-") and not option:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def settings_from_args(step: str, argv: list[str] | None = None) -> Settings:
    """Parse a step's command line into checked settings; exits 2 with one line naming the fix."""
    cls, parser = STEP_SETTINGS[step], parser_for(step)
    args = vars(parser.parse_args(_join_values(cls, sys.argv[1:] if argv is None else argv)))
    values: dict = {}
    path = args.pop("settings")
    fail = lambda message: parser.exit(2, f"{parser.prog}: error: {message}\n")  # noqa: E731
    if path is not None:
        if not Path(path).is_file():
            fail(f"settings file {path} does not exist")
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            fail(f"settings file {path} is not valid JSON ({e}): fix it")
        if not isinstance(values, dict):
            fail(f"settings file {path} must hold a JSON object of {cls.__name__} fields")
    hints = cls.field_hints()
    labels = {f.name: f.metadata.get("labels") for f in fields(cls)}
    try:
        values.update({k: parse_text(k, hints[k], raw, labels[k]) for k, raw in args.items()})
        return cls.from_dict(values)
    except ValueError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m helpers STEP ...``: check the inputs, then run the step."""
    from helpers import steps

    top = argparse.ArgumentParser(
        prog="python -m helpers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("step", choices=list(steps.STEPS), help="the pipeline step to run")
    top.add_argument("rest", nargs=argparse.REMAINDER, help="a settings JSON file and --FIELD VALUE options")
    known = top.parse_args(argv)
    settings = settings_from_args(known.step, known.rest)
    prog = f"python -m helpers {known.step}"
    try:
        inputs = steps.prepare(known.step, settings)
    except (ValueError, OSError) as e:  # the inputs are wrong: one line naming the fix, no traceback, exit 2
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.perf_counter()
    steps.STEPS[known.step](settings, **inputs)
    print(f"{known.step} finished in {time.perf_counter() - start:.1f} s")
