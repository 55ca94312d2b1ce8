"""scripts/repetition_check.py: where no_repeat_ngram_size would first ban a token."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "repetition_check", Path(__file__).resolve().parents[1] / "scripts" / "repetition_check.py"
)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)  # type: ignore[union-attr]


def test_first_repeat_finds_the_token_that_closes_a_seen_ngram():
    ids = [1, 2, 3, 9, 1, 2, 3]
    assert check.first_repeat(ids, 0, 3) == 6  # (1, 2, 3) again: its last token would be banned
    assert check.first_repeat(ids, 0, 4) is None
    assert check.first_repeat(ids, 0, 2) == 5  # (1, 2) comes back first


def test_first_repeat_counts_prompt_ngrams_but_only_bans_in_the_answer():
    prompt, answer = [5, 6, 7], [5, 6, 7]
    assert check.first_repeat(prompt + answer, len(prompt), 3) == 5
    assert check.first_repeat(prompt + answer, len(prompt) + 3, 3) is None  # nothing generated after it
    assert check.first_repeat([5, 6, 5, 6], 3, 2) == 3
