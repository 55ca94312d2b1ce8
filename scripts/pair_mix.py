"""What each pair lever would put in the pair set, read from published k-sample records (no model, no GPU).

    python scripts/pair_mix.py assets/results --variant sft

A ``<variant>-cot@k.jsonl(.gz)`` record keeps, per question, the letter each of its k samples gave (None where the
sample has no answer line) and each sample's failure kind. That is all `helpers.pairs.select_pairs` needs to know
how many pairs a question gives and whether a pair's rejected side is a failure (a loop or no answer line) or a wrong
letter. Per lever (`PairSettings` fields: ``rejected_first``, ``weight_unsure``, ``when_all_agree``) it prints the
pairs, the questions they come from, and the share of pairs whose rejected side is a failure. The records are
validation answers sampled at the cot@k temperature, not the train questions 02 samples: a proxy for the mix, not
the pair set itself.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from helpers.jsonl import read_jsonl
from helpers.pairs import OUTCOMES, gold_rejected, sample_outcome, select_pairs

LEVERS = {  # name -> (rejected_first, weight_unsure, when_all_agree)
    "default (wrong first)": ("wrong", False, "skip"),
    "failures first": ("failure", False, "skip"),
    "unsure-weighted": ("wrong", True, "skip"),
    "gold when all wrong": ("wrong", False, "gold"),
    "failures first + unsure + gold": ("failure", True, "gold"),
}


def mix(records: list[dict], limit: int, rejected_first: str, weight_unsure: bool, when_all_agree: str) -> dict:
    """Pair counts of one lever: the samples `helpers.pairs.select_pairs` (and, where every sample is wrong,
    `gold_rejected`) would pair, as `build_pairs` calls them."""
    pairs = failure_rejected = questions = gold = 0
    for r in records:
        votes = r["detail"]["votes"]
        rng = random.Random(r["id"])  # which samples are picked varies with it; their counts and kinds do not
        chosen = select_pairs(votes, r["gold"], rng, limit, rejected_first, weight_unsure)
        if chosen:
            questions, pairs = questions + 1, pairs + len(chosen)
            failure_rejected += sum(votes[j] is None for _, j in chosen)
        elif when_all_agree == "gold" and (j := gold_rejected(votes, r["gold"], rng)) is not None:
            questions, pairs, gold = questions + 1, pairs + 1, gold + 1
            failure_rejected += votes[j] is None
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
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for r in records:  # sample_outcome reads texts: each vote written back as its answer line
        outcomes[
            sample_outcome({"answer": r["gold"]}, [f"Answer: {v}" if v else "" for v in r["detail"]["votes"]])
        ] += 1
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
