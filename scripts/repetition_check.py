"""Would a repetition guard in decoding touch only the loops? Counts, per published CoT record set, the answers
in which ``no_repeat_ngram_size=n`` would have banned a token, split into parsed answers (which the guard would
change although they were fine) and parse failures (the loops it is meant to stop).

    python scripts/repetition_check.py assets/results --n 8 12 16

Greedy decoding with the guard is identical to decoding without it until the first banned token, so an answer
without a repeated n-gram would come out the same; one with a repeat would not. transformers' guard looks at the
whole sequence, prompt included (``--answer-only`` counts repeats inside the answer only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers.jsonl import read_jsonl
from helpers.models import load_tokenizer


def first_repeat(ids: list[int], start: int, n: int) -> int | None:
    """Index of the first token at or after ``start`` that ends an n-gram seen before, or None."""
    seen: set[tuple[int, ...]] = set()
    for end in range(n, len(ids) + 1):
        gram = tuple(ids[end - n : end])
        if end - 1 >= start and gram in seen:
            return end - 1
        seen.add(gram)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="folder of <variant>-cot.jsonl(.gz) records")
    parser.add_argument("--n", type=int, nargs="+", default=[8, 12, 16])
    parser.add_argument("--variants", nargs="+", default=["sft", "dpo"])
    parser.add_argument("--tokenizer", default="smollm2-135m")
    parser.add_argument("--answer-only", action="store_true", help="ignore repeats of prompt n-grams")
    args = parser.parse_args()
    tok = load_tokenizer(args.tokenizer)
    print("variant  n  parsed changed (correct)  failures reached")
    for variant in args.variants:
        path = next(args.results.glob(f"{variant}-cot.jsonl*"))
        records = read_jsonl(path)
        encoded = []
        for r in records:
            prompt = [] if args.answer_only else tok(r["prompt"], add_special_tokens=False)["input_ids"]
            encoded.append((r, prompt + tok(r["output"], add_special_tokens=False)["input_ids"], len(prompt)))
        total_parsed = sum(bool(r["parsed"]) for r in records)
        for n in args.n:
            hit = [(r, first_repeat(ids, start, n) is not None) for r, ids, start in encoded]
            parsed = [r for r, h in hit if h and r["parsed"]]
            failures = [r for r, h in hit if h and not r["parsed"]]
            print(
                f"{variant:7} {n:2}  {len(parsed):4} of {total_parsed} ({sum(r['correct'] for r in parsed)})"
                f"  {len(failures)} of {len(records) - total_parsed}"
            )


if __name__ == "__main__":
    main()
