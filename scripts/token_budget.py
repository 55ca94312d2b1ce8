"""Where greedy CoT decoding spends its steps, read from published records: what stopping early could save.

    python scripts/token_budget.py assets/results --batches 32 256

Per variant's ``<variant>-cot.jsonl(.gz)``: the new tokens generated; the share of them in answers that ran out of
tokens (loops, ``failure == out_of_tokens``); how many answers go on after their ``Answer: X`` line (what a stop at
the answer line would cut); and, for the ``generate`` engine (`helpers.generation`: a batch decodes until its longest
answer ends), the decode slots a batch of B spends against the tokens it keeps, with prompts in the engine's
length-sorted order. Continuous batching refills a finished slot, so its slots are the tokens kept.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from helpers.generation import length_sorted_batches
from helpers.jsonl import read_jsonl

ANSWER_LINE = re.compile(r"Answer:\s*\(?[A-E]\)?[^\n]*")


def budget(records: list[dict], batches: list[int]) -> dict:
    """Token counts of one variant's greedy CoT records (see the module docstring)."""
    tokens = [int(r["new_tokens"]) for r in records]
    looped = sum(t for t, r in zip(tokens, records) if r.get("failure") == "out_of_tokens")
    after = sum(1 for r in records if (m := ANSWER_LINE.search(r["output"] or "")) and r["output"][m.end() :].strip())
    row = {
        "answers": len(records),
        "new_tokens": sum(tokens),
        "mean_new_tokens": round(sum(tokens) / len(tokens), 1),
        "out_of_tokens": sum(r.get("failure") == "out_of_tokens" for r in records),
        "share_of_tokens_in_loops": round(looped / sum(tokens), 3),
        "answers_with_text_after_the_answer_line": after,
    }
    lengths = [len(r["prompt"]) for r in records]
    for b in batches:
        slots = sum(len(idx) * max(tokens[i] for i in idx) for idx in length_sorted_batches(lengths, b))
        row[f"generate_slots_per_kept_token_b{b}"] = round(slots / sum(tokens), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="folder of <variant>-cot.jsonl(.gz) records")
    parser.add_argument("--variants", nargs="+", default=["base", "sft", "dpo"])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    for variant in args.variants:
        gz = args.results / f"{variant}-cot.jsonl.gz"
        path = gz if gz.is_file() else args.results / f"{variant}-cot.jsonl"
        row = budget(list(read_jsonl(path)), args.batches)
        print(variant, " ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
