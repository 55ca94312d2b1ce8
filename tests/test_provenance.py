"""Provenance: what a later run reuses records what made it, and a mismatch is redone or refused with the
fix; steps that start from an SFT adapter refuse to train or tune on that run's held-out questions. One test per
kind of mismatch, on stand-in files (no model). The resume guard: test_training.py; on-policy samples redone:
test_pairs.py; the same refusals at the command line: test_bad_inputs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from helpers import provenance, steps
from helpers.pairs import PAIR_KEYS
from helpers.settings import DPOSettings, EvalSettings, PairSettings

SMOL = "smollm2-135m"


# ---------------------------------------------------------------- resumable files: resume, or move aside and redo
def test_resume_or_restart(tmp_path, capsys):
    path = tmp_path / "base-cot.jsonl"
    made_by = {"variant": "base", "max_new_tokens": 192, "quantize": None, "adapter": None}
    assert provenance.resume_or_restart(path, made_by) is False  # nothing yet: starts, and records what it does
    assert provenance.read(path) == made_by and path.with_name("base-cot.jsonl.provenance.json").is_file()
    path.write_text('{"id": "q1"}\n')
    assert provenance.resume_or_restart(path, dict(made_by)) is True  # the same: resumed, untouched
    assert path.read_text() == '{"id": "q1"}\n'

    capsys.readouterr()
    other = dict(made_by, max_new_tokens=256)
    assert provenance.resume_or_restart(path, other) is False
    assert not path.exists() and path.with_name("base-cot.jsonl.stale").read_text() == '{"id": "q1"}\n'
    assert provenance.read(path) == other
    assert "base-cot.jsonl was made by another run (max_new_tokens 192 -> 256): moved it to base-cot.jsonl.stale" in (
        capsys.readouterr().out
    )


def test_a_file_without_provenance_is_moved_aside(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": "q1"}\n')  # written by an older version: nothing says what made it
    assert provenance.resume_or_restart(path, {"temperature": 0.9}) is False
    assert path.with_name("samples.jsonl.stale").is_file() and not path.exists()
    assert "no provenance recorded" in capsys.readouterr().out


def test_provenance_round_trips_values_as_json_reads_them(tmp_path):
    path = tmp_path / "f.jsonl"
    provenance.resume_or_restart(path, {"root": Path("/x"), "modes": ("cot",)})
    path.write_text("")
    assert provenance.resume_or_restart(path, {"root": Path("/x"), "modes": ("cot",)}) is True


def test_hashes():
    assert provenance.ids_hash(["b", "a"]) == provenance.ids_hash(["a", "b"]) != provenance.ids_hash(["a"])
    assert provenance.diff({"a": 1, "b": 2}, {"a": 1, "b": 3}) == "b 2 -> 3"


# ---------------------------------------------------------------- DPO's pairs
def sft_adapter(root: Path, holdout: list[str] = (), weights: bytes = b"sft weights") -> Path:
    """A stand-in SFT adapter folder: settings naming the model, weights to hash, the held-out ids."""
    folder = root / "outputs" / "sft"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "settings.json").write_text(json.dumps({"model": SMOL}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / steps.HOLDOUT_FILE).write_text(json.dumps(sorted(holdout)))
    return folder


def write_pairs(path: Path, ids: list[str], made_by: dict | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({k: (i if k == "id" else f"{k} {i}") for k in PAIR_KEYS}) + "\n" for i in ids))
    if made_by is not None:
        provenance.write(path, made_by)


def test_dpo_refuses_pairs_without_provenance(tmp_path):
    s = DPOSettings(model=SMOL, root=str(tmp_path))
    sft_adapter(tmp_path)
    write_pairs(s.pairs, ["q1", "q2"], None)
    with pytest.raises(ValueError, match=r"records nothing about what made it .*rebuild it with notebooks/02_pairs"):
        steps.pairs_for_dpo(s)


def test_dpo_refuses_on_policy_pairs_sampled_from_another_adapter(tmp_path):
    s = DPOSettings(model=SMOL, root=str(tmp_path))
    folder = sft_adapter(tmp_path, weights=b"the adapter the pairs were sampled from")
    sampled_from = provenance.adapter_hash(folder)
    write_pairs(s.pairs, ["q1", "q2"], {"strategy": "on_policy", "samples": {"sft_adapter": sampled_from}})
    assert steps.pairs_for_dpo(s).num_rows == 2  # the same adapter: fine
    sft_adapter(tmp_path, weights=b"retrained since")
    with pytest.raises(
        ValueError,
        match=r"sampled from another SFT adapter than the one in \S+ \(retrained since\?\): "
        r"rebuild them with notebooks/02_pairs",
    ):
        steps.pairs_for_dpo(s)


def test_dpo_refuses_pairs_of_the_sft_runs_held_out_questions(tmp_path):
    s = DPOSettings(model=SMOL, root=str(tmp_path))
    sft_adapter(tmp_path, holdout=["q2", "q9"])
    write_pairs(s.pairs, ["q1", "q3"], {"strategy": "offline"})
    assert steps.pairs_for_dpo(s)["id"] == ["q1", "q3"]
    write_pairs(s.pairs, ["q1", "q2"], {"strategy": "offline"})
    with pytest.raises(
        ValueError,
        match=r"DPO on \S+ would use 1 questions \(e.g. q2\) that the SFT run in \S+ held out "
        r"for tuning: use that run's seed and holdout_size",
    ):
        steps.pairs_for_dpo(s)


def test_dpo_train_sample_size_subsamples_the_pairs_seeded(tmp_path):
    s = DPOSettings(model=SMOL, root=str(tmp_path), train_sample_size=3)
    sft_adapter(tmp_path)
    write_pairs(s.pairs, [f"q{i}" for i in range(10)], {"strategy": "offline"})
    picked = steps.pairs_for_dpo(s)["id"]
    assert len(picked) == 3 and picked == steps.pairs_for_dpo(s)["id"] != steps.pairs_for_dpo(s.replace(seed=1))["id"]


# ---------------------------------------------------------------- on-policy pairs and the held-out questions
def data(train: list[str], holdout: list[str] = ()) -> DatasetDict:
    splits = {"train": Dataset.from_dict({"id": train})}
    if holdout:
        splits["holdout"] = Dataset.from_dict({"id": list(holdout)})
    return DatasetDict(splits)


def test_on_policy_pairs_refuse_a_selection_overlapping_the_held_out_questions(tmp_path):
    s = PairSettings(model=SMOL, root=str(tmp_path), strategy="on_policy")
    sft_adapter(tmp_path, holdout=["q5", "q6"])
    with pytest.raises(
        ValueError,
        match=r"sampling on-policy pairs would use 2 questions \(e.g. q5\) that the SFT run in "
        r"\S+ held out for tuning",
    ):
        steps.run_pairs(s, data(["q1", "q5", "q6"]))  # refused before any model or tokenizer loads
    assert not s.pairs.exists()
    steps.refuse_holdout(["q1", "q2"], s.sft_dir, "sampling on-policy pairs")  # no overlap: fine


def test_the_pairs_command_refuses_the_held_out_questions(tmp_path, ecqa_dir, capsys):
    """At the command line, with the real data: SFT held out 50 questions, the pairs' settings hold out none."""
    from helpers import cli
    from helpers.data import load_ecqa

    held = load_ecqa(ecqa_dir, holdout_size=50, seed=42)["holdout"]["id"]
    sft_adapter(tmp_path, holdout=held)
    with pytest.raises(SystemExit) as done:
        cli.main(
            [
                "pairs",
                "--model",
                SMOL,
                "--data_source",
                str(ecqa_dir),
                "--root",
                str(tmp_path),
                "--strategy",
                "on_policy",
            ]
        )
    err = capsys.readouterr().err
    assert done.value.code == 2 and "would use 50 questions" in err and err.count("\n") == 1, err
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- evaluation on the held-out slice
def variant(root: Path, name: str, holdout: list[str] | None) -> None:
    folder = root / "outputs" / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    if holdout is not None:
        (folder / steps.HOLDOUT_FILE).write_text(json.dumps(holdout))


def test_eval_on_the_holdout_refuses_a_variant_that_held_out_other_questions(tmp_path):
    s = EvalSettings(model=SMOL, root=str(tmp_path), split="holdout", holdout_size=2, variants=("base", "sft", "dpo"))
    variant(tmp_path, "sft", ["q1", "q2"])
    variant(tmp_path, "dpo", ["q1", "q2", "q3"])  # a superset is fine: these questions were not trained on
    steps.check_eval_split(s, data(["q7"], holdout=["q1", "q2"]))
    steps.check_eval_split(s.replace(split="validation"), data(["q1"], holdout=["q8", "q9"]))  # validation: no check
    with pytest.raises(
        ValueError,
        match=r"variant 'sft' did not hold out these 2 questions \(its SFT run used another "
        r"seed or holdout_size\), so it may have trained on them",
    ):
        steps.check_eval_split(s, data(["q7"], holdout=["q1", "q8"]))
    variant(tmp_path, "old", None)  # held out nothing
    with pytest.raises(ValueError, match="variant 'old' did not hold out"):
        steps.check_eval_split(s.replace(variants=("old",)), data(["q7"], holdout=["q1", "q2"]))


def test_dpo_passes_the_held_out_ids_on_with_its_adapter(tmp_path, monkeypatch):
    """A DPO variant evaluated on the held-out slice is checked against its SFT run's held-out ids."""
    from helpers import training

    s = DPOSettings(model=SMOL, root=str(tmp_path), variant="dpo-x")
    sft_adapter(tmp_path, holdout=["q2", "q9"])
    write_pairs(s.pairs, ["q1"], {"strategy": "offline"})

    def fake_train(settings, pair_ds, **kwargs):
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        return kwargs["inputs"]

    monkeypatch.setattr(training, "train_dpo", fake_train)
    inputs = steps.run_dpo(s)
    assert inputs == {
        "sft_adapter": provenance.adapter_hash(s.sft_dir),
        "pairs": provenance.file_hash(s.pairs),
        "pair_ids": provenance.ids_hash(["q1"]),
    }
    assert steps.holdout_ids(s.output_dir) == {"q2", "q9"}
