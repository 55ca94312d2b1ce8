"""What each pair lever would put in the pair set, read from published k-sample records (no model, no GPU).

    python scripts/pair_mix.py assets/results --variant sft

A ``<variant>-cot@k.jsonl(.gz)`` record keeps, per question, the letter each of its k samples gave (None where the
sample has no answer line) and each sample's failure kind. That is all `helpers.pairs.on_policy_pairs` needs to know
how many pairs a question gives and whether a pair's rejected side is a failure (a loop or no answer line) or a wrong
letter. Per lever (`PairSettings` fields: ``rejected_first``, ``weight_unsure``, ``when_all_agree``) it prints the
pairs, the questions they come from, and the share of pairs whose rejected side is a failure. The records are
validation answers sampled at the cot@k temperature, not the train questions 02 samples: a proxy for the mix, not
the pair set itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers.jsonl import read_jsonl
from helpers.pairs import pair_count

LEVERS = {  # name -> (rejected_first, weight_unsure, when_all_agree)
    "default (wrong first)": ("wrong", False, "skip"),
    "failures first": ("failure", False, "skip"),
    "unsure-weighted": ("wrong", True, "skip"),
    "gold when all wrong": ("wrong", False, "gold"),
    "failures first + unsure + gold": ("failure", True, "gold"),
}


def mix(records: list[dict], limit: int, rejected_first: str, weight_unsure: bool, when_all_agree: str) -> dict:
    """Pair counts of one lever (the same arithmetic as `helpers.pairs.on_policy_pairs` and `build_pairs`)."""
    pairs = failure_rejected = questions = gold = 0
    for r in records:
        votes = r["detail"]["votes"]
        correct = sum(v == r["gold"] for v in votes)
        unparsed = sum(v is None for v in votes)
        wrong = len(votes) - correct - unparsed
        rejected = unparsed + wrong
        if correct and rejected:
            n = min(pair_count(limit, correct, len(votes), weight_unsure), max(correct, rejected))
            first = unparsed if rejected_first == "failure" else wrong
            # pair i takes rejected sample i mod r of the ordered list: failures are the first `first` (or the last)
            fails = sum(
                (i % rejected < first) if rejected_first == "failure" else (i % rejected >= first) for i in range(n)
            )
            pairs, failure_rejected, questions = pairs + n, failure_rejected + fails, questions + 1
        elif not correct and when_all_agree == "gold":
            pairs, gold, questions = pairs + 1, gold + 1, questions + 1
            failure_rejected += unparsed > 0  # gold_vs_sample_pair rejects a failure first
    return {
        "pairs": pairs,
        "questions": questions,
        "gold_pairs": gold,
        "failure_rejected_share": round(failure_rejected / max(pairs, 1), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--variant", default="sft")
    parser.add_argument("--pairs-per-question", type=int, default=4)
    args = parser.parse_args()
    path = next(
        p
        for p in (args.folder / f"{args.variant}-cot@k.jsonl.gz", args.folder / f"{args.variant}-cot@k.jsonl")
        if p.exists()
    )
    records = list(read_jsonl(path))
    votes = [v for r in records for v in r["detail"]["votes"]]
    unparsed = sum(v is None for v in votes)
    outcomes = {"all right": 0, "mixed": 0, "all wrong": 0}
    for r in records:
        c = sum(v == r["gold"] for v in r["detail"]["votes"])
        outcomes["all right" if c == len(r["detail"]["votes"]) else "all wrong" if c == 0 else "mixed"] += 1
    print(
        f"{path}: {len(records)} questions x {len(votes) // len(records)} samples; {unparsed} samples "
        f"({unparsed / len(votes):.1%}) without an answer line; questions {outcomes}"
    )
    print(f"\n{'lever':32} {'pairs':>6} {'questions':>9} {'gold':>5} {'failure rejected':>16}")
    for name, lever in LEVERS.items():
        m = mix(records, args.pairs_per_question, *lever)
        print(
            f"{name:32} {m['pairs']:6d} {m['questions']:9d} {m['gold_pairs']:5d} {m['failure_rejected_share']:16.1%}"
        )


if __name__ == "__main__":
    main()
