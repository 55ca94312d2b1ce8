"""Recompute the published results table, comparisons and chart from per-question records.

    python scripts/publish_results.py assets/results --max-new-tokens 192

Reads every ``{variant}-{mode}.jsonl[.gz]`` record file in the folder (the fields of helpers.evaluation),
writes ``results.csv`` and ``comparisons.csv`` beside them and ``assets/accuracy.png`` (accuracy per variant and
mode beside the predicted-letter distribution), and prints the tables as Markdown for the README. Variants are in
pipeline order; the comparisons are `helpers.metrics.default_pairs`: base -> SFT, SFT -> each DPO variant, the DPO
variants against each other, first against last. ``--max-new-tokens`` is the CoT budget of the run, used to tell
"ran out of tokens" from other parse failures in records that do not carry their ``failure``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from helpers import metrics, plots


def markdown_tables(summary: pd.DataFrame, comparisons: pd.DataFrame) -> str:
    """The results and comparisons tables as Markdown (percentages, one decimal)."""
    table = summary.assign(
        accuracy=lambda d: (100 * d.accuracy).round(1),
        ci=lambda d: [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in zip(d.ci_low, d.ci_high)],
        fails=lambda d: [
            f"{100 * r:.1f} ({o}/{a}/{n})" if m.startswith("cot") else "–"
            for r, o, a, n, m in zip(d.parse_fail_rate, d.out_of_tokens, d.dangling_anchor, d.no_anchor, d["mode"])
        ],
        top=lambda d: [f"{t} {100 * s:.0f}%" for t, s in zip(d.top_letter, d.top_share)],
        mean_tokens=lambda d: d.mean_new_tokens.round(1),
    )[["variant", "label", "n", "accuracy", "ci", "fails", "top", "letters", "mean_tokens"]]
    comp = comparisons.assign(
        acc_a=lambda d: (100 * d.acc_a).round(1),
        acc_b=lambda d: (100 * d.acc_b).round(1),
        delta=lambda d: (100 * d.delta).round(1),
        p_value=lambda d: d.p_value.map(lambda p: f"{p:.2g}"),
    )[["label", "comparison", "n", "acc_a", "acc_b", "delta", "a_only", "b_only", "p_value"]]
    return "\n\n".join(
        [
            table.rename(
                columns={
                    "label": "mode",
                    "accuracy": "accuracy %",
                    "ci": "95% CI",
                    "fails": "parse failures % (out of tokens/dangling/no anchor)",
                    "top": "most frequent letter",
                    "letters": "predicted letters",
                    "mean_tokens": "mean CoT tokens",
                }
            ).to_markdown(index=False),
            comp.rename(
                columns={
                    "label": "mode",
                    "acc_a": "acc earlier %",
                    "acc_b": "acc later %",
                    "delta": "Δ points",
                    "a_only": "only earlier right",
                    "b_only": "only later right",
                    "p_value": "McNemar p",
                }
            ).to_markdown(index=False),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("assets/results"))
    parser.add_argument("--chart", type=Path, default=Path("assets/accuracy.png"))
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="the CoT runs' max_new_tokens (default: the largest new_tokens per variant)",
    )
    parser.add_argument("--title", default="CommonsenseQA validation (1,221), SmolLM2-135M-Instruct")
    args = parser.parse_args()
    files = metrics.records_files(args.folder)
    if not files:
        raise SystemExit(f"no {{variant}}-{{mode}}.jsonl[.gz] record files in {args.folder}")
    records = metrics.records_frame(metrics.load_records(files), args.max_new_tokens)
    summary, comparisons = metrics.summarize(records), metrics.paired_comparisons(records)
    summary.to_csv(args.folder / "results.csv", index=False)
    comparisons.to_csv(args.folder / "comparisons.csv", index=False)
    plots.results_chart(summary, metrics.letter_distribution(records), title=args.title).savefig(
        args.chart, dpi=120, bbox_inches="tight"
    )
    print(markdown_tables(summary, comparisons))


if __name__ == "__main__":
    main()
