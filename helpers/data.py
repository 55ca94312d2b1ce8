"""CommonsenseQA questions joined with ECQA explanations, split without leakage.

`load_ecqa(source)` returns a `datasets.DatasetDict` with

* ``train``: CommonsenseQA *train* questions that have an ECQA explanation;
* ``validation``: all CommonsenseQA *validation* questions (explanations attached where
  present, never trained on).

ECQA's own author split is deliberately not used: it puts 849 of the 1,221 CommonsenseQA
validation questions into its train split.

Every record has the fields of `RECORD_FIELDS`. Bad rows are skipped, counted by reason and
returned in a `LoadReport`; nothing is dropped silently.

    >>> data, report = load_ecqa("../shared/data/ecqa", return_report=True)  # doctest: +SKIP
    >>> data["validation"].num_rows                                            # doctest: +SKIP
    1221
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from datasets import Dataset, DatasetDict

from helpers.answers import LETTERS

log = logging.getLogger(__name__)

RECORD_FIELDS = ("id", "question", "choices", "answer", "explanation", "positives", "negatives", "concept")
HUB_CSQA = "tau/commonsense_qa"
HUB_ECQA = ("sapienzanlp/zebra-kb-explanations", "ecqa")
# The same 10,963 rows under the name of the folder that holds them in the dataset's newer revisions.
HUB_ECQA_RENAMED = "csqa-train-ecqa"
LOCAL_FILES = {
    "train": ("csqa_train.jsonl.gz", "csqa_train.jsonl"),
    "validation": ("csqa_dev.jsonl.gz", "csqa_dev.jsonl"),
    "ecqa": ("ecqa_explanations.jsonl.gz", "ecqa_explanations.jsonl"),
}


@dataclass
class LoadReport:
    """What was read, kept and skipped, by source and reason."""

    read: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # key: (source, reason)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def skip(self, source: str, reason: str, where: str) -> None:
        self.skipped[(source, reason)] += 1
        self.examples.setdefault((source, reason), where)

    def rows(self) -> list[dict[str, Any]]:
        """The skipped rows as a table: source, reason, count, first example."""
        return [
            {"source": s, "reason": r, "count": n, "first": self.examples[(s, r)]}
            for (s, r), n in sorted(self.skipped.items())
        ]

    def __str__(self) -> str:
        lines = [f"read {dict(self.read)}; kept {dict(self.kept)}"]
        lines += [f"  skipped {r['count']:>5} {r['source']}: {r['reason']} (first: {r['first']})" for r in self.rows()]
        return "\n".join(lines) if self.skipped else lines[0] + "; nothing skipped"


def _clean(text: str) -> str:
    """Collapse the newlines and indentation that ECQA's source leaves inside some texts."""
    return " ".join(str(text).split())


def _read_jsonl(path: Path, source: str, report: LoadReport) -> Iterator[tuple[str, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.read[source] += 1
            where = f"{path.name}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                report.skip(source, "invalid JSON line", where)
                continue
            if not isinstance(row, dict):
                report.skip(source, "invalid JSON line", where)
                continue
            yield where, row


def _official_to_flat(row: dict) -> dict:
    """Official CSQA jsonl record -> the flat shape of the Hub dataset."""
    q = row.get("question")
    if not isinstance(q, dict):
        return {"id": row.get("id")}
    choices = q.get("choices") or []
    return {
        "id": row.get("id"),
        "question": q.get("stem"),
        "question_concept": q.get("question_concept"),
        "labels": [c.get("label") for c in choices if isinstance(c, dict)],
        "texts": [c.get("text") for c in choices if isinstance(c, dict)],
        "answerKey": row.get("answerKey"),
    }


def _question(flat: dict) -> tuple[dict | None, str]:
    """Validate one flat CSQA row; return (record without explanation, "") or (None, reason)."""
    for key in ("id", "question", "question_concept", "labels", "texts", "answerKey"):
        if flat.get(key) in (None, "", []):
            return None, f"missing field '{key}'"
    if list(flat["labels"]) != list(LETTERS) or len(flat["texts"]) != len(LETTERS):
        return None, "not exactly 5 choices labelled A-E"
    if any(not isinstance(t, str) or not t.strip() for t in flat["texts"]):
        return None, "empty choice text"
    if flat["answerKey"] not in LETTERS:
        return None, "answer key not in A-E"
    rec = {
        "id": str(flat["id"]),
        "question": _clean(flat["question"]),
        "choices": [_clean(t) for t in flat["texts"]],
        "answer": flat["answerKey"],
        "concept": _clean(flat["question_concept"]),
    }
    return rec, ""


def _explanation(row: dict) -> tuple[dict | None, str]:
    if not row.get("id"):
        return None, "missing field 'id'"
    if "explanation" not in row:
        return None, "missing field 'explanation'"
    as_list = lambda v: [_clean(s) for s in (v.split("\n") if isinstance(v, str) else v or []) if _clean(s)]  # noqa: E731
    return {
        "id": str(row["id"]),
        "explanation": _clean(row.get("explanation") or ""),
        "positives": as_list(row.get("positives")),
        "negatives": as_list(row.get("negatives")),
    }, ""


def _dedupe(items: Iterable[tuple[str, dict]], source: str, report: LoadReport) -> dict[str, dict]:
    """Keep one row per id; identical repeats are counted, conflicting ones dropped entirely."""
    out: dict[str, dict] = {}
    conflicted: set[str] = set()
    for where, rec in items:
        rid = rec["id"]
        if rid in conflicted:
            report.skip(source, "duplicate id with conflicting content", where)
        elif rid not in out:
            out[rid] = rec
        elif out[rid] == rec:
            report.skip(source, "duplicate id (identical, one kept)", where)
        else:
            report.skip(source, "duplicate id with conflicting content", where)
            report.skip(source, "duplicate id with conflicting content", f"first row of {rid}")
            conflicted.add(rid)
            del out[rid]
    return out


def _validated(rows: Iterable[tuple[str, dict]], source: str, report: LoadReport, check) -> dict[str, dict]:
    def good() -> Iterator[tuple[str, dict]]:
        for where, row in rows:
            rec, reason = check(row)
            if rec is None:
                report.skip(source, reason, where)
            else:
                yield where, rec

    return _dedupe(good(), source, report)


def join_and_split(
    train_rows: Iterable[tuple[str, dict]],
    validation_rows: Iterable[tuple[str, dict]],
    ecqa_rows: Iterable[tuple[str, dict]],
    report: LoadReport,
) -> DatasetDict:
    """The join and the leak-free split shared by every source. Rows are (where, flat CSQA row)."""
    train = _validated(train_rows, "train", report, _question)
    validation = _validated(validation_rows, "validation", report, _question)
    ecqa = _validated(ecqa_rows, "ecqa", report, _explanation)
    if not train or not validation:
        raise ValueError(
            f"no usable CommonsenseQA questions (train {len(train)}, validation {len(validation)}); {report}"
        )
    empty = {"explanation": "", "positives": [], "negatives": []}
    val_ids, val_texts = set(validation), {r["question"].lower() for r in validation.values()}
    train_out = []
    for rid, rec in train.items():
        exp = ecqa.get(rid)
        if rid in val_ids or rec["question"].lower() in val_texts:
            report.skip("train", "question also in validation (leak)", rid)
        elif exp is None:
            report.skip("train", "no ECQA explanation for this question", rid)
        elif not exp["explanation"]:
            report.skip("train", "empty explanation", rid)
        else:
            train_out.append({**rec, **exp})
    if not train_out:
        raise ValueError(
            f"no CommonsenseQA train question has a usable ECQA explanation: check the explanations source; {report}"
        )
    val_out = [{**rec, **(ecqa.get(rid) or {**empty, "id": rid})} for rid, rec in validation.items()]
    report.kept.update({"train": len(train_out), "validation": len(val_out)})
    return DatasetDict(
        train=Dataset.from_list([{k: r[k] for k in RECORD_FIELDS} for r in train_out]),
        validation=Dataset.from_list([{k: r[k] for k in RECORD_FIELDS} for r in val_out]),
    )


def _find(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{folder} has none of {names}. Expected a folder laid out like shared/data/ecqa "
        "(csqa_train.jsonl.gz, csqa_dev.jsonl.gz, ecqa_explanations.jsonl.gz), or source='hub'."
    )


def _local(folder: Path, report: LoadReport) -> DatasetDict:
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist: pass the path to the ECQA folder or 'hub'")
    paths = {k: _find(folder, v) for k, v in LOCAL_FILES.items()}

    def csqa(split: str) -> Iterator[tuple[str, dict]]:
        return ((w, _official_to_flat(r)) for w, r in _read_jsonl(paths[split], split, report))

    return join_and_split(csqa("train"), csqa("validation"), _read_jsonl(paths["ecqa"], "ecqa", report), report)


def _hub_explanations(load_dataset: Any) -> DatasetDict:
    """ECQA from zebra-kb-explanations: config ``ecqa``, else ``csqa-train-ecqa`` (its card lists both; the file
    tree of its later revisions has only the second folder)."""
    path, name = HUB_ECQA
    try:
        return load_dataset(path, name)
    except (ValueError, FileNotFoundError) as first:
        try:
            return load_dataset(path, HUB_ECQA_RENAMED)
        except (ValueError, FileNotFoundError) as second:
            raise FileNotFoundError(
                f"neither config {name!r} nor {HUB_ECQA_RENAMED!r} of {path} loads ({first}; {second}). "
                "Pass a local folder laid out like shared/data/ecqa as the data source instead of 'hub'."
            ) from second


def _hub(report: LoadReport) -> DatasetDict:
    """The Hub datasets through `join_and_split` (tests/test_data_hub.py runs this on recorded rows)."""
    from datasets import load_dataset

    csqa = load_dataset(HUB_CSQA)
    ecqa = _hub_explanations(load_dataset)
    ecqa_split = ecqa[next(iter(ecqa))]

    def flat(split: str) -> Iterator[tuple[str, dict]]:
        for i, r in enumerate(csqa[split]):
            report.read[split] += 1
            ch = r.get("choices") or {}
            yield f"{HUB_CSQA}/{split}:{i}", {**r, "labels": ch.get("label"), "texts": ch.get("text")}

    def exps() -> Iterator[tuple[str, dict]]:
        for i, r in enumerate(ecqa_split):
            report.read["ecqa"] += 1
            yield f"{HUB_ECQA[0]}:{i}", r

    return join_and_split(flat("train"), flat("validation"), exps(), report)


@overload
def load_ecqa(
    source: str | Path = ...,
    train_sample_size: int | None = ...,
    seed: int = ...,
    return_report: Literal[False] = ...,
    holdout_size: int = ...,
) -> DatasetDict: ...
@overload
def load_ecqa(
    source: str | Path = ...,
    train_sample_size: int | None = ...,
    seed: int = ...,
    return_report: Literal[True] = ...,
    holdout_size: int = ...,
) -> tuple[DatasetDict, LoadReport]: ...
def load_ecqa(
    source: str | Path = "hub",
    train_sample_size: int | None = None,
    seed: int = 42,
    return_report: bool = False,
    holdout_size: int = 0,
):
    """Load CSQA + ECQA from ``"hub"`` or a local folder; optionally a seeded train sample.

    ``holdout_size`` > 0 moves that many seeded-random train questions into a ``holdout`` split
    (for choosing hyperparameters without touching validation) before the train sample is drawn.
    """
    report = LoadReport()
    data = _hub(report) if str(source) == "hub" else _local(Path(source).expanduser(), report)
    if holdout_size:
        if not 0 < holdout_size < data["train"].num_rows:
            raise ValueError(f"holdout_size must be between 1 and {data['train'].num_rows - 1}, got {holdout_size}")
        parts = data["train"].train_test_split(test_size=holdout_size, seed=seed)
        data["train"], data["holdout"] = parts["train"], parts["test"]
    if train_sample_size is not None:
        if train_sample_size <= 0:
            raise ValueError(f"train_sample_size must be positive or None, got {train_sample_size}")
        n = min(train_sample_size, data["train"].num_rows)
        data["train"] = data["train"].shuffle(seed=seed).select(range(n))
    if report.skipped:
        log.info("ECQA load report:\n%s", report)
    return (data, report) if return_report else data
