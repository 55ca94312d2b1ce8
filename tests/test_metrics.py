"""Tests for helpers.metrics on small hand-checked cases."""

from __future__ import annotations

import gzip
import json
import math
from math import comb

import pandas as pd
import pytest

from helpers.metrics import (
    load_records,
    mcnemar_exact,
    paired_comparisons,
    summarize,
    wilson_interval,
)


def rec(id_, model, correct, mode="cot", parsed="A", new_tokens=10):
    return {"id": id_, "model": model, "mode": mode, "prompt": "q", "output": "o",
            "parsed": parsed, "gold": "A", "correct": correct, "new_tokens": new_tokens}


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
    assert list(out.columns) == ["model", "mode", "n", "correct", "accuracy", "ci_low",
                                 "ci_high", "parse_fail_rate", "mean_new_tokens"]
    assert list(zip(out["model"], out["mode"])) == [("sft", "cot"), ("base", "letter"), ("base", "cot")]
    sft = out.iloc[0]
    assert (sft["n"], sft["correct"]) == (3, 2)
    assert sft["accuracy"] == pytest.approx(2 / 3)
    assert sft["parse_fail_rate"] == pytest.approx(1 / 3)
    assert sft["mean_new_tokens"] == pytest.approx(30.0)
    assert (sft["ci_low"], sft["ci_high"]) == pytest.approx(wilson_interval(2, 3))
    base_cot = out.iloc[2]
    assert base_cot["accuracy"] == pytest.approx(1 / 3)
    assert base_cot["parse_fail_rate"] == pytest.approx(1 / 3)
    assert base_cot["mean_new_tokens"] == pytest.approx(30.0)
    # DataFrame input gives the same answer
    pd.testing.assert_frame_equal(summarize(pd.DataFrame(records)), out)


def test_paired_aligns_by_id_and_drops_unmatched():
    base = [rec("q1", "base", True), rec("q2", "base", False), rec("q3", "base", False),
            rec("q4", "base", True)]  # q4 only answered by base
    sft = [rec("q3", "sft", True), rec("q1", "sft", False), rec("q2", "sft", True),
           rec("q5", "sft", True)]  # q5 only answered by sft
    out = paired_comparisons(base + sft)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["mode"], row["model_a"], row["model_b"], row["n"]) == ("cot", "base", "sft", 3)
    # aligned: q1 (T,F), q2 (F,T), q3 (F,T)
    assert (row["a_only"], row["b_only"]) == (1, 2)
    assert row["acc_a"] == pytest.approx(1 / 3)
    assert row["acc_b"] == pytest.approx(2 / 3)
    assert row["delta"] == pytest.approx(1 / 3)
    assert row["p_value"] == pytest.approx(1.0)  # 2 * P(X<=1 | n=3) = 1


def test_paired_default_pairs_and_modes():
    recs = []
    for m in ("base", "sft", "dpo"):
        for md in ("cot", "letter"):
            recs += [rec(i, m, i % 2 == 0, mode=md) for i in range(4)]
    out = paired_comparisons(recs)
    pairs = list(zip(out["mode"], out["model_a"], out["model_b"]))
    assert pairs == [("cot", "base", "sft"), ("cot", "sft", "dpo"), ("cot", "base", "dpo"),
                     ("letter", "base", "sft"), ("letter", "sft", "dpo"), ("letter", "base", "dpo")]
    only = paired_comparisons(recs, pairs=[("base", "dpo")], mode="letter")
    assert list(zip(only["mode"], only["model_a"], only["model_b"])) == [("letter", "base", "dpo")]


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
    plain.write_text(json.dumps(rec(1, "sft", True)) + "\n\n", encoding="utf-8")
    df = load_records([gz, str(plain)])
    assert len(df) == 3
    assert df["model"].tolist() == ["base", "base", "sft"]
    assert df["correct"].tolist() == [True, False, True]
    assert df["parsed"].isna().tolist() == [False, True, False]
    assert summarize(df)["n"].tolist() == [2, 1]
