"""The command line, generated from the field metadata: ``python -m helpers STEP --help`` lists every
field with its help; ``--FIELD VALUE`` goes through the same `parse_text` as the form's text boxes; a bad value
ends the command with status 2 and one line. (Bad files and inputs that `steps.prepare` refuses: test_bad_inputs.py.)
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from settings_values import as_text, edited

from helpers import cli
from helpers.fields import describe
from helpers.settings import STEP_SETTINGS, SFTSettings

REPO = Path(__file__).resolve().parents[1]
STEPS = ["sft", "pairs", "dpo", "eval"]
QUANTIZE_LABELS = dict(next(f for f in dataclasses.fields(SFTSettings) if f.name == "quantize").metadata["labels"])


def flat(text: str) -> str:
    """Whitespace as one space, and words argparse wrapped at a hyphen ("comma-\\n separated") joined again."""
    return re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(text.split()))


@pytest.mark.parametrize("step", STEPS)
def test_help_lists_every_field_with_its_help_type_and_default(step, capsys):
    cls = STEP_SETTINGS[step]
    with pytest.raises(SystemExit) as done:
        cli.main([step, "--help"])
    assert done.value.code == 0
    out = flat(capsys.readouterr().out)
    hints = cls.field_hints()
    for f in dataclasses.fields(cls):
        assert f"--{f.name} VALUE" in out, f.name
        assert flat(f"{f.metadata['help']} ({describe(hints[f.name])}") in out, f.name
        for choice in f.metadata.get("choices") or ():
            assert str(choice) in out, (f.name, choice)
        for _, label in f.metadata.get("labels") or ():
            assert label in out, (f.name, label)


def test_help_of_the_real_command():
    done = subprocess.run(
        [sys.executable, "-m", "helpers", "sft", "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = flat(done.stdout)
    assert out.startswith("usage: python -m helpers sft")
    for f in dataclasses.fields(SFTSettings):
        assert f"--{f.name} VALUE {flat(f.metadata['help'])}" in out, f.name


@pytest.mark.parametrize("step", STEPS)
def test_every_field_overridden_as_text(step):
    """Each field typed as a person would (labels, true/false, comma lists) gives the field's typed value."""
    cls = STEP_SETTINGS[step]
    expected = edited(cls)
    argv = [a for f in dataclasses.fields(cls) for a in (f"--{f.name}", as_text(f, expected[f.name]))]
    s = cli.settings_from_args(step, argv)
    for name, value in expected.items():
        got = getattr(s, name)
        assert got == value and type(got) is type(value), (name, got, value)


def test_options_override_the_settings_file(tmp_path):
    path = SFTSettings(learning_rate=1e-3, max_steps=7, quantize=False).to_json(tmp_path / "sft.json")
    s = cli.settings_from_args("sft", [str(path), "--max_steps", "9", "--train_sample_size", "none"])
    assert (s.learning_rate, s.max_steps, s.quantize, s.train_sample_size) == (1e-3, 9, False, None)


@pytest.mark.parametrize(
    "text, value",
    [
        ("auto", None),
        ("none", None),
        ("", None),
        (QUANTIZE_LABELS[None].upper(), None),  # the label as shown, in capitals
        ("true", True),
        ("4-bit", True),
        ("yes", True),
        ("false", False),
        ("full precision", False),
        ("0", False),
    ],
)
def test_quantize_accepts_auto_true_false_and_the_labels(text, value):
    got = cli.settings_from_args("eval", ["--quantize", text]).quantize
    assert got is value


@pytest.mark.parametrize(
    "step, argv, message",
    [
        ("sft", ["--learning_rate", "-1e-3"], "learning_rate must be > 0, got -0.001"),
        ("sft", ["--learning_rate", "fast"], "learning_rate must be a number, got 'fast'"),
        ("sft", ["--lora_r", "0"], "lora_r must be >= 1, got 0"),
        ("sft", ["--lora_r", "2.5"], "lora_r must be a whole number, got '2.5'"),
        ("sft", ["--train_sample_size", "abc"], "train_sample_size must be a whole number or None, got 'abc'"),
        ("sft", ["--gradient_checkpointing", "maybe"], "gradient_checkpointing must be true or false, got 'maybe'"),
        ("sft", ["--precision", "fp8"], "precision must be one of 'auto', 'bf16', 'fp16', 'fp32'; got 'fp8'"),
        ("pairs", ["--quantize", "8-bit"], "quantize must be true or false or None, got '8-bit'"),
        ("eval", ["--modes", "cot,essay"], "modes must be some of 'cot', "),
        ("eval", ["--variants", ","], "variants must name at least one model variant"),
        ("dpo", ["--beta", "-0.1"], "beta must be > 0, got -0.1"),
        ("dpo", ["--lora_r", "8"], "unrecognized arguments: --lora_r"),
        ("sft", ["--max_steps"], "argument --max_steps: expected one argument"),
    ],
)
def test_a_bad_value_exits_2_with_one_line(step, argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        cli.settings_from_args(step, argv)
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err.startswith(f"python -m helpers {step}: error: ") and message in err, err
    assert err.count("\n") == 1, err


def test_an_unknown_step_is_refused(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["train"])
    assert done.value.code == 2 and "invalid choice: 'train'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "step, argv, field, value",
    [
        ("sft", [], "train_sample_size", 2000),  # the run size fills what is not given
        ("sft", ["--run_size", "full"], "train_sample_size", None),
        ("sft", ["--train_sample_size", "none"], "train_sample_size", None),  # given: kept
        ("pairs", ["--train_sample_size", "1000"], "train_sample_size", 1000),
        ("eval", ["--run_size", "full", "--sample_size", "50"], "sample_size", 50),
        ("eval", [], "sample_size", 300),
    ],
)
def test_run_size_fills_only_the_sizes_not_given(step, argv, field, value):
    assert getattr(cli.settings_from_args(step, argv), field) == value


def test_a_settings_file_sets_what_it_names(tmp_path):
    """A saved settings file names every field: the run size it records changes nothing it holds."""
    path = SFTSettings(run_size="full").to_json(tmp_path / "sft.json")
    assert cli.settings_from_args("sft", [str(path), "--run_size", "quick"]).train_sample_size is None
