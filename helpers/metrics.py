"""Statistics of per-question records: accuracy with Wilson intervals, parse failures, predicted letters, paired tests.

A record (`helpers.evaluation.RECORD_FIELDS`) is a dict with ``id, variant, mode, prompt, output, parsed, gold,
correct, new_tokens, failure, detail``. Records written before the ``model`` -> ``variant`` rename are read too;
records without ``failure`` get it computed (`fill_failures`). Variants are always listed in pipeline order
(`variant_order`: base, SFT, DPO ...), modes in the registry's order (`helpers.eval_modes`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from helpers.answers import LETTERS, anchor_lines  # the one parser's anchor, so "dangling" means what it reads
from helpers.eval_modes import MODE_NAMES, MODES, mode_label

FAILURES = ("out_of_tokens", "dangling_anchor", "no_anchor")
FILTERS = ("all", "fixed by SFT", "broken by DPO", "all variants wrong", "parse failures")
DPO_FILTERS = ("all", "fixed by DPO", "broken by DPO", "changed, both wrong")  # 04_dpo: SFT against DPO
_REQUIRED = ("id", "variant", "mode", "parsed", "correct", "new_tokens")


# ---------------------------------------------------------------- per-record logic
def has_anchor(text: str | None) -> bool:
    """Whether a generation has a line the answer parser reads as an ``Answer:`` anchor."""
    return bool(anchor_lines(text)[1])


def classify_failure(
    output: str | None, parsed: str | None, new_tokens: int, max_new_tokens: int | None
) -> str | None:
    """Why a CoT answer has no letter, in this order: ``out_of_tokens`` (``new_tokens`` reached the limit, no eos),
    ``dangling_anchor`` (an ``Answer:`` line without one valid letter), ``no_anchor``; None when it parsed.

    >>> classify_failure("Because.\\nAnswer:", None, 9, 192)
    'dangling_anchor'
    """
    if parsed in LETTERS:
        return None
    if max_new_tokens is not None and new_tokens >= max_new_tokens:
        return "out_of_tokens"
    return "dangling_anchor" if has_anchor(output) else "no_anchor"


def majority_vote(letters: Sequence[str | None]) -> str | None:
    """The most frequent letter (None and invalid ones ignored); a tie goes to the tied letter sampled first.

    Ties are not broken alphabetically, which would favour "A", the letter small models over-predict.
    >>> majority_vote(["C", None, "A", "A", "C"])
    'C'
    """
    counts = Counter(x for x in letters if x in LETTERS)
    if not counts:
        return None
    top = max(counts.values())
    return next(x for x in letters if x in LETTERS and counts[x] == top)


def variant_order(variants: Iterable[str]) -> list[str]:
    """Distinct variants in pipeline order: base, then sft*, then dpo*, then others; first-seen order within each."""
    return sorted(dict.fromkeys(variants), key=_rank)  # sorted is stable


def _rank(variant: str) -> int:
    v = str(variant)
    return 0 if v == "base" else 1 if v.startswith("sft") else 2 if v.startswith("dpo") else 3


def _mode_order(modes: Iterable[str]) -> list[str]:
    seen = list(dict.fromkeys(modes))
    return [m for m in MODE_NAMES if m in seen] + [m for m in seen if m not in MODE_NAMES]


# ---------------------------------------------------------------- records as frames
def records_frame(records: Iterable[dict] | pd.DataFrame, max_new_tokens: int | None = None) -> pd.DataFrame:
    """Records as a DataFrame with every column the tables read (``failure`` filled in by `fill_failures`)."""
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if "model" in df.columns:  # records written before the model -> variant rename
        df["variant"] = df["variant"].fillna(df["model"]) if "variant" in df.columns else df["model"]
        df = df.drop(columns="model")
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"records lack columns: {missing}")
    for col in ("gold", "output", "failure", "detail"):
        if col not in df.columns:
            df[col] = None
    df["correct"] = df["correct"].astype(bool)
    return fill_failures(df, max_new_tokens)


def fill_failures(df: pd.DataFrame, max_new_tokens: int | None = None) -> pd.DataFrame:
    """``failure`` of CoT records that lack it (older records), by `classify_failure`.

    Without ``max_new_tokens`` the limit is taken as the largest ``new_tokens`` of the variant's records in that
    mode (a run that hit its limit shows it there).
    """
    cot = (df["mode"] == "cot") & df["failure"].isna() & ~df["parsed"].isin(LETTERS)
    if cot.any():
        df = df.copy()
        limits = df[df["mode"] == "cot"].groupby("variant")["new_tokens"].max()
        df.loc[cot, "failure"] = [
            classify_failure(o, None, int(t), max_new_tokens if max_new_tokens is not None else int(limits[v]))
            for o, t, v in zip(df.loc[cot, "output"], df.loc[cot, "new_tokens"], df.loc[cot, "variant"])
        ]
    return df


def scored(records: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """One row per record and metric of its mode (`EvalMode.metrics`): ``label``, ``pick``, ``correct``.

    The headline metric's pick is the record's ``parsed``; another metric's is the argmax of ``detail[metric]``.
    """
    df = records_frame(records)
    parts = []
    for mode in _mode_order(df["mode"]):
        sub = df[df["mode"] == mode]
        for i, metric in enumerate(MODES[mode].metrics if mode in MODES else ("acc",)):
            part = sub.assign(metric=metric, label=mode_label(mode, metric))
            if i > 0:
                part["parsed"] = [LETTERS[int(np.argmax(d[metric]))] for d in part["detail"]]
                part["correct"] = part["parsed"] == part["gold"]
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    return out.rename(columns={"parsed": "pick"})


# ---------------------------------------------------------------- tables
def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for k successes out of n; (nan, nan) when n == 0."""
    if n == 0:
        return (math.nan, math.nan)
    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    return (float(low), float(high))


def letter_counts(picks: Iterable[Any]) -> dict[str, int]:
    """Counts of A ... E and "none" (no letter) among predicted letters."""
    c = Counter(p if p in LETTERS else "none" for p in picks)
    return {k: c[k] for k in (*LETTERS, "none")}


SUMMARY_COLUMNS = [
    "variant",
    "mode",
    "metric",
    "label",
    "n",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "parse_fail_rate",
    *FAILURES,
    "top_letter",
    "top_share",
    "letters",
    "mean_new_tokens",
]


def summarize(records: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, mode, metric): accuracy with 95% Wilson CI, parse failures by kind, predicted letters.

    ``top_letter``/``top_share``: the most frequent predicted letter and its share (1.0 = a constant predictor);
    ``letters``: counts of A ... E (and of no letter, when any). Variants in pipeline order.
    """
    df = scored(records)
    rows = []
    for variant in variant_order(df["variant"]):
        sub_v = df[df["variant"] == variant]
        for label in dict.fromkeys(sub_v["label"]):
            sub = sub_v[sub_v["label"] == label]
            n, k = len(sub), int(sub["correct"].sum())
            low, high = wilson_interval(k, n)
            counts = letter_counts(sub["pick"])
            top = max(LETTERS, key=lambda x: counts[x])
            fails = Counter(sub["failure"].dropna())
            rows.append(
                {
                    "variant": variant,
                    "mode": sub["mode"].iat[0],
                    "metric": sub["metric"].iat[0],
                    "label": label,
                    "n": n,
                    "correct": k,
                    "accuracy": k / n,
                    "ci_low": low,
                    "ci_high": high,
                    "parse_fail_rate": counts["none"] / n,
                    **{f: fails[f] for f in FAILURES},
                    "top_letter": top,
                    "top_share": counts[top] / n,
                    "letters": " ".join(f"{x}:{counts[x]}" for x in counts if x in LETTERS or counts[x]),
                    "mean_new_tokens": float(sub["new_tokens"].mean()),
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def letter_distribution(records: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """Share of each predicted letter (and of no letter) per variant and mode label, variants in pipeline order."""
    df = scored(records)
    rows = [
        {"variant": v, "label": lab, **{k: c / len(sub) for k, c in letter_counts(sub["pick"]).items()}}
        for v in variant_order(df["variant"])
        for lab, sub in df[df["variant"] == v].groupby("label", sort=False)
    ]
    return pd.DataFrame(rows, columns=["variant", "label", *LETTERS, "none"])


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict:
    """Exact (binomial) McNemar test on paired correctness of variants A and B."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired sequences differ in length: {a.shape} vs {b.shape}")
    both_right, a_only = int((a & b).sum()), int((a & ~b).sum())
    b_only, both_wrong = int((~a & b).sum()), int((~a & ~b).sum())
    table = np.array([[both_right, a_only], [b_only, both_wrong]])
    p_value = float(mcnemar(table, exact=True).pvalue)
    return {
        "n": int(a.size),
        "both_right": both_right,
        "a_only": a_only,
        "b_only": b_only,
        "both_wrong": both_wrong,
        "p_value": p_value,
    }


def default_pairs(variants: Iterable[str]) -> list[tuple[str, str]]:
    """(earlier, later) pairs in pipeline order: each variant against its parent step's (last) variant first, then
    siblings of one step, then first against last. base, sft, dpo-offline, dpo-on-policy gives (base, sft),
    (sft, dpo-offline), (sft, dpo-on-policy), (dpo-offline, dpo-on-policy), (base, dpo-on-policy)."""
    order = variant_order(variants)
    pairs = []
    for i, v in enumerate(order):
        earlier = [u for u in order[:i] if _rank(u) < _rank(v)]
        if earlier:
            top = max(map(_rank, earlier))
            pairs.append(([u for u in earlier if _rank(u) == top][-1], v))
    pairs += [(a, b) for a, b in zip(order, order[1:]) if _rank(a) == _rank(b)]
    if len(order) > 2 and (order[0], order[-1]) not in pairs:
        pairs.append((order[0], order[-1]))
    return pairs


COMPARISON_COLUMNS = [
    "mode",
    "metric",
    "label",
    "comparison",
    "variant_a",
    "variant_b",
    "n",
    "acc_a",
    "acc_b",
    "delta",
    "a_only",
    "b_only",
    "p_value",
]


def paired_comparisons(
    records: Iterable[dict] | pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None, mode: str | None = None
) -> pd.DataFrame:
    """Exact McNemar test per mode, metric and (earlier, later) variant pair, aligned on question id.

    Only ids answered by both count. ``comparison`` reads "later vs earlier" (e.g. "sft vs base"); ``delta`` is
    ``acc_b - acc_a`` (later minus earlier). Default pairs: `default_pairs`.
    """
    df = scored(records)
    dup = df.duplicated(["variant", "label", "id"], keep=False)
    if dup.any():
        bad = df.loc[dup, ["variant", "mode", "id"]].drop_duplicates().head(5).to_dict("records")
        raise ValueError(f"duplicated question ids: {bad}")
    if pairs is not None:
        unknown = {v for p in pairs for v in p} - set(df["variant"])
        if unknown:
            raise ValueError(f"unknown variants in pairs: {sorted(unknown)}")
    rows = []
    for label in dict.fromkeys(df["label"]):
        sub = df[df["label"] == label]
        if mode is not None and sub["mode"].iat[0] != mode:
            continue
        present = variant_order(sub["variant"])
        for va, vb in pairs if pairs is not None else default_pairs(present):
            if va not in present or vb not in present:
                continue
            a = sub[sub["variant"] == va].set_index("id")["correct"]
            b = sub[sub["variant"] == vb].set_index("id")["correct"]
            joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
            res = mcnemar_exact(joined["a"].to_numpy(), joined["b"].to_numpy())
            acc_a = float(joined["a"].mean()) if res["n"] else math.nan
            acc_b = float(joined["b"].mean()) if res["n"] else math.nan
            rows.append(
                {
                    "mode": sub["mode"].iat[0],
                    "metric": sub["metric"].iat[0],
                    "label": label,
                    "comparison": f"{vb} vs {va}",
                    "variant_a": va,
                    "variant_b": vb,
                    "n": res["n"],
                    "acc_a": acc_a,
                    "acc_b": acc_b,
                    "delta": acc_b - acc_a,
                    "a_only": res["a_only"],
                    "b_only": res["b_only"],
                    "p_value": res["p_value"],
                }
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


# ---------------------------------------------------------------- the CoT inspector's filters
def _is_true(value: Any) -> bool:
    return bool(value) and not pd.isna(value)


def inspector_filter(records_df: pd.DataFrame, name: str) -> list[str]:
    """Question ids (CoT mode only) that match a filter of `FILTERS`, in first-seen order.

    Variants: "base", "sft" and every variant whose name starts with "dpo". "broken by DPO" means the
    SFT variant was right and at least one DPO variant is wrong; "fixed by DPO", SFT wrong and a DPO variant right;
    "changed, both wrong", every variant wrong and a DPO variant's letter not SFT's (`DPO_FILTERS`; these need both
    SFT's and a DPO variant's record of the question). Filters needing a variant absent from the records match nothing.
    """
    if name not in FILTERS + DPO_FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {FILTERS + DPO_FILTERS[1:]}")
    df = records_df.rename(columns={"model": "variant"}) if "variant" not in records_df else records_df
    cot = df[df["mode"] == "cot"]
    if cot.empty:
        return []
    correct = cot.pivot_table(index="id", columns="variant", values="correct", aggfunc="first", sort=False)
    correct = correct.reindex(list(dict.fromkeys(cot["id"])))
    answered = correct.notna()
    correct = correct.map(_is_true)
    dpo = [v for v in correct.columns if str(v).startswith("dpo")]
    if name == "all":
        keep = pd.Series(True, index=correct.index)
    elif name == "fixed by SFT":
        if not {"base", "sft"} <= set(correct.columns):
            return []
        keep = ~correct["base"] & correct["sft"]
    elif name in ("broken by DPO", "fixed by DPO", "changed, both wrong"):
        if "sft" not in correct.columns or not dpo:
            return []
        right = correct[dpo] & answered[dpo]  # a DPO variant without a record of the question counts for nothing
        wrong = ~correct[dpo] & answered[dpo]
        sft_right, sft_wrong = correct["sft"] & answered["sft"], ~correct["sft"] & answered["sft"]
        if name == "broken by DPO":
            keep = sft_right & wrong.any(axis=1)
        elif name == "fixed by DPO":
            keep = sft_wrong & right.any(axis=1)
        else:  # SFT and every DPO variant that answered wrong, one of them with another letter (or none) than SFT's
            letters = cot.pivot_table(index="id", columns="variant", values="parsed", aggfunc="first", sort=False)
            letters = letters.reindex(correct.index).fillna("-")
            moved = pd.concat([(letters[v] != letters["sft"]) & answered[v] for v in dpo], axis=1).any(axis=1)
            keep = sft_wrong & ~right.any(axis=1) & moved
    elif name == "all variants wrong":
        keep = ~correct.any(axis=1)
    else:  # parse failures
        failed = cot.assign(failed=cot["parsed"].map(lambda p: p is None or pd.isna(p) or p == ""))
        ids = set(failed.loc[failed["failed"], "id"])
        keep = pd.Series([i in ids for i in correct.index], index=correct.index)
    return [str(i) for i in correct.index[keep.to_numpy(dtype=bool)]]


def load_records(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate JSONL files (``.gz`` suffix -> gzip) into one DataFrame."""
    from helpers.jsonl import read_jsonl

    return pd.DataFrame([row for path in paths for row in read_jsonl(path, repair=False)])


def records_files(folder: str | Path) -> list[Path]:
    """The record files of a folder (``{variant}-{mode}.jsonl[.gz]``, no rank files), variants in pipeline order."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for p in Path(folder).glob("*.jsonl*"):
        m = re.fullmatch(r"(.+?)(\.rank\d+)?\.jsonl(\.gz)?", p.name)
        if m is None or m.group(2):
            continue
        mode = next((md for md in sorted(MODE_NAMES, key=len, reverse=True) if m.group(1).endswith("-" + md)), None)
        variant = m.group(1)[: -len(mode) - 1] if mode else m.group(1)
        found.setdefault(variant, []).append((MODE_NAMES.index(mode) if mode else len(MODE_NAMES), p))
    return [p for v in variant_order(found) for _, p in sorted(found[v])]


# ---------------------------------------------------------------- tables for people (display only)
def _letters_percent(letters: str, n: int) -> str:
    """``"A:125 B:107 ... none:512"`` (counts) -> ``"A 10 · B 9 · ... · none 42"`` (percent of ``n``)."""
    parts = (p.split(":") for p in str(letters).split())
    return " · ".join(f"{key} {100 * int(count) / max(n, 1):.0f}" for key, count in parts)


def compact_table(df: pd.DataFrame, numeric: Sequence[str] = (), caption: str | None = None) -> Any:
    """A compact pandas Styler for a notebook: no index, cells unwrapped (so "dpo-on-policy" stays one word; headers
    may wrap), text left, the ``numeric`` columns right, an optional caption below."""
    text = [c for c in df.columns if c not in numeric]
    pad = ("padding", "2px 8px")
    styler = df.style.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return (
        styler.set_table_styles(
            [
                {"selector": "th", "props": [pad, ("text-align", "left"), ("vertical-align", "bottom")]},
                {"selector": "td", "props": [pad, ("white-space", "nowrap")]},
                {"selector": "caption", "props": [("caption-side", "bottom"), ("text-align", "left"), pad]},
            ]
        )
        .set_table_styles(
            {c: [{"selector": "th", "props": [("text-align", "right")]}] for c in numeric}, overwrite=False
        )
        .set_properties(subset=text, **{"text-align": "left"})
        .set_properties(subset=list(numeric), **{"text-align": "right"})
    )


def _generates(mode: str) -> bool:
    return MODES[mode].generates if mode in MODES else True


def summary_view(summary: pd.DataFrame) -> Any:
    """`summarize`'s table for reading in a notebook (~850 px): percentages to one decimal, the CI as one "lo–hi"
    column, predicted letters as percentages in one string; parse failures and CoT tokens only where a mode
    generates. Returns a pandas Styler (``.data`` is the plain frame)."""
    gen = summary["mode"].map(_generates)
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    n = summary["n"]
    df = pd.DataFrame(
        {
            "variant": summary["variant"],
            "mode": summary["label"],
            "n": n,
            "accuracy %": summary["accuracy"].map(pct),
            "95% CI": [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in zip(summary["ci_low"], summary["ci_high"])],
            "no letter %": [pct(r) if g else "–" for r, g in zip(summary["parse_fail_rate"], gen)],
            "predicted letters %": [_letters_percent(s, k) for s, k in zip(summary["letters"], n)],
            "CoT tokens": [f"{t:.0f}" if g else "–" for t, g in zip(summary["mean_new_tokens"], gen)],
        }
    )
    caption = "mean CoT tokens per answer; no letter: the CoT had no readable Answer line"
    if n.nunique() == 1:
        df, caption = df.drop(columns="n"), f"{int(n.iat[0]):,} questions per row; {caption}"
    return compact_table(df, [c for c in ("n", "accuracy %", "no letter %", "CoT tokens") if c in df], caption)


def failures_view(summary: pd.DataFrame) -> Any:
    """The CoT rows of `summarize`'s table: parse failures by kind (counts) beside the no-letter and top-letter
    shares in percent. Returns a pandas Styler (``.data`` is the plain frame)."""
    cot = summary[summary["mode"].map(_generates)]
    df = pd.DataFrame(
        {
            "variant": cot["variant"],
            "mode": cot["label"],
            "no letter %": cot["parse_fail_rate"].map(lambda x: f"{100 * x:.1f}"),
            **{f.replace("_", " "): cot[f] for f in FAILURES},
            "top letter": [f"{t} ({100 * s:.0f}%)" for t, s in zip(cot["top_letter"], cot["top_share"])],
        }
    ).reset_index(drop=True)
    numeric = ["no letter %", *(f.replace("_", " ") for f in FAILURES)]
    return compact_table(df, numeric, "counts of answers with no letter, by why; each has exactly one kind")
