"""Evaluation metrics for per-question MCQ records (base vs SFT vs DPO).

Each record is a dict with ``id, model, mode, prompt, output, parsed, gold,
correct, new_tokens``. The statistics come from statsmodels: Wilson intervals
for accuracy and the exact McNemar test for paired model comparisons.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

__all__ = ["wilson_interval", "summarize", "mcnemar_exact", "paired_comparisons", "load_records"]

_REQUIRED = ("id", "model", "mode", "parsed", "correct", "new_tokens")


def _frame(records: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"records lack columns: {missing}")
    df["correct"] = df["correct"].astype(bool)
    return df


def _ordered(values: pd.Series) -> list:
    """Unique values in order of first appearance."""
    return list(dict.fromkeys(values.tolist()))


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for k successes out of n; (nan, nan) when n == 0."""
    if n == 0:
        return (math.nan, math.nan)
    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    return (float(low), float(high))


def summarize(records: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """One row per (model, mode): accuracy with 95% Wilson CI, parse failures, mean new tokens."""
    df = _frame(records)
    rows = []
    for model in _ordered(df["model"]):
        sub_m = df[df["model"] == model]
        for mode in _ordered(sub_m["mode"]):
            sub = sub_m[sub_m["mode"] == mode]
            n, k = len(sub), int(sub["correct"].sum())
            low, high = wilson_interval(k, n)
            fail = sub["parsed"].isna() | (sub["parsed"].astype(str).str.strip() == "")
            rows.append({
                "model": model, "mode": mode, "n": n, "correct": k,
                "accuracy": k / n, "ci_low": low, "ci_high": high,
                "parse_fail_rate": float(fail.mean()),
                "mean_new_tokens": float(sub["new_tokens"].mean()),
            })
    cols = ["model", "mode", "n", "correct", "accuracy", "ci_low", "ci_high",
            "parse_fail_rate", "mean_new_tokens"]
    return pd.DataFrame(rows, columns=cols)


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict:
    """Exact (binomial) McNemar test on paired correctness of models A and B."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired sequences differ in length: {a.shape} vs {b.shape}")
    both_right, a_only = int((a & b).sum()), int((a & ~b).sum())
    b_only, both_wrong = int((~a & b).sum()), int((~a & ~b).sum())
    table = np.array([[both_right, a_only], [b_only, both_wrong]])
    p_value = float(mcnemar(table, exact=True).pvalue)
    return {"n": int(a.size), "both_right": both_right, "a_only": a_only,
            "b_only": b_only, "both_wrong": both_wrong, "p_value": p_value}


def _default_pairs(models: list) -> list[tuple[str, str]]:
    pairs = list(zip(models, models[1:]))
    if len(models) > 2:
        pairs.append((models[0], models[-1]))
    return pairs


def paired_comparisons(records: Iterable[dict] | pd.DataFrame,
                       pairs: Sequence[tuple[str, str]] | None = None,
                       mode: str | None = None) -> pd.DataFrame:
    """Paired accuracy comparison per mode and model pair, aligned on question id.

    Only ids answered by both models count. Default pairs are consecutive models in
    first-appearance order plus (first, last). ``delta`` is ``acc_b - acc_a``.
    """
    df = _frame(records)
    dup = df.duplicated(["model", "mode", "id"], keep=False)
    if dup.any():
        bad = df.loc[dup, ["model", "mode", "id"]].drop_duplicates().head(5).to_dict("records")
        raise ValueError(f"duplicated question ids: {bad}")
    if pairs is not None:
        unknown = {m for p in pairs for m in p} - set(df["model"])
        if unknown:
            raise ValueError(f"unknown models in pairs: {sorted(unknown)}")
    modes = [mode] if mode is not None else _ordered(df["mode"])
    model_order = _ordered(df["model"])
    rows = []
    for md in modes:
        sub = df[df["mode"] == md]
        present = [m for m in model_order if m in set(sub["model"])]
        for ma, mb in (pairs if pairs is not None else _default_pairs(present)):
            if ma not in present or mb not in present:
                continue
            a = sub[sub["model"] == ma].set_index("id")["correct"]
            b = sub[sub["model"] == mb].set_index("id")["correct"]
            joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
            res = mcnemar_exact(joined["a"].to_numpy(), joined["b"].to_numpy())
            n = res["n"]
            acc_a = float(joined["a"].mean()) if n else math.nan
            acc_b = float(joined["b"].mean()) if n else math.nan
            rows.append({"mode": md, "model_a": ma, "model_b": mb, "n": n,
                         "acc_a": acc_a, "acc_b": acc_b, "delta": acc_b - acc_a,
                         "a_only": res["a_only"], "b_only": res["b_only"],
                         "p_value": res["p_value"]})
    cols = ["mode", "model_a", "model_b", "n", "acc_a", "acc_b", "delta",
            "a_only", "b_only", "p_value"]
    return pd.DataFrame(rows, columns=cols)


def load_records(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate JSONL files (``.gz`` suffix → gzip) into one DataFrame."""
    rows: list[dict] = []
    for path in map(Path, paths):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- pipeline order and the CoT inspector's filters
FILTERS = ("all", "fixed by SFT", "broken by DPO", "all variants wrong", "parse failures")


def pipeline_order(variants: Iterable[str]) -> list[str]:
    """Variants in the pipeline's order: base, sft, then the DPO variants, then anything else (each by name).

    >>> pipeline_order(["dpo-on-policy", "sft", "base", "dpo-offline"])
    ['base', 'sft', 'dpo-offline', 'dpo-on-policy']
    """
    rank = {"base": 0, "sft": 1}
    return sorted(dict.fromkeys(variants), key=lambda v: (rank.get(v, 2 if str(v).startswith("dpo") else 3), str(v)))


def _is_true(value: object) -> bool:
    return bool(value) and not pd.isna(value)


def inspector_filter(records_df: pd.DataFrame, name: str) -> list[str]:
    """Question ids (CoT mode only) that match a filter of `FILTERS`, in first-seen order.

    "broken by DPO" means the SFT variant was right and at least one DPO variant is wrong; filters needing a
    variant absent from the records match nothing.
    """
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {FILTERS}")
    cot = records_df[records_df["mode"] == "cot"]
    if cot.empty:
        return []
    correct = cot.pivot_table(index="id", columns="variant", values="correct", aggfunc="first", sort=False)
    correct = correct.map(_is_true).reindex(list(dict.fromkeys(cot["id"])))
    dpo = [v for v in correct.columns if str(v).startswith("dpo")]
    if name == "all":
        keep = pd.Series(True, index=correct.index)
    elif name == "fixed by SFT":
        if not {"base", "sft"} <= set(correct.columns):
            return []
        keep = ~correct["base"] & correct["sft"]
    elif name == "broken by DPO":
        if "sft" not in correct.columns or not dpo:
            return []
        keep = correct["sft"] & ~correct[dpo].all(axis=1)
    elif name == "all variants wrong":
        keep = ~correct.any(axis=1)
    else:  # parse failures
        failed = cot.assign(failed=cot["parsed"].map(lambda p: p is None or pd.isna(p) or p == ""))
        ids = set(failed.loc[failed["failed"], "id"])
        keep = pd.Series([i in ids for i in correct.index], index=correct.index)
    return [str(i) for i in correct.index[keep.to_numpy(dtype=bool)]]
