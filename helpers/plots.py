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
from matplotlib.ticker import MaxNLocator, PercentFormatter

from helpers.answers import LETTERS
from helpers.metrics import variant_order

CHANCE = 1 / len(LETTERS)
LETTER_TARGET = 0.3  # the project's aim: no letter above 30% of a variant's CoT answers (gold letters are ~20% each)
FONT = 10  # points; figures are sized to show at 1:1 in a ~850 px notebook output (100 dpi), so this stays readable


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
        ax.bar_label(bars, labels=["" if np.isnan(a) else f"{a:.0%}" for a in acc], padding=2, fontsize=FONT - 1)
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label=f"chance ({CHANCE:.0%})")
    ax.set_xticks(x, variants, fontsize=FONT)
    top = np.nanmax([summary_df["ci_high"].max(), CHANCE])
    ax.set_ylim(0, min(1.0, np.ceil((top + 0.1) * 10) / 10))  # from 0, so bar heights compare; headroom for labels
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.tick_params(labelsize=FONT)
    ax.set_ylabel("accuracy (95% Wilson CI)", fontsize=FONT)
    ax.legend(loc="upper left", fontsize=FONT - 1, ncols=len(labels) + 1, title="mode", title_fontsize=FONT - 1)


def accuracy_chart(summary_df: pd.DataFrame, title: str = "CommonsenseQA validation accuracy") -> Figure:
    """Grouped bars: accuracy per variant (groups, pipeline order) and mode (bars), 95% Wilson CIs, chance line."""
    fig = Figure(figsize=(8.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    _draw_accuracy(ax, summary_df)
    ax.set_title(title, fontsize=FONT + 1)
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
    """Horizontal 100% bars, one per variant (pipeline order, top to bottom), so names stay horizontal."""
    # every variant in every panel (an empty row where one was not run in this mode): the panels share the y-axis
    sub = dist[dist["label"] == label].set_index("variant").reindex(variant_order(dist["variant"])).fillna(0.0)
    left = np.zeros(len(sub))
    y = np.arange(len(sub))
    for key, color in LETTER_COLORS.items():
        share = sub[key].to_numpy(dtype=float)
        name, room = (key, 0.07) if key != "none" else ("no letter", 0.15)
        bars = ax.barh(y, share, 0.7, left=left, color=color, label=name)
        ax.bar_label(bars, labels=[name if v >= room else "" for v in share], label_type="center", fontsize=FONT - 1)
        left += share
    ax.axvline(LETTER_TARGET, color="black", linestyle=":", linewidth=1.2, label=f"{LETTER_TARGET:.0%} target")
    ax.set_yticks(y, sub.index, fontsize=FONT)
    ax.set_ylim(len(sub) - 0.5, -0.5)  # first variant on top
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.tick_params(labelsize=FONT)
    ax.set_title(f"{label}: predicted letters", fontsize=FONT)


def _letter_legend(fig: Any, ax: Any) -> None:
    """One row under the panels: the letters, then the dotted target line."""
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda i: names[i].endswith("target"))
    names = [f"target: no letter above {LETTER_TARGET:.0%}" if n.endswith("target") else n for n in names]
    fig.legend(
        [handles[i] for i in order],
        [names[i] for i in order],
        loc="outside lower center",
        ncols=len(names),
        fontsize=FONT - 1,
        frameon=False,
        columnspacing=1.2,
        handlelength=1.5,
    )


def _letter_grid(fig: Figure, labels: list[str]) -> list[Any]:
    ncols = len(labels) if len(labels) <= 3 else 2
    nrows = -(-len(labels) // ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True, gridspec_kw={"wspace": 0.08}).ravel()
    for ax in axes[len(labels) :]:
        ax.set_visible(False)
    return list(axes[: len(labels)])


def letter_chart(dist: pd.DataFrame) -> Figure:
    """Shares of predicted letters per variant (pipeline order, top to bottom), one panel per mode
    (`letter_distribution`).

    The dotted line marks 30%, the project's target: a letter above it is a position habit, not knowledge (gold letters
    are ~20% each).
    """
    labels = list(dict.fromkeys(dist["label"]))
    if not labels:
        raise ValueError("no records to plot: dist comes from helpers.metrics.letter_distribution(records)")
    n_variants = dist["variant"].nunique()
    rows = -(-len(labels) // (len(labels) if len(labels) <= 3 else 2))
    fig = Figure(figsize=(8.5, 1.0 + rows * (0.8 + 0.35 * n_variants)), layout="constrained")
    axes = _letter_grid(fig, labels)
    for ax, label in zip(axes, labels):
        _draw_letters(ax, dist, label)
    _letter_legend(fig, axes[0])
    return fig


def results_chart(summary_df: pd.DataFrame, dist: pd.DataFrame, title: str = "CommonsenseQA validation") -> Figure:
    """Accuracy per variant and mode (top) above the predicted-letter distribution per variant, one panel per mode."""
    labels = list(dict.fromkeys(dist["label"]))
    if not labels:
        raise ValueError("no records to plot: dist comes from helpers.metrics.letter_distribution(records)")
    n_variants = dist["variant"].nunique()
    rows = -(-len(labels) // (len(labels) if len(labels) <= 3 else 2))
    letters_h = rows * (0.8 + 0.35 * n_variants)
    fig = Figure(figsize=(8.5, 3.4 + letters_h + 0.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.4, letters_h + 0.9])
    ax = top.add_subplot()
    _draw_accuracy(ax, summary_df)
    ax.set_title("accuracy per variant and mode", fontsize=FONT)
    axes = _letter_grid(bottom, labels)
    for a, label in zip(axes, labels):
        _draw_letters(a, dist, label)
    _letter_legend(bottom, axes[0])
    fig.suptitle(title, fontsize=FONT + 2)
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


def _mark_max_length(ax: Any, lens: np.ndarray, max_length: int) -> None:
    """``max_length`` as a line near the data; far beyond it, an arrow above the right edge (data keeps the axis)."""
    cut = (lens > max_length).mean()
    text = f"max_length {max_length} (cuts {cut:.1%})"
    hi = lens.max()
    if max_length <= hi + 0.25 * (hi - lens.min() + 1):
        ax.axvline(max_length, color="tab:orange", linewidth=2, label=text)
        return
    # far beyond the data: named above the panel's right edge instead of stretching the x-axis to reach it
    ax.set_title(f"{text} →", loc="right", color="tab:orange", fontsize=FONT, fontweight="bold")


def length_histograms(
    prompt_lens: Sequence[int], completion_lens: Sequence[int], max_length: int | None = None
) -> Figure:
    """Token-length histograms of prompts and completions (top) and their total, what ``max_length`` cuts (bottom),
    with the median and maximum marked and ``max_length`` on the total's panel (an arrow when it lies far right)."""
    total = np.asarray(prompt_lens) + np.asarray(completion_lens)
    fig = Figure(figsize=(8.5, 5.6), layout="constrained")
    axes = fig.subplot_mosaic([["prompt", "completion"], ["prompt + completion"] * 2])
    panels = (("prompt", prompt_lens), ("completion", completion_lens), ("prompt + completion", total))
    for name, lens in panels:
        ax, lens = axes[name], np.asarray(lens)
        if lens.size == 0:
            raise ValueError(f"no {name} lengths to plot")
        ax.hist(lens, bins=min(40, max(5, len(np.unique(lens)))), color="tab:blue", alpha=0.8)
        ax.axvline(np.median(lens), color="black", linestyle="--", linewidth=1, label=f"median {np.median(lens):.0f}")
        ax.axvline(lens.max(), color="tab:red", linestyle=":", linewidth=1.5, label=f"max {lens.max()}")
        if max_length is not None and name == "prompt + completion":
            _mark_max_length(ax, lens, max_length)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        ax.tick_params(labelsize=FONT)
        ax.set_xlabel(f"{name} tokens", fontsize=FONT)
        ax.set_ylabel("examples", fontsize=FONT)
        ax.legend(fontsize=FONT - 1)
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
