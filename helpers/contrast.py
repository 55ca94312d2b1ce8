"""Two model variants on the same questions (04_dpo: SFT against DPO): what changed, in numbers and by question.

`contrast` is the table 04 shows: accuracy with the paired difference's 95% interval and McNemar's p, parse failures
by kind, loops, answer length, identical answers and the letter distribution. `changes` sorts every question into
``fixed``, ``broken``, ``changed, both wrong`` or ``unchanged``, the CoT inspector's filters for a pair of variants.

    >>> paired_difference([True, False, False, True], [True, True, False, False])
    (0.0, -0.693, 0.693)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from helpers.answers import LETTERS
from helpers.metrics import mcnemar_exact, records_frame

FAILURE_KINDS = ("out_of_tokens", "dangling_anchor", "no_anchor")
CHANGES = ("fixed", "broken", "changed, both wrong", "unchanged")


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = 1.96) -> tuple[float, float, float]:
    """Accuracy of ``b`` minus that of ``a`` on the same questions, with its Wald 95% interval for paired data
    (the variance counts only the questions where the two disagree); rounded to 4 decimals, clipped to [-1, 1]."""
    n = len(a)
    if n == 0 or n != len(b):
        raise ValueError(f"need two answer lists of one non-zero length, got {len(a)} and {len(b)}")
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    diff = (b_only - a_only) / n
    se = math.sqrt(max(b_only + a_only - n * diff**2, 0.0)) / n
    return tuple(round(max(-1.0, min(1.0, v)), 4) for v in (diff, diff - z * se, diff + z * se))  # type: ignore[return-value]


def _paired(records: Iterable[dict] | pd.DataFrame, a: str, b: str, mode: str) -> pd.DataFrame:
    """One row per question both variants answered in ``mode``: columns suffixed ``_a`` / ``_b``."""
    df = records_frame(records)
    df = df[df["mode"] == mode]
    missing = {a, b} - set(df["variant"])
    if missing:
        raise ValueError(f"no {mode} records of {sorted(missing)}: evaluate them first (05_eval, or run_eval)")
    cols = ["id", "parsed", "correct", "new_tokens", "failure", "output", "gold"]
    left, right = df[df["variant"] == a][cols], df[df["variant"] == b][cols]
    return left.merge(right, on="id", how="inner", suffixes=("_a", "_b")).set_index("id")


def changes(records: Iterable[dict] | pd.DataFrame, a: str = "sft", b: str = "dpo", mode: str = "cot") -> pd.Series:
    """Per question id, what going from ``a`` to ``b`` did: one of `CHANGES` (``changed, both wrong``: another
    wrong letter, or a parse failure turned into a wrong letter or back)."""
    p = _paired(records, a, b, mode)
    ca, cb = p["correct_a"].astype(bool), p["correct_b"].astype(bool)
    letter_a, letter_b = p["parsed_a"].fillna("-"), p["parsed_b"].fillna("-")
    kind = pd.Series("unchanged", index=p.index)
    kind[~ca & cb] = "fixed"
    kind[ca & ~cb] = "broken"
    kind[~ca & ~cb & (letter_a != letter_b)] = "changed, both wrong"
    return kind


def contrast(
    records: Iterable[dict] | pd.DataFrame, a: str = "sft", b: str = "dpo", mode: str = "cot"
) -> pd.DataFrame:
    """The table of ``a`` against ``b`` on the questions both answered: a row per measure, a column per variant
    (the difference, interval and p sit in ``b``'s column)."""
    p = _paired(records, a, b, mode)
    ca, cb = p["correct_a"].astype(bool).tolist(), p["correct_b"].astype(bool).tolist()
    diff, low, high = paired_difference(ca, cb)
    test = mcnemar_exact(ca, cb)
    rows: list[tuple[str, object, object]] = [
        ("questions", len(p), len(p)),
        ("accuracy", round(sum(ca) / len(p), 4), round(sum(cb) / len(p), 4)),
        (f"{b} - {a} (95% interval)", "", f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]"),
        ("McNemar p (exact)", "", round(float(test["p_value"]), 4)),
        ("parse failures", int(p["parsed_a"].isna().sum()), int(p["parsed_b"].isna().sum())),
    ]
    for kind in FAILURE_KINDS:
        label = "  loops (ran out of tokens)" if kind == "out_of_tokens" else f"  {kind.replace('_', ' ')}"
        rows.append((label, int((p["failure_a"] == kind).sum()), int((p["failure_b"] == kind).sum())))
    rows += [
        ("mean new tokens", round(float(p["new_tokens_a"].mean()), 1), round(float(p["new_tokens_b"].mean()), 1)),
        ("median new tokens", float(p["new_tokens_a"].median()), float(p["new_tokens_b"].median())),
        ("word-for-word the same answer", "", round(float((p["output_a"] == p["output_b"]).mean()), 4)),
    ]
    for letter in (*LETTERS, "-"):
        share = [round(float((p[f"parsed_{s}"].fillna("-") == letter).mean()), 3) for s in ("a", "b")]
        rows.append((f"letter {letter}" if letter != "-" else "no letter", *share))
    rows.append(("gold letters (share)", "", ", ".join(f"{k} {v:.2f}" for k, v in _shares(p["gold_a"]).items())))
    return pd.DataFrame(rows, columns=["measure", a, b])


def _shares(values: pd.Series) -> dict[str, float]:
    counts = values.value_counts(normalize=True)
    return {str(k): float(counts.get(k, 0.0)) for k in LETTERS}
