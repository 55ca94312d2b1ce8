"""Bad inputs at the command line of every step (`python -m helpers STEP`, run in-process through `cli.main`):
each ends with exit status 2 and one line naming the fix, before any model is loaded, and leaves the
good artifacts already under the root byte for byte as they were.

What the settings dataclasses refuse is tested in test_settings.py, a missing or broken pairs file in
test_pairs.py, a data folder's contents in test_data.py; here the same inputs arrive through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from helpers import cli
from helpers.models import resolve
from helpers.pairs import PAIR_KEYS
from helpers.settings import SFTSettings

SMOL = "smollm2-135m"


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: (sha256, mtime_ns)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A root holding good artifacts of every step (contents stand-ins: nothing here may read them)."""
    root = tmp_path_factory.mktemp("good-root")
    sft = root / "outputs" / "sft"
    SFTSettings(model=SMOL, root=str(root)).to_json(sft / "settings.json")
    (sft / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "r": 4}))
    (sft / "adapter_model.safetensors").write_bytes(b"good adapter weights")
    (root / "data").mkdir()
    (root / "data" / "dpo_pairs.jsonl").write_text(json.dumps({k: f"good {k}" for k in PAIR_KEYS}) + "\n")
    (root / "eval").mkdir()
    (root / "eval" / "base-cot.jsonl").write_text(json.dumps({"id": "q1", "variant": "base", "correct": True}) + "\n")
    (root / "eval" / "results.csv").write_text("variant,mode,n\nbase,cot,1\n")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A model folder without weights, a pairs file with a broken (complete) line, one whose pair lacks keys."""
    base = tmp_path_factory.mktemp("inputs")
    no_weights = base / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_bytes((Path(resolve(SMOL)[0]) / "config.json").read_bytes())
    broken = base / "broken_pairs.jsonl"
    broken.write_text('{"id": "q1", "prompt": "cut off by a ki\n{"id": "q2"}\n')
    lacking = base / "lacking_pairs.jsonl"
    lacking.write_text('{"id": "q2"}\n')
    return {"no-weights": no_weights, "broken": broken, "lacking": lacking, "missing": base / "missing"}


def run_cli(step: str, settings: Path, *options: str, capsys) -> tuple[int, str]:
    """``python -m helpers STEP SETTINGS [--FIELD VALUE ...]`` in-process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([step, str(settings), *options])
    return exit_info.value.code, capsys.readouterr().err


# (id, step, settings fields (or the raw file text), --FIELD VALUE options, what the message must say)
CASES = [
    ("settings-missing", "sft", None, [], r"settings file \S+ does not exist"),
    ("settings-not-json", "dpo", "{'beta': 0.1}", [], r"is not valid JSON \(Expecting property name.*\): fix it"),
    ("settings-not-object", "pairs", "[1, 2]", [], r"must hold a JSON object of PairSettings fields"),
    ("unknown-key", "eval", {"sample_sise": 8}, [], r"unknown EvalSettings keys \['sample_sise'\]; valid keys are \["),
    ("unknown-option", "eval", {}, ["--sample_sise", "8"], r"unrecognized arguments: --sample_sise 8"),
    ("negative-lr", "sft", {}, ["--learning_rate", "-1e-4"], r"learning_rate must be > 0, got -0.0001"),
    ("lora-r-0", "sft", {"lora_r": 0}, [], r"lora_r must be >= 1, got 0"),
    ("beta-0", "dpo", {}, ["--beta", "0"], r"beta must be > 0, got 0.0"),
    ("beta-negative", "dpo", {"beta": -0.1}, [], r"beta must be > 0, got -0.1"),
    ("one-sample", "pairs", {}, ["--samples_per_question", "1"], r"samples_per_question must be >= 2, got 1"),
    ("sample-size-0", "eval", {}, ["--sample_size", "0"], r"sample_size must be >= 1, got 0"),
    ("option-without-value", "sft", {}, ["--max_steps"], r"argument --max_steps: expected one argument"),
    ("wrong-type", "sft", {}, ["--max_steps", "six"], r"max_steps must be a whole number, got 'six'"),
    ("wrong-type-in-file", "sft", {"max_steps": "6"}, [], r"max_steps must be a whole number, got '6' \(str\)"),
    (
        "quantize-not-a-label",
        "eval",
        {},
        ["--quantize", "maybe"],
        r"quantize must be true or false or None, got 'maybe'",
    ),
    ("variant-sft", "dpo", {}, ["--variant", "sft"], r"variant must be a folder name other than 'base' and 'sft'"),
    (
        "data-missing",
        "sft",
        {"data_source": "{missing}"},
        [],
        r"data folder \S+missing does not exist: pass the path to the ECQA folder or 'hub'",
    ),
    ("data-missing-eval", "eval", {"data_source": "{missing}"}, [], r"data folder \S+missing does not exist"),
    (
        "model-missing",
        "sft",
        {"model": "{missing}"},
        [],
        r"model folder \S+missing does not exist: set model to an existing folder, a Hub id \(org/name\) or a preset \(llama-3.2-1b, ",  # noqa: E501
    ),
    (
        "model-no-weights",
        "eval",
        {"model": "{no-weights}"},
        [],
        r"model folder \S+no-weights has a config.json but no weights .*copy the weights into it",
    ),
    (
        "sft-adapter-missing",
        "dpo",
        {"sft_adapter": "{missing}"},
        [],
        r"no adapter in \S+missing: run notebooks/03_sft \(python -m helpers sft\) with the same root first, or set sft_adapter",  # noqa: E501
    ),
    (
        "sft-adapter-missing-pairs",
        "pairs",
        {"strategy": "on_policy", "sft_adapter": "{missing}"},
        [],
        r"no adapter in \S+missing: run notebooks/03_sft",
    ),
    ("pairs-missing", "dpo", {"pairs_file": "{missing}"}, [], r"no pairs file at \S+missing: run notebook 02_pairs"),
    # changed on purpose (#12, one JSONL reader): a complete broken line is an error naming it (it used to be
    # skipped with a warning); only a cut-off last line is dropped
    (
        "pairs-broken",
        "dpo",
        {"pairs_file": "{broken}"},
        [],
        r"broken_pairs.jsonl:1 is not valid JSON \(Unterminated string.*\); delete the file to redo it",
    ),
    (
        "pairs-lacking-keys",
        "dpo",
        {"pairs_file": "{lacking}"},
        [],
        r"lacking_pairs.jsonl: pair 1 lacks keys \['prompt', .*rebuild the file with notebook 02_pairs",
    ),
    (
        "pairs-without-provenance",
        "dpo",
        {},
        [],
        r"dpo_pairs.jsonl records nothing about what made it .*rebuild it with notebooks/02_pairs",
    ),
    (
        "adapter-of-another-base",
        "dpo",
        {"model": "llama-3.2-1b-ungated"},
        [],
        r"DPOSettings name model 'llama-3.2-1b-ungated' but the SFT adapter in \S+ was trained on 'smollm2-135m': set model='smollm2-135m'",  # noqa: E501
    ),
    (
        "adapter-of-another-base-pairs",
        "pairs",
        {"model": "llama-3.2-1b-ungated", "strategy": "on_policy"},
        [],
        r"PairSettings name model 'llama-3.2-1b-ungated' but the SFT adapter .* was trained on 'smollm2-135m'",
    ),
    (
        "no-variant-to-evaluate",
        "eval",
        {"variants": ["dpo-typo"]},
        [],
        r"none of the variants \['dpo-typo'\] has an adapter under \S+outputs: train them first .*03_sft.*or add 'base'",  # noqa: E501
    ),
]


@pytest.mark.parametrize("case_id, step, values, options, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_with_the_fix_and_writes_nothing(
    case_id, step, values, options, message, root, folders, ecqa_dir, tmp_path, capsys
):
    settings = tmp_path / "settings.json"
    if isinstance(values, str):
        settings.write_text(values)
    elif isinstance(values, dict):
        good = {"model": SMOL, "data_source": str(ecqa_dir), "root": str(root)}
        fields = {k: v.format(**folders) if isinstance(v, str) else v for k, v in values.items()}
        settings.write_text(json.dumps({**good, **fields}))
    before = snapshot(root)
    code, err = run_cli(step, settings, *options, capsys=capsys)
    assert code == 2, err
    assert re.search(f"python -m helpers {step}: error: .*{message}", err), err
    assert err.count("\n") == 1, f"more than one line:\n{err}"
    assert "Traceback" not in err
    assert snapshot(root) == before, "a refused command changed the artifacts under the root"


@pytest.mark.slow
def test_adapter_weights_of_another_base_are_refused_naming_the_fix(root, ecqa_dir, tmp_path):
    """An adapter whose settings say SmolLM2 but whose weights were trained on another (here tiny) Llama:
    found only when it loads, so it ends the run with a ValueError naming the fix, before any record is written."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=49152,
        )
    )
    other = root / "outputs" / "other"
    get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(
        other
    )
    SFTSettings(model=SMOL, root=str(root)).to_json(other / "settings.json")
    settings = tmp_path / "eval.json"
    settings.write_text(
        json.dumps(
            {
                "model": SMOL,
                "data_source": str(ecqa_dir),
                "root": str(root),
                "variants": ["other"],
                "sample_size": 2,
                "max_new_tokens": 8,
            }
        )
    )
    before = snapshot(root)
    try:
        with pytest.raises(
            ValueError,
            match=r"adapter \S+other does not fit 'smollm2-135m'.*size mismatch.*trained on "
            r"another base model. Use an adapter trained on 'smollm2-135m' \(retrain",
        ):
            cli.main(["eval", str(settings)])
        assert snapshot(root) == before
    finally:
        import shutil

        shutil.rmtree(other)
