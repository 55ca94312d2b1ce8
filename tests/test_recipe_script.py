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
    sft_dir = tmp_path / "L2" / "outputs" / "sft"
    sft_dir.mkdir(parents=True)
    (sft_dir / "settings.json").write_text('{"quantize": false, "answer_format": "letter"}')
    (tmp_path / "L2-pairs" / "data").mkdir(parents=True)
    (tmp_path / "L2-pairs" / "data" / "dpo_pairs.jsonl").write_text("")  # sampled already: nothing runs
    jobs = recipe.dpo_jobs(tmp_path, "L2", sorted(recipe.DPO_LEVERS))
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


def test_another_round_starts_from_a_dpo_lever_and_best_reads_held_out_rows(tmp_path):
    for variant in ("sft", "dpo"):  # a DPO lever's root holds the SFT adapter it started from, and its own
        (tmp_path / "L2-D6" / "outputs" / variant).mkdir(parents=True)
        (tmp_path / "L2-D6" / "outputs" / variant / "settings.json").write_text(
            f'{{"quantize": false, "v": "{variant}"}}'
        )
    (tmp_path / "L2-D6-pairs" / "data").mkdir(parents=True)
    (tmp_path / "L2-D6-pairs" / "data" / "dpo_pairs.jsonl").write_text("")
    job = recipe.dpo_jobs(tmp_path, "L2-D6", ["D5"])["D5"]
    assert job.root.name == "L2-D6-D5"
    policy = json.loads((tmp_path / "L2-D6-pairs" / "outputs" / "sft" / "settings.json").read_text())
    assert policy["v"] == "dpo"  # round 2 samples from round 1's DPO model and trains from it, not from the SFT
    rows = [
        {"root": "L2-D5", "cot_acc": 31.0, "seconds": 100},
        {"root": "L2-D6", "cot_acc": 33.0, "seconds": 100},
        {"root": "L2-D7", "cot_acc": 40.0, "seconds": -1},  # stopped at the deadline: not a candidate
        {"root": "L3-D6", "cot_acc": 35.0, "seconds": 100},
    ]
    (tmp_path / "recipe-dpo-rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert recipe.best(tmp_path, "dpo") == "L3-D6"
    assert recipe.best(tmp_path, "dpo", "L2") == "L2-D6"


def test_star_levers_and_d9_take_the_samples_of_every_question(tmp_path):
    sft_dir = tmp_path / "L2" / "outputs" / "sft"
    sft_dir.mkdir(parents=True)
    (sft_dir / "settings.json").write_text('{"quantize": false, "answer_format": "letter"}')
    for name in ("L2-star", "L2-pairs"):  # sampled already: nothing runs
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "data" / "dpo_pairs.jsonl").write_text("")
    for name, job in recipe.star_jobs(tmp_path, "L2", sorted(recipe.STAR_LEVERS)).items():
        build, sft, ev = job.steps
        sft, ev = parsed(sft), parsed(ev)
        assert sft.data_source == ev.data_source == str(job.root / "ecqa") and ev.split == "holdout"
        for field, value in {**recipe.FAST, **recipe.STAR_LEVERS[name]}.items():
            assert getattr(sft, field) == value, (name, field)
    copy, *_ = recipe.dpo_jobs(tmp_path, "L2", ["D9"])["D9"].steps  # D9's pairs start from the star samples
    (tmp_path / "L2-star" / "data" / "dpo_pairs_samples.jsonl").write_text("{}\n")
    copy()
    assert (tmp_path / "L2-D9" / "data" / "dpo_pairs_samples.jsonl").read_text() == "{}\n"


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
