"""The data-size curve's summary (scripts/gpu/data_curve.py): what decides the quick path's SFT size."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "gpu"))
import data_curve  # noqa: E402


def records(parsed: list[str | None], gold: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"parsed": parsed, "correct": [p == g for p, g in zip(parsed, gold)], "new_tokens": [50] * len(parsed)}
    )


def test_a_model_that_answers_one_letter_shows_as_collapsed_and_not_above_chance():
    gold = list("ABCDE") * 40  # 200 questions, every letter as often
    collapsed = data_curve.summary(records(["B"] * 200, gold))
    assert collapsed["accuracy"] == 0.2 and collapsed["top_letter_share"] == 1.0
    assert collapsed["accuracy_low95"] < 0.2  # chance at five choices is inside its interval
    assert collapsed["parse_fail_rate"] == 0.0


def test_a_model_right_half_the_time_is_above_chance_and_shares_ignore_parse_failures():
    gold = list("ABCDE") * 40
    parsed = [g if i % 2 else None for i, g in enumerate(gold)]  # right or unparsed, alternately
    row = data_curve.summary(records(parsed, gold))
    assert row["accuracy"] == 0.5 and row["parse_fail_rate"] == 0.5
    assert row["accuracy_low95"] > 0.2
    assert row["top_letter_share"] == 0.2  # of the parsed answers, each letter a fifth
    assert row["letters"]["-"] == 0.5
