"""scripts/token_budget.py: decode slots of the `generate` engine against the tokens kept, loops, answer lines."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import token_budget  # noqa: E402


def rec(prompt_len: int, tokens: int, output: str = "Because.\nAnswer: A", failure: str | None = None) -> dict:
    return {"prompt": "p" * prompt_len, "new_tokens": tokens, "output": output, "failure": failure}


def test_a_batch_decodes_until_its_longest_answer_and_loops_are_counted():
    records = [rec(10, 10), rec(9, 30), rec(8, 192, "loop loop", "out_of_tokens"), rec(7, 20, "Answer: B. x\nmore")]
    row = token_budget.budget(records, [2, 4])
    assert row["new_tokens"] == 252 and row["out_of_tokens"] == 1
    assert row["share_of_tokens_in_loops"] == round(192 / 252, 3)
    assert row["answers_with_text_after_the_answer_line"] == 1
    # batches of 2 in length order: (10, 30) -> 2 x 30, (192, 20) -> 2 x 192
    assert row["generate_slots_per_kept_token_b2"] == round((60 + 384) / 252, 2)
    assert row["generate_slots_per_kept_token_b4"] == round(4 * 192 / 252, 2)
