"""Tests for helpers.data: the real CSQA + ECQA join, its leak-free split, and every bad-row kind."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from helpers.answers import LETTERS
from helpers.data import RECORD_FIELDS, load_ecqa

# ---------------------------------------------------------------- the real data


def test_real_split_sizes(ecqa_loaded):
    data, _ = ecqa_loaded
    assert data["train"].num_rows == 9_626
    assert data["validation"].num_rows == 1_221


def test_real_report_is_exact(ecqa_loaded):
    _, report = ecqa_loaded
    assert report.read == Counter({"train": 9_741, "validation": 1_221, "ecqa": 10_839})
    assert report.kept == Counter({"train": 9_626, "validation": 1_221})
    # the 115 train questions ECQA never annotated, and nothing else
    assert report.skipped == Counter({("train", "no ECQA explanation for this question"): 115})
    assert [(r["source"], r["reason"], r["count"]) for r in report.rows()] == [
        ("train", "no ECQA explanation for this question", 115)
    ]


def test_no_validation_question_leaks_into_train(ecqa_loaded):
    data, _ = ecqa_loaded
    train, val = data["train"], data["validation"]
    assert not set(train["id"]) & set(val["id"])
    assert not {q.lower() for q in train["question"]} & {q.lower() for q in val["question"]}


def test_record_fields_and_types(ecqa_loaded):
    data, _ = ecqa_loaded
    for split in ("train", "validation"):
        ds = data[split]
        assert tuple(ds.column_names) == RECORD_FIELDS
        assert len(set(ds["id"])) == ds.num_rows, f"{split}: ids not unique"
        for rec in ds:
            assert isinstance(rec["id"], str) and rec["id"]
            assert isinstance(rec["question"], str) and rec["question"].strip()
            assert len(rec["choices"]) == 5 and all(isinstance(c, str) and c for c in rec["choices"])
            assert rec["answer"] in LETTERS
            assert isinstance(rec["explanation"], str)
            assert isinstance(rec["positives"], list) and isinstance(rec["negatives"], list)
            assert isinstance(rec["concept"], str) and rec["concept"]
    assert all(e.strip() for e in data["train"]["explanation"]), "a train record has no explanation"
    # validation keeps its explanations where ECQA has one (they are never trained on)
    assert sum(bool(e) for e in data["validation"]["explanation"]) > 1_000


def test_train_sample_is_seeded(ecqa_dir):
    a = load_ecqa(ecqa_dir, train_sample_size=50, seed=1)["train"]["id"]
    b = load_ecqa(ecqa_dir, train_sample_size=50, seed=1)["train"]["id"]
    c = load_ecqa(ecqa_dir, train_sample_size=50, seed=2)["train"]["id"]
    assert len(a) == 50 and a == b
    assert a != c


def test_train_sample_size_must_be_positive(ecqa_dir):
    with pytest.raises(ValueError, match="train_sample_size must be positive"):
        load_ecqa(ecqa_dir, train_sample_size=0)


def test_holdout_is_carved_from_train_only(ecqa_dir):
    data = load_ecqa(ecqa_dir, holdout_size=100, seed=3)
    train, holdout, val = data["train"], data["holdout"], data["validation"]
    assert (train.num_rows, holdout.num_rows, val.num_rows) == (9_526, 100, 1_221)
    assert not set(train["id"]) & set(holdout["id"])
    assert not set(holdout["id"]) & set(val["id"])
    assert load_ecqa(ecqa_dir, holdout_size=100, seed=3)["holdout"]["id"] == holdout["id"]
    sampled = load_ecqa(ecqa_dir, holdout_size=100, seed=3, train_sample_size=50)
    assert sampled["holdout"]["id"] == holdout["id"]  # the sample is drawn after the holdout is set aside
    assert not set(sampled["train"]["id"]) & set(holdout["id"])
    with pytest.raises(ValueError, match="holdout_size must be between 1 and 9625"):
        load_ecqa(ecqa_dir, holdout_size=9_626)


# ---------------------------------------------------------------- bad rows, in a tiny folder


def csqa(id_: str, stem: str | None = None, answer: str = "A", n_choices: int = 5, concept: str = "thing") -> dict:
    """One row in the official CSQA layout."""
    labels = "ABCDEFG"[:n_choices]
    return {
        "answerKey": answer,
        "id": id_,
        "question": {
            "question_concept": concept,
            "choices": [{"label": x, "text": f"choice {x.lower()}"} for x in labels],
            "stem": stem if stem is not None else f"What is question {id_}?",
        },
    }


def ecqa(id_: str, explanation: str | None = "Because it is.") -> dict:
    return {"id": id_, "positives": ["p1", "p2"], "negatives": ["n1"], "explanation": explanation}


def write_folder(folder: Path, train: list, dev: list, exps: list, gz: bool = True) -> Path:
    """Write the three files in the shared/data/ecqa layout; list items that are str are raw lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("csqa_train", train), ("csqa_dev", dev), ("ecqa_explanations", exps)):
        text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
        if gz:
            with gzip.open(folder / f"{name}.jsonl.gz", "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            (folder / f"{name}.jsonl").write_text(text, encoding="utf-8")
    return folder


GOOD_TRAIN = [csqa("t1"), csqa("t2")]
GOOD_DEV = [csqa("v1"), csqa("v2")]
GOOD_EXPS = [ecqa("t1"), ecqa("t2"), ecqa("v1")]


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_tiny_folder_loads(tmp_path, gz):
    data, report = load_ecqa(write_folder(tmp_path, GOOD_TRAIN, GOOD_DEV, GOOD_EXPS, gz=gz), return_report=True)
    assert data["train"]["id"] == ["t1", "t2"]
    assert data["validation"]["id"] == ["v1", "v2"]
    assert data["validation"]["explanation"] == ["Because it is.", ""]  # v2 has none: kept, empty
    assert not report.skipped
    assert "nothing skipped" in str(report)


def without(row: dict, *path: str) -> dict:
    """A deep copy of ``row`` with the key at ``path`` removed."""
    row = json.loads(json.dumps(row))
    parent = row
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return row


# (case id, extra train rows, extra dev rows, extra ecqa rows, expected {(source, reason): count})
BAD_ROWS = [
    ("missing-answerKey", [without(csqa("b1"), "answerKey")], [], [], {("train", "missing field 'answerKey'"): 1}),
    (
        "missing-stem",
        [],
        [without(csqa("b1"), "question", "stem")],
        [],
        {("validation", "missing field 'question'"): 1},
    ),
    (
        "missing-concept",
        [without(csqa("b1"), "question", "question_concept")],
        [],
        [ecqa("b1")],
        {("train", "missing field 'question_concept'"): 1},
    ),
    ("missing-id", [without(csqa("b1"), "id")], [], [], {("train", "missing field 'id'"): 1}),
    (
        "ecqa-missing-explanation",
        [],
        [],
        [without(ecqa("t9"), "explanation")],
        {("ecqa", "missing field 'explanation'"): 1},
    ),
    ("answer-not-A-E", [csqa("b1", answer="F")], [], [ecqa("b1")], {("train", "answer key not in A-E"): 1}),
    (
        "four-choices",
        [csqa("b1", n_choices=4)],
        [],
        [ecqa("b1")],
        {("train", "not exactly 5 choices labelled A-E"): 1},
    ),
    ("six-choices", [], [csqa("b1", n_choices=6)], [], {("validation", "not exactly 5 choices labelled A-E"): 1}),
    ("empty-explanation", [csqa("b1")], [], [ecqa("b1", explanation="  ")], {("train", "empty explanation"): 1}),
    (
        "invalid-json",
        ['{"id": "b1", "question": '],
        [],
        ["not json at all"],
        {("train", "invalid JSON line"): 1, ("ecqa", "invalid JSON line"): 1},
    ),
    ("json-not-an-object", ["[1, 2, 3]"], [], [], {("train", "invalid JSON line"): 1}),
    (
        "train-question-in-validation",
        [csqa("b1", stem="What is question V1?")],
        [],
        [ecqa("b1")],
        {("train", "question also in validation (leak)"): 1},
    ),
]


@pytest.mark.parametrize("case, train, dev, exps, expected", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_rows_are_skipped_and_counted(tmp_path, case, train, dev, exps, expected):
    folder = write_folder(tmp_path, GOOD_TRAIN + train, GOOD_DEV + dev, GOOD_EXPS + exps)
    data, report = load_ecqa(folder, return_report=True)
    assert dict(report.skipped) == expected
    assert data["train"]["id"] == ["t1", "t2"], "the good train rows must be kept"
    assert data["validation"]["id"] == ["v1", "v2"], "the good validation rows must be kept"
    for row in report.rows():  # every reason is shown with the row where it first happened
        assert row["first"]
        assert row["reason"] in str(report)


def test_conflicting_duplicate_drops_both(tmp_path):
    train = GOOD_TRAIN + [csqa("d1", stem="First version?"), csqa("d1", stem="Second version?")]
    data, report = load_ecqa(write_folder(tmp_path, train, GOOD_DEV, GOOD_EXPS + [ecqa("d1")]), return_report=True)
    assert "d1" not in data["train"]["id"]
    assert data["train"]["id"] == ["t1", "t2"]
    assert dict(report.skipped) == {("train", "duplicate id with conflicting content"): 2}


def test_identical_duplicate_keeps_one(tmp_path):
    train = GOOD_TRAIN + [csqa("d1"), csqa("d1")]
    data, report = load_ecqa(write_folder(tmp_path, train, GOOD_DEV, GOOD_EXPS + [ecqa("d1")]), return_report=True)
    assert data["train"]["id"].count("d1") == 1
    assert dict(report.skipped) == {("train", "duplicate id (identical, one kept)"): 1}


def test_conflicting_ecqa_duplicate_leaves_question_unexplained(tmp_path):
    exps = GOOD_EXPS + [ecqa("t2", explanation="Another one.")]
    data, report = load_ecqa(write_folder(tmp_path, GOOD_TRAIN, GOOD_DEV, exps), return_report=True)
    assert data["train"]["id"] == ["t1"]
    assert dict(report.skipped) == {
        ("ecqa", "duplicate id with conflicting content"): 2,
        ("train", "no ECQA explanation for this question"): 1,
    }


# ---------------------------------------------------------------- clear errors


def test_wrong_path_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*ECQA folder or 'hub'"):
        load_ecqa(tmp_path / "nope")


def test_folder_without_files_names_the_expected_layout(tmp_path):
    (tmp_path / "csqa_train.jsonl.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"csqa_dev\.jsonl\.gz.*laid out like shared/data/ecqa"):
        load_ecqa(tmp_path)


def test_empty_source_is_a_clear_error(tmp_path):
    folder = write_folder(tmp_path, [], [], [])
    with pytest.raises(ValueError, match=r"no usable CommonsenseQA questions \(train 0, validation 0\)"):
        load_ecqa(folder)


def test_all_rows_bad_reports_why(tmp_path):
    folder = write_folder(tmp_path, [csqa("b1", answer="Z")], GOOD_DEV, [])
    with pytest.raises(ValueError, match=r"(?s)train 0.*answer key not in A-E"):
        load_ecqa(folder)


@pytest.mark.parametrize(
    "exps", [[], [ecqa("t1", explanation=""), ecqa("t2", explanation="")]], ids=["no-ecqa", "all-empty"]
)
def test_no_usable_explanation_is_a_clear_error(tmp_path, exps):
    with pytest.raises(ValueError, match="no CommonsenseQA train question has a usable ECQA explanation"):
        load_ecqa(write_folder(tmp_path, GOOD_TRAIN, GOOD_DEV, exps))
