"""The Hub data path (``load_ecqa("hub")``, the notebooks' default) on recorded rows, offline.

tests/fixtures/hub/ holds a few real rows in the shapes the two dataset cards document:
``tau/commonsense_qa`` (``choices`` a sequence of {label, text}, so a row holds ``{"label": [...], "text": [...]}``)
and ``sapienzanlp/zebra-kb-explanations`` config ``ecqa`` (id, positives, negatives, explanation; one split).
``datasets.load_dataset`` is replaced by one that builds those Datasets with the cards' features; the loader then
goes through the same validation, join and leak-free split as the local folder, and must give the same records.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from datasets import Dataset, DatasetDict, Features, Sequence, Value

from helpers.data import HUB_CSQA, HUB_ECQA, HUB_ECQA_RENAMED, RECORD_FIELDS, load_ecqa

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hub"
STRING = Value("string")
CARDS: dict[tuple[str, str | None], tuple[str, Features]] = {
    (HUB_CSQA, None): (
        "tau_commonsense_qa.json",
        Features(
            {
                "id": STRING,
                "question": STRING,
                "question_concept": STRING,
                "choices": Sequence({"label": STRING, "text": STRING}),
                "answerKey": STRING,
            }
        ),
    ),
    HUB_ECQA: (
        "zebra_kb_explanations_ecqa.json",
        Features({"id": STRING, "positives": Sequence(STRING), "negatives": Sequence(STRING), "explanation": STRING}),
    ),
}


def recorded(path: str, name: str | None = None) -> dict[str, list[dict[str, Any]]]:
    file, _ = CARDS[(path, name)]
    return {k: v for k, v in json.loads((FIXTURES / file).read_text()).items() if not k.startswith("_")}


class RecordedHub:
    """Stands in for ``datasets.load_dataset``: the recorded rows (``.rows``, editable) with the cards' features."""

    def __init__(self) -> None:
        self.rows = {key: recorded(*key) for key in CARDS}
        self.calls: list[tuple[str, str | None]] = []

    def load_dataset(self, path: str, name: str | None = None, **kwargs: Any) -> DatasetDict:
        self.calls.append((path, name))
        if (path, name) not in self.rows:
            raise ValueError(f"BuilderConfig {name!r} not found. Available: {[n for _, n in self.rows]}")
        features = next(f for (p, _), (_, f) in CARDS.items() if p == path)
        return DatasetDict(
            {split: Dataset.from_list(rows, features=features) for split, rows in self.rows[(path, name)].items()}
        )


@pytest.fixture
def hub(monkeypatch) -> RecordedHub:
    fake = RecordedHub()
    monkeypatch.setattr(datasets, "load_dataset", fake.load_dataset)
    return fake


def local_folder(root: Path) -> Path:
    """The same rows as files of the local layout (official CSQA jsonl, ECQA jsonl)."""
    csqa = recorded(HUB_CSQA)

    def official(r: dict[str, Any]) -> dict[str, Any]:
        choices = [{"label": a, "text": t} for a, t in zip(r["choices"]["label"], r["choices"]["text"])]
        question = {"question_concept": r["question_concept"], "choices": choices, "stem": r["question"]}
        return {"answerKey": r["answerKey"], "id": r["id"], "question": question}

    files = {
        "csqa_train.jsonl.gz": [official(r) for r in csqa["train"]],
        "csqa_dev.jsonl.gz": [official(r) for r in csqa["validation"]],
        "ecqa_explanations.jsonl.gz": recorded(*HUB_ECQA)["train"],
    }
    for name, rows in files.items():
        with gzip.open(root / name, "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return root


def test_hub_rows_load_through_the_join_like_the_local_files(hub, tmp_path):
    data, report = load_ecqa("hub", return_report=True)
    assert hub.calls == [(HUB_CSQA, None), HUB_ECQA]
    local, local_report = load_ecqa(local_folder(tmp_path), return_report=True)
    for split in ("train", "validation"):
        assert tuple(data[split].column_names) == RECORD_FIELDS
        assert data[split].to_list() == local[split].to_list(), f"{split}: the Hub path and the local path differ"
    assert report.read == local_report.read and report.kept == local_report.kept
    assert report.skipped == local_report.skipped


def test_hub_records_carry_the_documented_fields(hub):
    csqa, ecqa = recorded(HUB_CSQA), {r["id"]: r for r in recorded(*HUB_ECQA)["train"]}
    data, report = load_ecqa("hub", return_report=True)
    first = data["train"][0]
    row = csqa["train"][0]
    assert (first["id"], first["question"], first["concept"], first["answer"]) == (
        row["id"],
        row["question"],
        row["question_concept"],
        row["answerKey"],
    )
    assert first["choices"] == row["choices"]["text"]
    assert (first["explanation"], first["positives"], first["negatives"]) == (
        ecqa[row["id"]]["explanation"],
        ecqa[row["id"]]["positives"],
        ecqa[row["id"]]["negatives"],
    )
    assert data["train"]["id"] == [r["id"] for r in csqa["train"][:3]]  # the fourth has no explanation
    assert data["validation"]["id"] == [r["id"] for r in csqa["validation"]]  # all kept, explained or not
    assert data["validation"][2]["explanation"] == "" and data["validation"][2]["positives"] == []
    assert report.read == {"train": 4, "validation": 3, "ecqa": 6}
    assert report.skipped == {("train", "no ECQA explanation for this question"): 1}
    assert report.examples[("train", "no ECQA explanation for this question")] == csqa["train"][3]["id"]


def test_hub_train_sample_and_holdout_work_as_for_local_files(hub, tmp_path):
    hub_data = load_ecqa("hub", train_sample_size=2, holdout_size=1, seed=3)
    local = load_ecqa(local_folder(tmp_path), train_sample_size=2, holdout_size=1, seed=3)
    assert hub_data["holdout"]["id"] == local["holdout"]["id"] and hub_data["train"]["id"] == local["train"]["id"]


def test_a_bad_hub_row_is_counted_with_where_it_is(hub):
    hub.rows[(HUB_CSQA, None)]["validation"][1]["choices"]["label"][4] = "F"
    data, report = load_ecqa("hub", return_report=True)
    assert data["validation"].num_rows == 2
    key = ("validation", "not exactly 5 choices labelled A-E")
    assert report.skipped[key] == 1 and report.examples[key] == f"{HUB_CSQA}/validation:1"


def test_ecqa_under_its_newer_config_name_loads_the_same(hub, tmp_path):
    """The card lists configs ``ecqa`` and ``csqa-train-ecqa`` (same rows); later file trees keep only the second."""
    before = load_ecqa("hub")
    hub.rows[(HUB_ECQA[0], HUB_ECQA_RENAMED)] = hub.rows.pop(HUB_ECQA)
    hub.calls.clear()
    after = load_ecqa("hub")
    assert hub.calls == [(HUB_CSQA, None), HUB_ECQA, (HUB_ECQA[0], HUB_ECQA_RENAMED)]
    assert after["train"].to_list() == before["train"].to_list()
    del hub.rows[(HUB_ECQA[0], HUB_ECQA_RENAMED)]
    with pytest.raises(FileNotFoundError, match=r"neither config 'ecqa' nor 'csqa-train-ecqa' .*local folder"):
        load_ecqa("hub")
