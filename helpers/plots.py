"""Charts for the notebooks; each function returns a `matplotlib.figure.Figure`.

Figures are built without pyplot, so nothing global changes and a returned figure is shown once
in Jupyter (as the cell's value) and can be saved with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from helpers.answers import LETTERS
from helpers.metrics import variant_order

CHANCE = 1 / len(LETTERS)


def _draw_accuracy(ax: Any, summary_df: pd.DataFrame) -> None:
    needed = {"variant", "label", "accuracy", "ci_low", "ci_high"}
    if not needed <= set(summary_df.columns):
        raise ValueError(f"summary_df needs columns {sorted(needed)} (from helpers.metrics.summarize)")
    variants = variant_order(summary_df["variant"])
    labels = list(dict.fromkeys(summary_df["label"]))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(variants))
    for k, label in enumerate(labels):
        sub = summary_df[summary_df["label"] == label].set_index("variant").reindex(variants)
        acc = sub["accuracy"].to_numpy(dtype=float)
        err = np.vstack([acc - sub["ci_low"].to_numpy(dtype=float), sub["ci_high"].to_numpy(dtype=float) - acc])
        bars = ax.bar(x + (k - (len(labels) - 1) / 2) * width, acc, width, yerr=err, capsize=3, label=label)
        ax.bar_label(bars, labels=["" if np.isnan(a) else f"{a:.0%}" for a in acc], padding=2, fontsize=7)
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE:.0%})")
    ax.set_xticks(x, variants)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% Wilson CI)")
    ax.legend(loc="upper left", fontsize=7)


def accuracy_chart(summary_df: pd.DataFrame, title: str = "CommonsenseQA validation accuracy") -> Figure:
    """Grouped bars: accuracy per variant (groups, pipeline order) and mode (bars), 95% Wilson CIs, chance line."""
    variants, labels = summary_df.get("variant", ()), summary_df.get("label", ())
    fig = Figure(figsize=(1.6 + 0.7 * len(set(variants)) * max(1, len(set(labels))), 4), layout="constrained")
    ax = fig.add_subplot()
    _draw_accuracy(ax, summary_df)
    ax.set_title(title)
    return fig


LETTER_COLORS = {
    "A": "tab:blue",
    "B": "tab:orange",
    "C": "tab:green",
    "D": "tab:red",
    "E": "tab:purple",
    "none": "lightgrey",
}


def _draw_letters(ax: Any, dist: pd.DataFrame, label: str) -> None:
    sub = dist[dist["label"] == label].set_index("variant").reindex(variant_order(dist["variant"])).dropna(how="all")
    bottom = np.zeros(len(sub))
    for key, color in LETTER_COLORS.items():
        share = sub[key].to_numpy(dtype=float)
        bars = ax.bar(sub.index, share, 0.7, bottom=bottom, color=color, label=key)
        ax.bar_label(bars, labels=[key if v >= 0.08 else "" for v in share], label_type="center", fontsize=7)
        bottom += share
    ax.axhline(0.3, color="black", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{label}: predicted letters", fontsize=9)
    ax.tick_params(axis="x", labelsize=7, rotation=20)


def letter_chart(dist: pd.DataFrame) -> Figure:
    """Stacked shares of predicted letters per variant (pipeline order), one panel per mode (`letter_distribution`).

    The dotted line marks 30%: a letter above it is a position habit, not knowledge (gold letters are ~20% each).
    """
    labels = list(dict.fromkeys(dist["label"]))
    if not labels:
        raise ValueError("no records to plot: dist comes from helpers.metrics.letter_distribution(records)")
    fig = Figure(figsize=(1.2 + 2.6 * len(labels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(labels), squeeze=False, sharey=True)[0]
    for ax, label in zip(axes, labels):
        _draw_letters(ax, dist, label)
    axes[0].set_ylabel("share of answers")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def results_chart(summary_df: pd.DataFrame, dist: pd.DataFrame, title: str = "CommonsenseQA validation") -> Figure:
    """Accuracy per variant and mode (left) beside the predicted-letter distribution per variant and mode (right)."""
    labels = list(dict.fromkeys(dist["label"]))
    n_variants = len(set(summary_df["variant"]))
    fig = Figure(figsize=(2 + 0.6 * n_variants * len(labels) + 2.4 * len(labels), 3.8), layout="constrained")
    widths = [max(3.0, 0.6 * n_variants * len(labels))] + [2.4] * len(labels)
    axes = fig.subplots(1, 1 + len(labels), gridspec_kw={"width_ratios": widths})
    _draw_accuracy(axes[0], summary_df)
    axes[0].set_title("accuracy", fontsize=9)
    for ax, label in zip(axes[1:], labels):
        _draw_letters(ax, dist, label)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.suptitle(title)
    return fig


def loss_curve(log_history: Sequence[Mapping], keys: Sequence[str] = ("loss",), ncols: int = 3) -> Figure:
    """One panel per key of a trainer's ``state.log_history`` (dicts with "step"), against the step.

    Panels wrap after ``ncols`` per row (DPO logs loss and four reward curves).
    """
    ncols = max(1, min(ncols, len(keys)))
    nrows = -(-len(keys) // ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for ax, key in zip(axes, keys):
        points = [(e["step"], e[key]) for e in log_history if "step" in e and e.get(key) is not None]
        if not points:
            raise ValueError(f"no {key!r} values in the log history: did training log any step (logging_steps)?")
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    return fig


def length_histograms(prompt_lens: Sequence[int], completion_lens: Sequence[int], max_length: int | None = None) -> Figure:
    """Token-length histograms of prompts, completions and their total (what ``max_length`` cuts), with the
    median and maximum marked, and ``max_length`` on the total's panel."""
    total = np.asarray(prompt_lens) + np.asarray(completion_lens)
    fig = Figure(figsize=(12, 3.2), layout="constrained")
    panels = (("prompt", prompt_lens), ("completion", completion_lens), ("prompt + completion", total))
    for ax, (name, lens) in zip(fig.subplots(1, 3), panels):
        lens = np.asarray(lens)
        if lens.size == 0:
            raise ValueError(f"no {name} lengths to plot")
        ax.hist(lens, bins=min(40, max(5, len(np.unique(lens)))), color="tab:blue", alpha=0.8)
        ax.axvline(np.median(lens), color="black", linestyle="--", linewidth=1, label=f"median {np.median(lens):.0f}")
        ax.axvline(lens.max(), color="tab:red", linestyle=":", linewidth=1, label=f"max {lens.max()}")
        if max_length is not None and name == "prompt + completion":
            cut = (lens > max_length).mean()
            ax.axvline(max_length, color="tab:orange", linewidth=2, label=f"max_length {max_length} (cuts {cut:.1%})")
        ax.set_xlabel(f"{name} tokens")
        ax.set_ylabel("examples")
        ax.legend(fontsize=8)
    return fig


def pair_length_histogram(lengths: Mapping[str, Sequence[int]], max_length: int | None = None) -> Figure:
    """Preference pairs' token lengths: prompts, then chosen vs rejected overlaid; ``max_length`` marked.

    ``lengths`` is `helpers.pairs.pair_lengths` output: ``{"prompt": [...], "chosen": [...], "rejected": [...]}``.
    """
    missing = [k for k in ("prompt", "chosen", "rejected") if not len(lengths.get(k, ()))]
    if missing:
        raise ValueError(
            f"no {missing} lengths to plot: pass helpers.pairs.pair_lengths(tok, pairs) of a non-empty list"
        )
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    prompt = np.asarray(lengths["prompt"])
    left.hist(prompt, bins=min(40, max(5, len(np.unique(prompt)))), color="tab:grey", alpha=0.8)
    left.axvline(
        np.median(prompt), color="black", linestyle="--", linewidth=1, label=f"median {np.median(prompt):.0f}"
    )
    left.set_xlabel("prompt tokens")
    left.set_ylabel("pairs")
    sides = {side: np.asarray(lengths[side]) for side in ("chosen", "rejected")}
    bins = np.histogram_bin_edges(np.concatenate(list(sides.values())), bins=min(40, max(5, len(prompt))))
    for (side, lens), color, style in zip(sides.items(), ("tab:green", "tab:red"), ("stepfilled", "step")):
        right.hist(
            lens,
            bins=bins,
            color=color,
            alpha=0.45 if style == "stepfilled" else 1.0,
            histtype=style,
            linewidth=1.5,
            label=f"{side} (median {np.median(lens):.0f})",
        )
    right.set_xlabel("completion tokens")
    if max_length is not None:
        longest = prompt + np.maximum(sides["chosen"], sides["rejected"])
        left.set_title(f"prompt + longer side: max {longest.max()} of max_length {max_length}", fontsize=9)
    for ax in (left, right):
        ax.legend(fontsize=8)
    return fig


def answer_distribution(letters_by_split: Mapping[str, Sequence[str | None]]) -> Figure:
    """Share of each answer letter per split (gold answers, or a model's parsed answers)."""
    counts = {
        split: Counter(v if v in LETTERS else "none" for v in letters) for split, letters in letters_by_split.items()
    }
    labels = list(LETTERS) + (["none"] if any(c["none"] for c in counts.values()) else [])
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(counts))
    x = np.arange(len(labels))
    for k, (split, c) in enumerate(counts.items()):
        total = sum(c.values()) or 1
        ax.bar(
            x + (k - (len(counts) - 1) / 2) * width,
            [c[lab] / total for lab in labels],
            width,
            label=f"{split} (n={sum(c.values())})",
        )
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, labels)
    ax.set_ylabel("share")
    ax.set_title("answer letters")
    ax.legend(fontsize=8)
    return fig
