"""Tests for helpers.answers: the one answer parser and the answer-line formatter."""

from __future__ import annotations

import pytest

from helpers.answers import LETTERS, extract_answer, format_answer_line, rationale

EXPL = "Explanation: Oceans are large bodies of salt water, so fish live there.\n"

# (text, expected) -- each case pins one rule; ids say which.
CASES: list[tuple[str | None, str | None, str]] = [
    # --- basic anchored forms
    ("Answer: C", "C", "plain"),
    (EXPL + "Answer: C", "C", "explanation-then-answer"),
    ("Answer:C", "C", "no-space"),
    ("ANSWER: d", "D", "upper-anchor-lower-letter"),
    ("answer: b", "B", "lower-anchor"),
    ("Answer: a", "A", "lone-lower-a-is-letter"),
    ("Answer: E.", "E", "trailing-period"),
    (EXPL + "Answer: E.", "E", "trailing-period-after-explanation"),
    ("Answer: (C)", "C", "parentheses"),
    ("Answer: [B]", "B", "brackets"),
    ("Answer: **D**", "D", "bold-letter"),
    ("**Answer:** C", "C", "bold-anchor"),
    ("**Answer**: B", "B", "bold-anchor-colon-outside"),
    ("**Answer: (E)**", "E", "bold-whole-line"),
    ("### Answer: D", "D", "markdown-heading"),
    ("- Answer: A", "A", "markdown-bullet"),
    ("Final answer: B", "B", "final-answer"),
    ("Correct answer: D", "D", "correct-answer"),
    ("Answer: C)", "C", "closing-paren"),
    # --- trailing text after the letter
    ("Answer: C. ocean", "C", "letter-period-text"),
    ("Answer: (C) ocean", "C", "paren-letter-text"),
    ("Answer: (a) dog", "A", "paren-lower-a-text"),
    ("Answer: A - ocean", "A", "letter-dash-text"),
    ("Answer: A) ocean", "A", "letter-paren-text"),
    ("Answer: B: fridge", "B", "letter-colon-text"),
    ("Answer: B, fridge", "B", "letter-comma-text"),
    # --- not a letter
    ("Answer: a dog", None, "article-a-lower"),
    ("Answer: A dog", None, "article-a-upper"),
    ("Answer: C ocean", None, "bare-letter-then-word"),
    ("Answer: Because fish swim.", None, "letter-inside-word"),
    ("Answer: ocean", None, "word-not-letter"),
    ("Explanation: Ants live in colonies.", None, "letter-inside-word-no-anchor"),
    ("Answer:", None, "empty-anchor"),
    ("Answer: F", None, "letter-out-of-range"),
    ("Answer: (F)", None, "paren-letter-out-of-range"),
    ("Fish live in the ocean, which is salty.", None, "no-answer"),
    (None, None, "none"),
    ("", None, "empty-string"),
    ("   \n\n  ", None, "whitespace-only"),
    # --- last anchored line wins, no looking back
    ("Answer: A\nAnswer: B", "B", "two-lines-last-wins"),
    ("Answer: A\n" + EXPL + "Answer: D", "D", "answer-before-explanation-then-different"),
    ("Answer: A\nHmm, let me reconsider.\nAnswer: E.", "E", "reconsidered"),
    ("Answer: C\nAnswer: ocean", None, "last-anchor-unparsable-no-lookback"),
    ("Answer: C\nAnswer:", None, "last-anchor-empty-no-lookback"),
    ("Answer: A, then Answer: D", "D", "two-anchors-one-line"),
    ("Answer:\nC", "C", "letter-on-next-line"),
    ("**Answer:**\n\n(B) fridge", "B", "bold-anchor-letter-on-next-line"),
    # --- contradictions
    ("Answer: A or B", None, "contradiction-or"),
    ("Answer: A/B", None, "contradiction-slash"),
    ("Answer: (A) or (C)", None, "contradiction-parens-or"),
    ("Answer: A, C", None, "contradiction-comma"),
    ("Answer: (B) and (D)", None, "contradiction-and"),
    ("Answer: (C) or (C)", "C", "same-letter-twice-not-contradiction"),
    ("Answer: C or C", None, "bare-letter-then-or-is-not-a-token"),
    ("Answer: B, a fridge", "B", "comma-then-article-not-contradiction"),
    # --- fallback phrases (no anchored line at all)
    ("So the answer is C.", "C", "fallback-answer-is"),
    ("The correct answer is (C) ocean.", "C", "fallback-correct-answer-paren"),
    ("The correct option is D", "D", "fallback-correct-option"),
    ("Therefore the answer is **B**.", "B", "fallback-bold"),
    ("After thinking, I choose e.", "E", "fallback-i-choose-lower"),
    ("Option C is correct because fish swim.", "C", "fallback-option-is-correct"),
    ("Choice (B) is the best fit.", "B", "fallback-choice-is-best"),
    ("The answer is: A", "A", "fallback-answer-is-colon"),
    ("I'd go with option C.", "C", "fallback-id-go-with"),
    ("The answer is a dog.", None, "fallback-article-a"),
    ("The answer is C because fish swim.", None, "fallback-bare-letter-then-word"),
    ("The answer is Because", None, "fallback-letter-inside-word"),
    ("The answer is C. Actually the answer is D.", None, "fallback-disagree"),
    ("The answer is C. Indeed, option C is correct.", "C", "fallback-agree"),
    ("Option A is incorrect. The answer is B.", "B", "fallback-incorrect-not-a-vote"),
    ("The answer is F.", None, "fallback-out-of-range"),
    ("The answer is C.\nAnswer: D", "D", "anchor-beats-fallback"),
    ("The answer is C.\nAnswer: ocean", None, "unparsable-anchor-blocks-fallback"),
    # --- whitespace, line endings, special tokens
    ("  Answer:   B  ", "B", "surrounding-spaces"),
    ("\tAnswer:\tC\t", "C", "tabs"),
    (EXPL + "Answer: B\n\n\n", "B", "trailing-newlines"),
    ("Explanation: fish.\r\nAnswer: A\r\n", "A", "windows-crlf"),
    ("Explanation: fish.\r\nAnswer: A\r\nAnswer: D", "D", "windows-crlf-last-wins"),
    ("Answer: C<|im_end|>", "C", "im-end-token"),
    ("Answer: D<|eot_id|>", "D", "eot-id-token"),
    ("Answer: (E). <|eot_id|><|end_of_text|>", "E", "several-special-tokens"),
    ("Answer: B</s>", "B", "eos-s-token"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in CASES], ids=[c[2] for c in CASES])
def test_extract_answer(text: str | None, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_case_ids_unique() -> None:
    ids = [c[2] for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("letter", LETTERS)
def test_round_trip(letter: str) -> None:
    line = format_answer_line(letter)
    assert line == f"Answer: {letter}"
    assert extract_answer(line) == letter
    assert extract_answer(EXPL + line) == letter


@pytest.mark.parametrize("bad", ["F", "a", "", "AB", " A", "Answer: A"])
def test_format_answer_line_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="one of A, B, C, D, E"):
        format_answer_line(bad)


@pytest.mark.parametrize(
    ("text", "letters", "expected"),
    [
        ("Answer: E", ("A", "B", "C", "D"), None),
        ("Answer: D", ("A", "B", "C", "D"), "D"),
        ("Answer: F", ("A", "B", "C", "D", "E", "F"), "F"),
        ("Answer: f", "ABCDEF", "F"),
    ],
    ids=["E-not-in-4", "D-in-4", "F-in-6", "letters-as-string"],
)
def test_custom_letters(text: str, letters: tuple[str, ...] | str, expected: str | None) -> None:
    assert extract_answer(text, letters) == expected


def test_letters_constant() -> None:
    assert LETTERS == ("A", "B", "C", "D", "E")


def test_import_has_no_side_effects() -> None:
    import importlib

    import helpers.answers as mod

    assert importlib.reload(mod).LETTERS == LETTERS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Oceans hold salt water.\nAnswer: C", "Oceans hold salt water."),
        ("Line one.\n\nLine two.\nAnswer: B<|im_end|>", "Line one.\nLine two."),
        ("Oceans hold salt water.\nAnswer: C\nAnswer: C", None),  # a loop: two anchors
        ("Oceans hold salt water.\nAnswer: C\nBecause fish.", None),  # text after the answer line
        ("Answer: C", None),  # nothing to learn from
        ("Oceans hold salt water, so C.", None),  # no anchor
        (None, None),
    ],
)
def test_rationale_keeps_only_a_clean_explanation(text: str | None, expected: str | None) -> None:
    assert rationale(text) == expected
