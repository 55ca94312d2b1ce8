"""Tests for helpers.settings and the TRL configs built from them (checked against the installed TRL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import training
from helpers.settings import DPO_LOSSES, DPOSettings, EvalSettings, PairSettings, Settings, SFTSettings


def test_sft_defaults_are_the_recipe():
    s = SFTSettings()
    assert s.learning_rate == 2e-4  # the seed's optimisation
    assert s.effective_batch_size == 16
    assert s.max_length == 512
    # assets/recipe/NOTES.md: rank 64 on every linear layer beat rank 16 on q/k/v/o by ~10 points held out
    assert (s.lora_r, s.lora_alpha, s.lora_dropout, s.target_modules) == (64, 128, 0.05, "all-linear")


def test_dpo_and_pair_defaults_are_the_recipe():
    p = PairSettings(run_size="full")  # the quick run size samples fewer questions (helpers.presets.RUN_SIZES)
    assert (p.strategy, p.samples_per_question, p.when_all_agree, p.train_sample_size) == (
        "on_policy",
        8,
        "skip",
        1000,
    )
    s = DPOSettings()
    assert s.learning_rate == 5e-6  # the seed's 5e-5 cost 4.5 points (docs/recipe.md)
    assert s.beta == 0.1
    assert s.effective_batch_size == 8
    assert s.nll_weight == 0.0 and s.variant == "dpo"
    # DPO continues the SFT adapter: its LoRA shape comes from there, so DPOSettings has no LoRA fields to mislead
    assert not [f for f in vars(s) if f.startswith("lora_") or f == "target_modules"]


def test_artifact_paths_live_under_root(tmp_path):
    s = DPOSettings(root=str(tmp_path))
    assert s.pairs == tmp_path / "data" / "dpo_pairs.jsonl" == s.pairs_path
    assert s.sft_dir == tmp_path / "outputs" / "sft" == SFTSettings(root=str(tmp_path)).output_dir
    assert s.output_dir == tmp_path / "outputs" / "dpo"
    assert (
        s.replace(variant="dpo-offline").output_dir
        == tmp_path / "outputs" / "dpo-offline"
        == s.variant_dir("dpo-offline")
    )
    assert s.eval_dir == tmp_path / "eval"
    assert EvalSettings(root=str(tmp_path), holdout_size=5, split="holdout").eval_dir == tmp_path / "eval-holdout"


@pytest.mark.parametrize(
    "settings",
    [
        SFTSettings(learning_rate=1e-3, max_steps=7, model="smollm2-135m", train_sample_size=64, report_to="none"),
        DPOSettings(beta=0.25, variant="dpo-offline", precompute_ref_log_probs=True, nll_weight=0.5),
        PairSettings(strategy="on_policy", samples_per_question=6, temperature=0.7, max_length=384, quantize=False),
        EvalSettings(variants=("base", "sft"), modes=("cot",), sample_size=100, quantize=True),
        Settings(seed=7, precision="fp16"),
    ],
    ids=lambda s: type(s).__name__,
)
def test_json_round_trip(tmp_path, settings):
    path = settings.to_json(tmp_path / "sub" / "settings.json")
    assert json.loads(path.read_text())  # plain JSON a person can edit
    assert type(settings).from_json(path) == settings


def test_unknown_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown SFTSettings keys \['learning_rat'\]"):
        SFTSettings.from_dict({"learning_rat": 1e-4})
    (tmp_path / "s.json").write_text(json.dumps({"beta": 0.2, "betta": 0.3}))
    with pytest.raises(ValueError, match=r"unknown DPOSettings keys \['betta'\]"):
        DPOSettings.from_json(tmp_path / "s.json")


def test_broken_json_says_what_to_do(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON.*delete it to use the defaults"):
        SFTSettings.from_json(tmp_path / "s.json")


@pytest.mark.parametrize(
    "cls, field, value",
    [
        (SFTSettings, "learning_rate", -1e-4),
        (SFTSettings, "learning_rate", 0.0),
        (SFTSettings, "lora_r", 0),
        (SFTSettings, "lora_alpha", 0),
        (SFTSettings, "lora_dropout", 1.0),
        (SFTSettings, "target_modules", "qv"),
        (SFTSettings, "max_length", 16),
        (SFTSettings, "per_device_train_batch_size", 0),
        (SFTSettings, "gradient_accumulation_steps", 0),
        (SFTSettings, "warmup_ratio", 1.5),
        (SFTSettings, "report_to", "tensorboard"),
        (SFTSettings, "precision", "fp8"),
        (SFTSettings, "train_sample_size", 0),
        (DPOSettings, "beta", 0.0),
        (DPOSettings, "beta", -0.1),
        (DPOSettings, "learning_rate", -5e-5),
        (PairSettings, "strategy", "random"),
        (PairSettings, "samples_per_question", 1),
        (EvalSettings, "modes", ("essay",)),
        (EvalSettings, "variants", ()),
        (SFTSettings, "quantize", "None"),  # the string an earlier form wrote back
        (SFTSettings, "quantize", "False"),
        (SFTSettings, "max_steps", "6"),
        (SFTSettings, "lora_r", 2.5),
        (SFTSettings, "gradient_checkpointing", 1),
        (SFTSettings, "learning_rate", float("nan")),
        (DPOSettings, "variant", "sft"),
        (DPOSettings, "group_by_length", True),
        (PairSettings, "max_length", 32),
    ],
)
def test_out_of_range_values_name_the_field(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})
    with pytest.raises(ValueError, match=field):  # replace() validates too
        cls().replace(**{field: value})


def test_no_epochs_and_no_steps_is_refused():
    with pytest.raises(ValueError, match="num_train_epochs > 0 or max_steps > 0"):
        SFTSettings(num_train_epochs=0, max_steps=-1)


# ---------------------------------------------------------------- TRL configs from the settings


def test_sft_config_is_accepted_by_trl_and_carries_the_values(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    s = SFTSettings(
        root=str(tmp_path),
        learning_rate=3e-4,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=8,
        max_length=384,
        max_steps=11,
        warmup_ratio=0.1,
        save_steps=5,
        save_total_limit=3,
        logging_steps=2,
        gradient_checkpointing=False,
        seed=3,
        group_by_length=True,
    )
    c = training.sft_config(s, eos_token="<|im_end|>")
    assert Path(c.output_dir) == s.output_dir
    assert (c.learning_rate, c.per_device_train_batch_size, c.gradient_accumulation_steps) == (3e-4, 2, 8)
    assert (c.max_length, c.max_steps, c.save_steps, c.save_total_limit, c.logging_steps) == (384, 11, 5, 3, 2)
    assert c.get_warmup_steps(100) == 10  # warmup_ratio, as TrainingArguments reads a float < 1
    assert c.lr_scheduler_type.value == "cosine"
    assert c.gradient_checkpointing is False and c.seed == 3
    assert c.train_sampling_strategy == "group_by_length"
    assert c.completion_only_loss is True and c.packing is False
    assert c.eos_token == "<|im_end|>"
    assert c.optim.value == "adamw_torch" and not c.bf16 and not c.fp16  # CPU
    assert c.report_to in ([], "none", ["none"])


def test_dpo_config_is_accepted_by_trl_and_carries_the_values(tmp_path):
    s = DPOSettings(
        root=str(tmp_path),
        beta=0.3,
        learning_rate=1e-5,
        max_length=320,
        precompute_ref_log_probs=True,
        report_to="none",
    )
    c = training.dpo_config(s)
    assert Path(c.output_dir) == tmp_path / "outputs" / "dpo"
    assert (c.beta, c.learning_rate, c.max_length) == (0.3, 1e-5, 320)
    assert c.precompute_ref_log_probs is True
    assert c.per_device_train_batch_size * c.gradient_accumulation_steps == 8
    assert c.loss_type == ["sigmoid"]


@pytest.mark.parametrize("loss", DPO_LOSSES)
def test_every_dpo_loss_offered_is_one_trl_accepts_alone_and_beside_an_nll_term(tmp_path, loss):
    c = training.dpo_config(DPOSettings(root=str(tmp_path), loss_type=loss, report_to="none"))
    assert c.loss_type == [loss]
    c = training.dpo_config(DPOSettings(root=str(tmp_path), loss_type=loss, nll_weight=0.2, report_to="none"))
    assert (c.loss_type, c.loss_weights) == ([loss, "sft"], [1.0, 0.2])


def test_lora_config_carries_the_values():
    c = training.lora_config(SFTSettings(lora_r=8, lora_alpha=16, lora_dropout=0.1, target_modules="qkvo"))
    assert (c.r, c.lora_alpha, c.lora_dropout) == (8, 16, 0.1)
    assert set(c.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert training.lora_config(SFTSettings(target_modules="all-linear")).target_modules == "all-linear"


@pytest.mark.parametrize("capability, bf16, fp16", [((7, 5), False, True), ((8, 0), True, False)])
def test_mixed_precision_follows_the_gpu(monkeypatch, capability, bf16, fp16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    args = training.common_args(SFTSettings())
    assert (args["bf16"], args["fp16"]) == (bf16, fp16)
    assert args["optim"] == "paged_adamw_8bit"
    assert training.common_args(SFTSettings(precision="fp16"))["fp16"] is True


@pytest.mark.parametrize(
    "report_to, env, expected",
    [
        ("auto", {}, False),
        ("auto", {"WANDB_API_KEY": "x"}, True),
        ("auto", {"WANDB_MODE": "offline"}, True),
        ("none", {"WANDB_API_KEY": "x"}, False),
        ("wandb", {}, True),
    ],
)
def test_wandb_only_when_asked_or_configured(monkeypatch, report_to, env, expected):
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert training.wants_wandb(report_to) is expected


def test_settings_are_frozen_and_typed_on_every_path(tmp_path):
    s = SFTSettings()
    with pytest.raises(AttributeError):
        s.learning_rate = 1.0  # type: ignore[misc]
    assert type(SFTSettings(num_train_epochs=2).num_train_epochs) is float  # an int is taken for a float field
    assert EvalSettings(variants=["base"]).variants == ("base",)  # a JSON list becomes the tuple
    (tmp_path / "s.json").write_text(json.dumps({"quantize": "None"}))
    with pytest.raises(ValueError, match=r"quantize must be true or false or None, got 'None' \(str\)"):
        SFTSettings.from_json(tmp_path / "s.json")


def test_holdout_split_needs_a_holdout():
    with pytest.raises(ValueError, match="split='holdout' needs holdout_size > 0"):
        EvalSettings(split="holdout")


def test_to_json_is_atomic_and_leaves_no_tmp(tmp_path, monkeypatch):
    """settings.json is written to a tmp file, then renamed: a crash mid-write leaves the old file whole."""
    import os

    path = SFTSettings(learning_rate=1e-3).to_json(tmp_path / "settings.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
    good = path.read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        SFTSettings(learning_rate=5e-4).to_json(path)
    assert path.read_text() == good, "a failed write damaged the settings file"
