"""Tests for helpers.metrics on small hand-checked cases."""

from __future__ import annotations

import gzip
import json
import math
from math import comb

import pandas as pd
import pytest

from helpers.metrics import (
    FILTERS,
    SUMMARY_COLUMNS,
    classify_failure,
    compact_table,
    default_pairs,
    failures_view,
    inspector_filter,
    letter_distribution,
    load_records,
    majority_vote,
    mcnemar_exact,
    paired_comparisons,
    records_files,
    summarize,
    summary_view,
    variant_order,
    wilson_interval,
)


def rec(id_, variant, correct, mode="cot", parsed="A", new_tokens=10, **extra):
    return {
        "id": id_,
        "variant": variant,
        "mode": mode,
        "prompt": "q",
        "output": "o",
        "parsed": parsed,
        "gold": "A",
        "correct": correct,
        "new_tokens": new_tokens,
        **extra,
    }


def test_wilson_matches_closed_form():
    k, n, z = 8, 10, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)
    # sanity: the normal (Wald) lower bound is clearly different
    assert abs(low - (p - z * math.sqrt(p * (1 - p) / n))) > 0.05


def test_wilson_empty():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_mcnemar_hand_computed():
    # 3 both right, a_only=1, b_only=7, 2 both wrong
    a = [True] * 3 + [True] * 1 + [False] * 7 + [False] * 2
    b = [True] * 3 + [False] * 1 + [True] * 7 + [False] * 2
    res = mcnemar_exact(a, b)
    expected = 2 * (comb(8, 0) + comb(8, 1)) / 2**8
    assert expected == 0.0703125
    assert res["p_value"] == pytest.approx(expected, abs=1e-12)
    assert (res["n"], res["both_right"], res["a_only"], res["b_only"], res["both_wrong"]) == (13, 3, 1, 7, 2)


def test_mcnemar_no_discordant():
    res = mcnemar_exact([True, False, True], [True, False, True])
    assert res["p_value"] == 1.0
    assert res["a_only"] == res["b_only"] == 0


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])


def test_summary_and_failures_views_are_compact_and_rounded():
    records = [
        rec(1, "sft", True, new_tokens=20),
        rec(2, "sft", False, parsed=None, new_tokens=41, failure="no_anchor"),
        rec(3, "sft", True, parsed="C", new_tokens=30),
        rec(1, "base", True, mode="letter", new_tokens=0),
        rec(2, "base", False, mode="letter", parsed="B", new_tokens=0),
        rec(3, "base", True, mode="letter", new_tokens=0),
    ]
    summary = summarize(records)
    view = summary_view(summary)
    table = view.data
    # n is the same in every row: said once in the caption instead of a column
    assert list(table.columns) == [
        "variant",
        "mode",
        "accuracy %",
        "95% CI",
        "no letter %",
        "predicted letters %",
        "CoT tokens",
    ]
    base, sft = table.iloc[0], table.iloc[1]
    assert (sft["accuracy %"], sft["no letter %"], sft["CoT tokens"]) == ("66.7", "33.3", "30")
    lo, hi = wilson_interval(2, 3)
    assert sft["95% CI"] == f"{100 * lo:.1f}–{100 * hi:.1f}"
    assert sft["predicted letters %"] == "A 33 · B 0 · C 33 · D 0 · E 0 · none 33"
    assert (base["no letter %"], base["CoT tokens"]) == ("–", "–"), "a scoring mode writes no CoT"
    html = view.to_html()
    assert "3 questions per row" in html and '<th class="blank' not in html and "row_heading" not in html
    failures = failures_view(summary).data
    assert list(failures.index) == [0] and failures.iloc[0]["no letter %"] == "33.3"
    assert failures.iloc[0]["no anchor"] == 1 and failures.iloc[0]["top letter"] == "A (33%)"
    assert "nowrap" in compact_table(pd.DataFrame({"a": ["dpo-on-policy"]})).to_html()


def test_summarize_small():
    records = [
        rec(1, "sft", True, new_tokens=20),
        rec(2, "sft", False, parsed=None, new_tokens=40),
        rec(1, "base", True, mode="letter", new_tokens=1),
        rec(1, "base", True, new_tokens=10),
        rec(2, "base", False, new_tokens=30),
        rec(3, "sft", True, new_tokens=30),
        rec(3, "base", False, parsed=None, new_tokens=50),
    ]
    out = summarize(records)
    assert list(out.columns) == SUMMARY_COLUMNS
    # pipeline order (base before sft), modes in the registry's order (cot before letter)
    assert list(zip(out["variant"], out["mode"])) == [("base", "cot"), ("base", "letter"), ("sft", "cot")]
    sft = out.iloc[2]
    assert (sft["n"], sft["correct"]) == (3, 2)
    assert sft["accuracy"] == pytest.approx(2 / 3)
    assert sft["parse_fail_rate"] == pytest.approx(1 / 3)
    assert sft["mean_new_tokens"] == pytest.approx(30.0)
    assert (sft["ci_low"], sft["ci_high"]) == pytest.approx(wilson_interval(2, 3))
    base_cot = out.iloc[0]
    assert base_cot["accuracy"] == pytest.approx(1 / 3)
    assert base_cot["parse_fail_rate"] == pytest.approx(1 / 3)
    assert base_cot["mean_new_tokens"] == pytest.approx(30.0)
    # DataFrame input gives the same answer
    pd.testing.assert_frame_equal(summarize(pd.DataFrame(records)), out)


def test_paired_aligns_by_id_and_drops_unmatched():
    base = [
        rec("q1", "base", True),
        rec("q2", "base", False),
        rec("q3", "base", False),
        rec("q4", "base", True),
    ]  # q4 only answered by base
    sft = [
        rec("q3", "sft", True),
        rec("q1", "sft", False),
        rec("q2", "sft", True),
        rec("q5", "sft", True),
    ]  # q5 only answered by sft
    out = paired_comparisons(base + sft)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["mode"], row["variant_a"], row["variant_b"], row["n"]) == ("cot", "base", "sft", 3)
    assert row["comparison"] == "sft vs base"
    # aligned: q1 (T,F), q2 (F,T), q3 (F,T)
    assert (row["a_only"], row["b_only"]) == (1, 2)
    assert row["acc_a"] == pytest.approx(1 / 3)
    assert row["acc_b"] == pytest.approx(2 / 3)
    assert row["delta"] == pytest.approx(1 / 3)
    assert row["p_value"] == pytest.approx(1.0)  # 2 * P(X<=1 | n=3) = 1


def test_paired_default_pairs_and_modes():
    recs = []
    for m in ("dpo", "sft", "base"):  # records in reverse: the pairs still follow the pipeline
        for md in ("letter", "cot"):
            recs += [rec(i, m, i % 2 == 0, mode=md) for i in range(4)]
    out = paired_comparisons(recs)
    assert list(out["comparison"][:3]) == ["sft vs base", "dpo vs sft", "dpo vs base"]
    pairs = list(zip(out["mode"], out["variant_a"], out["variant_b"]))
    assert pairs == [
        ("cot", "base", "sft"),
        ("cot", "sft", "dpo"),
        ("cot", "base", "dpo"),
        ("letter", "base", "sft"),
        ("letter", "sft", "dpo"),
        ("letter", "base", "dpo"),
    ]
    only = paired_comparisons(recs, pairs=[("base", "dpo")], mode="letter")
    assert list(zip(only["mode"], only["variant_a"], only["variant_b"])) == [("letter", "base", "dpo")]


def test_paired_duplicate_id_raises():
    recs = [rec(1, "base", True), rec(1, "base", False), rec(1, "sft", True)]
    with pytest.raises(ValueError, match="duplicated"):
        paired_comparisons(recs)


def test_load_records_gz_roundtrip(tmp_path):
    rows = [rec(1, "base", True), rec(2, "base", False, parsed=None)]
    gz = tmp_path / "base.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    plain = tmp_path / "sft.jsonl"
    old = {("model" if k == "variant" else k): v for k, v in rec(1, "sft", True).items()}  # before the rename
    plain.write_text(json.dumps(old) + "\n\n", encoding="utf-8")
    df = load_records([gz, str(plain)])
    assert len(df) == 3
    assert df["correct"].tolist() == [True, False, True]
    assert df["parsed"].isna().tolist() == [False, True, False]
    assert summarize(df)["n"].tolist() == [2, 1]


# ---------------------------------------------------------------- failures, votes, letters, order
@pytest.mark.parametrize(
    "output, parsed, tokens, kind",
    [
        ("Because.\nAnswer: B", "B", 192, None),  # parsed: no failure, even at the limit
        ("blah blah blah", None, 192, "out_of_tokens"),
        ("Answer: C\nAnswer:", None, 192, "out_of_tokens"),  # ran out first, whatever it wrote
        ("Answer: C\nAnswer:", None, 40, "dangling_anchor"),
        ("**Answer:** a dog", None, 12, "dangling_anchor"),
        ("Answer: A or C", None, 12, "dangling_anchor"),
        ("Answer: F", None, 12, "dangling_anchor"),
        ("I think the sea.<|im_end|>", None, 12, "no_anchor"),
        ("", None, 1, "no_anchor"),
    ],
)
def test_classify_failure(output, parsed, tokens, kind):
    assert classify_failure(output, parsed, tokens, 192) == kind


def test_majority_vote_ties_go_to_the_first_sampled():
    assert majority_vote(["B", "A", "A", "B"]) == "B"
    assert majority_vote(["A", "B", "B", "A"]) == "A"
    assert majority_vote([None, "D", "C", "C", None, None]) == "C"  # None is not a candidate
    assert majority_vote([None, None, "F"]) is None


def test_variant_order_is_the_pipeline_not_the_alphabet():
    assert variant_order(["dpo-on-policy", "sft", "dpo-offline", "base", "sft"]) == [
        "base",
        "sft",
        "dpo-on-policy",
        "dpo-offline",
    ]
    assert default_pairs(["dpo-offline", "base", "dpo-on-policy", "sft"]) == [
        ("base", "sft"),
        ("sft", "dpo-offline"),
        ("sft", "dpo-on-policy"),
        ("dpo-offline", "dpo-on-policy"),
        ("base", "dpo-on-policy"),
    ]
    assert default_pairs(["sft", "base"]) == [("base", "sft")]


def test_summary_breaks_failures_down_and_shows_letters():
    recs = [rec(i, "sft", i < 6, parsed="A") for i in range(8)]
    recs += [
        rec(8, "sft", False, parsed=None, output="Answer:", new_tokens=20),
        rec(9, "sft", False, parsed=None, output="zzz", new_tokens=64),
    ]  # 64 = the largest: the limit
    row = summarize(recs).iloc[0]
    assert (row["out_of_tokens"], row["dangling_anchor"], row["no_anchor"]) == (1, 1, 0)
    assert (row["top_letter"], row["top_share"], row["parse_fail_rate"]) == ("A", 0.8, 0.2)
    assert row["letters"] == "A:8 B:0 C:0 D:0 E:0 none:2"
    stored = [dict(r, failure="no_anchor") if r["parsed"] is None else r for r in recs]  # a stored failure wins
    assert summarize(stored).iloc[0]["no_anchor"] == 2
    dist = letter_distribution(recs)
    assert dist.iloc[0][["A", "none"]].tolist() == [0.8, 0.2]


def test_cloze_reports_the_summed_pick_beside_the_headline():
    norm, summed = [0.0, -1.0, -2.0, -3.0, -4.0], [-9.0, -1.0, -2.0, -3.0, -4.0]
    recs = [
        rec(1, "base", True, mode="cloze", detail={"acc_norm": norm, "acc": summed}),
        rec(2, "base", True, mode="cloze", detail={"acc_norm": norm, "acc": norm}),
    ]
    out = summarize(recs)
    assert list(zip(out["label"], out["metric"], out["accuracy"])) == [
        ("cloze", "acc_norm", 1.0),
        ("cloze (acc)", "acc", 0.5),
    ]
    comp = paired_comparisons(recs + [dict(r, variant="sft") for r in recs])
    assert list(comp["label"]) == ["cloze", "cloze (acc)"]


def test_records_files_in_pipeline_order(tmp_path):
    for name in (
        "sft-letter.jsonl.gz",
        "base-cot@k.jsonl",
        "dpo-cot.jsonl",
        "base-cot.jsonl",
        "base-cot.rank1.jsonl",
        "base-cot.jsonl.provenance.json",
        "sft-cot.jsonl.gz",
        "base-letter-cyclic.jsonl",
    ):
        (tmp_path / name).write_text("")
    assert [p.name for p in records_files(tmp_path)] == [
        "base-cot.jsonl",
        "base-cot@k.jsonl",
        "base-letter-cyclic.jsonl",
        "sft-cot.jsonl.gz",
        "sft-letter.jsonl.gz",
        "dpo-cot.jsonl",
    ]


# ---------------------------------------------------------------- the CoT inspector's filters
def _inspector_records() -> pd.DataFrame:
    table = {
        "q1": (False, True, True),
        "q2": (True, True, False),
        "q3": (False, False, False),
        "q4": (True, True, True),
    }
    rows = [
        rec(q, v, c, parsed=None if (q, v) == ("q3", "dpo") else "A")
        for q, cs in table.items()
        for v, c in zip(("base", "sft", "dpo"), cs)
    ]
    return pd.DataFrame(rows + [rec("q1", "base", True, mode="letter")])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("all", ["q1", "q2", "q3", "q4"]),
        ("fixed by SFT", ["q1"]),
        ("broken by DPO", ["q2"]),
        ("all variants wrong", ["q3"]),
        ("parse failures", ["q3"]),
    ],
)
def test_inspector_filter(name, expected):
    assert name in FILTERS
    assert inspector_filter(_inspector_records(), name) == expected


def test_inspector_filter_needs_its_variants():
    df = _inspector_records()
    assert inspector_filter(df[df["variant"] != "dpo"], "broken by DPO") == []
    assert inspector_filter(df.replace({"dpo": "dpo-offline"}), "broken by DPO") == ["q2"]
    with pytest.raises(ValueError, match="unknown filter"):
        inspector_filter(df, "best")
