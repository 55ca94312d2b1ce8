"""Recompute the published results table, comparisons and chart from per-question records.

    python scripts/publish_results.py assets/results

Reads every ``*.jsonl.gz`` record file in the folder (the fields of helpers.evaluation), writes
``results.csv`` and ``comparisons.csv`` beside them and ``assets/accuracy.png``, and prints the
tables as Markdown for the README. The comparisons are the stage-to-stage ones: base -> SFT,
SFT -> each DPO, and between the two DPO strategies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers import metrics, plots

STAGE_ORDER = ["base", "sft", "dpo-offline", "dpo-on-policy"]
PAIRS = [("base", "sft"), ("sft", "dpo-offline"), ("sft", "dpo-on-policy"), ("dpo-offline", "dpo-on-policy"),
         ("base", "dpo-on-policy")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("assets/results"))
    parser.add_argument("--chart", type=Path, default=Path("assets/accuracy.png"))
    args = parser.parse_args()
    order = {m: i for i, m in enumerate(STAGE_ORDER)}
    files = sorted(args.folder.glob("*.jsonl.gz"), key=lambda f: (order.get(f.name.rsplit("-", 1)[0], 99), f.name))
    records = metrics.load_records(files)
    summary = metrics.summarize(records)
    present = set(records["model"])
    comparisons = metrics.paired_comparisons(records, pairs=[p for p in PAIRS if set(p) <= present])
    summary.to_csv(args.folder / "results.csv", index=False)
    comparisons.to_csv(args.folder / "comparisons.csv", index=False)
    plots.accuracy_chart(summary, title="CommonsenseQA validation (1,221), SmolLM2-135M-Instruct").savefig(
        args.chart, dpi=120, bbox_inches="tight")
    table = summary.assign(
        accuracy=lambda d: (100 * d.accuracy).round(1),
        ci=lambda d: [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in zip(d.ci_low, d.ci_high)],
        parse_fail=lambda d: (100 * d.parse_fail_rate).round(1),
        mean_tokens=lambda d: d.mean_new_tokens.round(1),
    )[["model", "mode", "n", "accuracy", "ci", "parse_fail", "mean_tokens"]]
    print(table.rename(columns={"accuracy": "accuracy %", "ci": "95% CI", "parse_fail": "parse failures %",
                                "mean_tokens": "mean CoT tokens"}).to_markdown(index=False))
    print()
    comp = comparisons.assign(
        acc_a=lambda d: (100 * d.acc_a).round(1), acc_b=lambda d: (100 * d.acc_b).round(1),
        delta=lambda d: (100 * d.delta).round(1), p_value=lambda d: d.p_value.map(lambda p: f"{p:.2g}"))
    print(comp.rename(columns={"acc_a": "acc A %", "acc_b": "acc B %", "delta": "Δ points",
                               "a_only": "only A right", "b_only": "only B right", "p_value": "McNemar p"}
                      ).to_markdown(index=False))


if __name__ == "__main__":
    main()
