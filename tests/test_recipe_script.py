"""scripts/gpu/recipe.py: every lever's command lines are valid settings of their step (checked without a GPU).

The levers run only on the GPU machine, where a renamed field or an out-of-range value would cost device time;
here each command line goes through the project's own parser (`helpers.cli.settings_from_args`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from helpers import cli

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("recipe", REPO / "scripts" / "gpu" / "recipe.py")
recipe = importlib.util.module_from_spec(spec)
sys.modules["recipe"] = recipe  # its dataclasses look their module up there
spec.loader.exec_module(recipe)  # type: ignore[union-attr]


SFT = "sft-r64-all-linear"  # the SFT lever the DPO and STaR levers start from in these tests
T = recipe.THEN


def parsed(command: list[str]):
    """Settings of a ``python -m helpers STEP --field value ...`` command line."""
    assert command[1:3] == ["-m", "helpers"], command
    return cli.settings_from_args(command[3], command[4:])


@pytest.mark.parametrize("name", sorted(recipe.SFT_LEVERS))
def test_sft_levers_are_valid_settings_changing_only_their_fields(name, tmp_path):
    job = recipe.sft_jobs(tmp_path, [name])[name]
    sft = parsed(job.steps[0])
    for field, value in {**recipe.FAST, **recipe.SFT_LEVERS[name]}.items():
        assert getattr(sft, field) == value, (name, field)
    evals = [parsed(s) for s in job.steps[1:] if isinstance(s, list)]
    assert evals and all(e.split == "holdout" and e.holdout_size == sft.holdout_size == 500 for e in evals)


def test_dpo_levers_and_publish_are_valid_settings(tmp_path, monkeypatch):
    sft_dir = tmp_path / SFT / "outputs" / "sft"
    sft_dir.mkdir(parents=True)
    (sft_dir / "settings.json").write_text('{"quantize": false, "answer_format": "letter"}')
    (tmp_path / f"{SFT}{T}pairs" / "data").mkdir(parents=True)
    (tmp_path / f"{SFT}{T}pairs" / "data" / "dpo_pairs.jsonl").write_text("")  # sampled already: nothing runs
    jobs = recipe.dpo_jobs(tmp_path, SFT, sorted(recipe.DPO_LEVERS))
    for name, job in jobs.items():
        *own_pairs, dpo, ev = (parsed(s) for s in job.steps if isinstance(s, list))
        assert dpo.variant == ev.variants[0] == "dpo" and dpo.quantize is False
        lever = dict(recipe.DPO_LEVERS[name])
        for field, value in lever.pop(recipe.PAIRS_KEY, {}).items():
            assert [getattr(p, field) for p in own_pairs] == [value], (name, field)
        for field, value in lever.items():
            assert getattr(dpo, field) == value, (name, field)
    pairs = parsed(recipe.cli("pairs", tmp_path, recipe.PAIRS))
    assert (pairs.strategy, pairs.samples_per_question, pairs.train_sample_size) == ("on_policy", 8, 1000)
    for modes, extra in recipe.PUBLISH_MODES.items():
        values = {"split": "validation", "modes": modes, "variants": "base,sft,dpo", **extra}
        ev = parsed(recipe.cli("eval", tmp_path, values))
        assert ev.split == "validation" and set(ev.modes) == set(modes.split(","))
        assert all(getattr(ev, field) == value for field, value in extra.items())


def test_dpo_again_starts_from_a_dpo_lever_and_best_reads_held_out_rows(tmp_path):
    first = f"{SFT}{T}dpo-lr5e-5-beta0.1-4pairs"
    for variant in ("sft", "dpo"):  # a DPO lever's root holds the SFT adapter it started from, and its own
        (tmp_path / first / "outputs" / variant).mkdir(parents=True)
        (tmp_path / first / "outputs" / variant / "settings.json").write_text(
            f'{{"quantize": false, "v": "{variant}"}}'
        )
    (tmp_path / f"{first}{T}pairs" / "data").mkdir(parents=True)
    (tmp_path / f"{first}{T}pairs" / "data" / "dpo_pairs.jsonl").write_text("")
    job = recipe.dpo_jobs(tmp_path, first, ["dpo-lr5e-5-beta0.1"])["dpo-lr5e-5-beta0.1"]
    assert job.root.name == f"{first}{T}dpo-lr5e-5-beta0.1"
    policy = json.loads((tmp_path / f"{first}{T}pairs" / "outputs" / "sft" / "settings.json").read_text())
    assert policy["v"] == "dpo"  # DPO again samples from the first DPO model and trains from it, not the SFT
    rows = [
        {"root": f"{SFT}{T}dpo-lr5e-5-beta0.1", "cot_acc": 31.0, "seconds": 100},
        {"root": f"{SFT}{T}dpo-lr5e-5-beta0.1-4pairs", "cot_acc": 33.0, "seconds": 100},
        {"root": f"{SFT}{T}dpo-lr2e-4-beta0.1-4pairs", "cot_acc": 40.0, "seconds": -1},  # stopped: not a candidate
        {"root": f"{SFT}-4bit{T}dpo-lr5e-5-beta0.1-4pairs", "cot_acc": 34.0, "seconds": 100},  # another start
        {"root": f"sft-r64-all-linear-2epochs{T}dpo-lr5e-5-beta0.1", "cot_acc": 35.0, "seconds": 100},
    ]
    (tmp_path / "recipe-dpo-rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert recipe.best(tmp_path, "dpo") == f"sft-r64-all-linear-2epochs{T}dpo-lr5e-5-beta0.1"
    assert recipe.best(tmp_path, "dpo", SFT) == f"{SFT}{T}dpo-lr5e-5-beta0.1-4pairs"


def test_star_levers_and_dpo_on_every_question_take_the_samples_of_every_question(tmp_path):
    sft_dir = tmp_path / SFT / "outputs" / "sft"
    sft_dir.mkdir(parents=True)
    (sft_dir / "settings.json").write_text('{"quantize": false, "answer_format": "letter"}')
    for name in (f"{SFT}{T}star", f"{SFT}{T}pairs"):  # sampled already: nothing runs
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "data" / "dpo_pairs.jsonl").write_text("")
    for name, job in recipe.star_jobs(tmp_path, SFT, sorted(recipe.STAR_LEVERS)).items():
        build, sft, ev = job.steps
        sft, ev = parsed(sft), parsed(ev)
        assert sft.data_source == ev.data_source == str(job.root / "ecqa") and ev.split == "holdout"
        for field, value in {**recipe.FAST, **recipe.STAR_LEVERS[name]}.items():
            assert getattr(sft, field) == value, (name, field)
    every = "dpo-lr5e-5-beta0.1-nll0.2-all-questions"
    copy, *_ = recipe.dpo_jobs(tmp_path, SFT, [every])[every].steps  # its pairs start from the star samples
    (tmp_path / f"{SFT}{T}star" / "data" / "dpo_pairs_samples.jsonl").write_text("{}\n")
    copy()
    assert (tmp_path / f"{SFT}{T}{every}" / "data" / "dpo_pairs_samples.jsonl").read_text() == "{}\n"


def expected_name(kind: str, lever: dict) -> str:
    """A lever's name written from its settings: LoRA rank and layers, 4-bit base, epochs, answer format and learning
    rate for SFT and STaR; learning rate, beta, NLL weight and pairs of its own for DPO."""
    lr = f"{lever.get('learning_rate', 0):.0e}".replace("e-0", "e-")  # 5e-06 -> 5e-6
    if kind == "dpo":
        pairs = lever.get(recipe.PAIRS_KEY, {})
        parts = [f"lr{lr}", f"beta{lever['beta']:g}"]
        parts += [f"nll{lever['nll_weight']:g}"] if "nll_weight" in lever else []
        parts += [lever["loss_type"]] if "loss_type" in lever else []
        parts += ["all-questions"] if recipe.STAR_SAMPLES.items() <= pairs.items() else []
        parts += [f"{pairs['pairs_per_question']}pairs"] if pairs.get("pairs_per_question", 1) > 1 else []
        parts += ["greedy"] if pairs.get("greedy_sample") else []
        parts += ["failures-first"] if pairs.get("rejected_first") == "failure" else []
        parts += ["unsure"] if pairs.get("weight_unsure") else []
        parts += ["gold"] if pairs.get("when_all_agree") == "gold" else []
    else:
        parts = [f"r{lever.get('lora_r', 16)}", "all-linear" if "target_modules" in lever else "qkvo"]
        parts += ["4bit"] if lever["quantize"] else []
        parts += [f"{lever['num_train_epochs']:g}epochs"] if "num_train_epochs" in lever else []
        parts += [lever["answer_format"]] if "answer_format" in lever else []
        parts += [f"lr{lr}"] if "learning_rate" in lever else []
    return "-".join([kind, *parts])


def test_each_lever_is_named_by_its_settings():
    for kind, levers in (("sft", recipe.SFT_LEVERS), ("dpo", recipe.DPO_LEVERS), ("star", recipe.STAR_LEVERS)):
        for name, lever in levers.items():
            assert name == expected_name(kind, lever)
            assert recipe.THEN not in name


def test_published_short_names_translate_to_levers_and_roots():
    levers = {**recipe.SFT_LEVERS, **recipe.DPO_LEVERS, **recipe.STAR_LEVERS}
    assert set(recipe.PUBLISHED_NAMES.values()) <= set(levers)  # one short name a published lever
    published = json.loads((REPO / "assets" / "recipe" / "2026-11-28-NVIDIA-H200-dpo-round2.json").read_text())
    for short, settings in published["levers"].items():
        assert levers[recipe.lever_name(short)] == settings, short
    assert recipe.lever_name("L2-D7") == f"{SFT}{T}dpo-lr5e-5-beta0.1-nll0.2-4pairs"
    assert recipe.lever_name(SFT) == SFT and recipe.lever_name("best") == "best"


def test_star_data_swaps_in_own_correct_explanations_and_keeps_the_held_out_slice(tmp_path, ecqa_dir, ecqa_loaded):
    from helpers.data import load_ecqa
    from helpers.jsonl import write_jsonl_atomic

    train = ecqa_loaded[0]["train"]
    right, wrong = train[0], train[1]
    other = next(x for x in "ABCDE" if x != wrong["answer"])
    samples = tmp_path / "samples.jsonl"
    write_jsonl_atomic(
        samples,
        [
            {
                "id": right["id"],
                "samples": [f"My own words.\nAnswer: {right['answer']}", "Loop\nAnswer: A\nAnswer: A"],
            },
            {"id": wrong["id"], "samples": [f"Wrong words.\nAnswer: {other}"]},
        ],
    )
    counts = recipe.star_data(samples, ecqa_dir, tmp_path / "ecqa", seed=42)
    assert counts["own_explanations"] == 1
    before = load_ecqa(ecqa_dir, holdout_size=500, seed=42)
    after = load_ecqa(tmp_path / "ecqa", holdout_size=500, seed=42)
    assert after["holdout"]["id"] == before["holdout"]["id"] and after["train"].num_rows == before["train"].num_rows
    explained = dict(zip(after["train"]["id"], after["train"]["explanation"]))
    assert explained[right["id"]] == "My own words." and explained[wrong["id"]] == wrong["explanation"]
