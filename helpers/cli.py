"""The command line: ``python -m helpers STEP [SETTINGS.json] [--FIELD VALUE ...]``.

Every settings field is an option, with its help, type and choices taken from the field's metadata
(`helpers.settings`): ``python -m helpers sft --help`` lists them. A settings JSON file gives the starting
values; options override single fields. Bad input ends the command with one line naming the fix (exit 2)
before any model loads or any file is written.

    python -m helpers sft assets/real-run/settings/sft.json --learning_rate 1e-4
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
import time
from dataclasses import MISSING, fields
from pathlib import Path

from helpers.settings import STEP_SETTINGS, Settings, describe, parse_text


def _field_help(f, hint) -> str:  # noqa: ANN001
    meta = f.metadata
    parts = [meta.get("help", ""), f"({describe(hint)}"]
    if meta.get("choices"):
        parts[-1] += "; one of " + ", ".join(map(str, meta["choices"]))
    if meta.get("labels"):
        parts[-1] += "; " + ", ".join(f"{v} = {label}" for v, label in meta["labels"])
    default = f.default if f.default is not MISSING else None
    parts[-1] += f"; default {','.join(default) if isinstance(default, tuple) else default})"
    return " ".join(parts).replace("%", "%%")


def parser_for(step: str) -> argparse.ArgumentParser:
    """An argument parser for one step: the settings file, and one option per settings field."""
    cls = STEP_SETTINGS[step]
    parser = argparse.ArgumentParser(prog=f"python -m helpers {step}", description=f"{cls.__doc__}")
    parser.add_argument("settings", nargs="?", help=f"a JSON file of {cls.__name__} fields (unknown keys are refused)")
    hints = cls.field_hints()
    group = parser.add_argument_group(f"{cls.__name__} fields (override the file)")
    for f in fields(cls):
        group.add_argument(f"--{f.name}", metavar="VALUE", default=argparse.SUPPRESS, help=_field_help(f, hints[f.name]))
    return parser


def settings_from_args(step: str, argv: list[str] | None = None) -> Settings:
    """Parse a step's command line into checked settings; exits 2 with one line naming the fix."""
    cls, parser = STEP_SETTINGS[step], parser_for(step)
    args = vars(parser.parse_args(argv))
    values: dict = {}
    path = args.pop("settings")
    if path is not None:
        if not Path(path).is_file():
            parser.error(f"settings file {path} does not exist")
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            parser.error(f"settings file {path} is not valid JSON ({e}): fix it")
        if not isinstance(values, dict):
            parser.error(f"settings file {path} must hold a JSON object of {cls.__name__} fields")
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

    top = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("step", choices=list(steps.STEPS), help="the pipeline step to run")
    top.add_argument("rest", nargs=argparse.REMAINDER, help="a settings JSON file and --FIELD VALUE options")
    known = top.parse_args(argv)
    settings = settings_from_args(known.step, known.rest)
    prog = f"python -m helpers {known.step}"
    try:
        inputs = steps.prepare(known.step, settings)
    except (ValueError, OSError) as e:  # the inputs are wrong: one line naming the fix, no traceback
        raise SystemExit(f"{prog}: error: {e}") from None
    start = time.perf_counter()
    steps.STEPS[known.step](settings, **inputs)
    print(f"{known.step} finished in {time.perf_counter() - start:.1f} s")
