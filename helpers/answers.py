"""The single answer parser (and answer-line formatter) for 5-choice CommonsenseQA.

Generations are expected to end with a line ``Answer: <letter>``; evaluation, preference-pair
building and the notebooks all read the model's choice through :func:`extract_answer`, and
every training target spells that line through :func:`format_answer_line`.

Parsing rules, in order:

1. **Anchored.** A line starting (after optional whitespace/markdown ``#``, ``*``, ``-``, ``>``)
   with ``Answer:``, ``Final answer:`` or ``Correct answer:`` (any case, ``**Answer:**`` and
   ``**Answer**:`` too). The LAST such line decides, and if it holds no parsable letter the result
   is None -- earlier lines are not consulted, the model's final word counts. If the line holds
   several ``answer:`` anchors, the text after the last one is read; if nothing follows the
   anchor, the next non-blank line is read instead (``Answer:\\nC``).
2. **Fallback**, only when no anchored line exists at all: "the (correct) answer/option is C",
   "answer is **C**", "I choose/pick/select C", "option C is correct". All such phrases must name
   the same letter, otherwise the result is None.
3. **Letter tokens.** ``C``, ``c``, ``(C)``, ``[C]``, ``**C**``, ``C.``, ``C)``, ``C:``, ``C -``,
   ``C,`` -- a bare letter must end the line or be followed by one of ``. ) : - ,`` (or a dash), so
   the article in ``Answer: a dog`` / ``the answer is a dog`` and the B of ``Because`` are not
   letters. Consequently ``Answer: C ocean`` and ``the answer is C because ...`` are None as well.
   A wrapped letter is unambiguous: ``Answer: (a) dog`` is A.
4. **Contradictions.** ``Answer: A or C``, ``A/B``, ``(A) and (C)``, ``A, C`` -> None.
5. Letters outside ``letters`` (``Answer: F``), None and empty input -> None.

Chat special tokens (``<|eot_id|>``, ``<|im_end|>``, ``</s>``, ...) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")

_SPECIAL = re.compile(r"<\|[^|<>\n]*\|>|</?s>|<eos>|<end_of_turn>|<pad>", re.I)
_ANCHOR = re.compile(r"^[\s#*>_\-]*(?:(?:final|correct)\s+)?answer[*_\s]*:", re.I)
_INLINE_ANCHOR = re.compile(r"answer[*_ \t]*:", re.I)
# A letter token: "(C)", "[C]", or a bare letter ending at a delimiter or the end of the line;
# optional markdown/quote wrappers ("**C**", "'C'") around any of them.
_TOKEN = re.compile(
    r"[*_\"'`]*[ \t]*(?:\((?P<p>[A-Za-z])\)|\[(?P<b>[A-Za-z])\]"
    r"|(?<![A-Za-z0-9])(?P<l>[A-Za-z])(?=[*_\"'`]*[ \t]*(?:[.):,\-\u2013\u2014]|$)))",
    re.M,
)
# What may join two letters in a contradictory answer: "A or C", "(A)/(C)", "A, C", "A and C".
_SEP = re.compile(r"[*_\"'`]*[ \t]*(?:,[ \t]*(?:or\b|and\b)?|/|&|\||or\b|and\b|vs\b\.?)[ \t]*", re.I)
_PHRASE = re.compile(
    r"\b(?:answer|option|choice)\s+(?:is|would\s+be|should\s+be|must\s+be)[ \t]*:?[ \t]*"
    r"|\bI(?:\s+would|\s+will|'d)?\s+(?:choose|pick|select|go\s+with)\s+(?:option\s+|choice\s+)?",
    re.I,
)
_OPTION_IS_CORRECT = re.compile(
    r"\b(?:option|choice)\s+[*_\"'`]*[(\[]?(?<![A-Za-z0-9])([A-Za-z])[)\]]?[*_\"'`]*"
    r"\s+is\s+(?:the\s+)?(?:correct|right|best)\b",
    re.I,
)


def _letter_at(text: str, pos: int) -> tuple[str, int] | None:
    """The upper-cased letter token starting at ``pos`` and where it ends, or None."""
    m = _TOKEN.match(text, pos)
    if m is None:
        return None
    return (m.group("p") or m.group("b") or m.group("l")).upper(), m.end()


def _parse_anchored(rest: str) -> str | None:
    """The letter of the text after an ``Answer:`` anchor; None if absent or contradictory."""
    first = _letter_at(rest, 0)
    if first is None:
        return None
    letter, end = first
    sep = _SEP.match(rest, end)
    if sep is not None:
        other = _letter_at(rest, sep.end())
        if other is not None and other[0] != letter:
            return None
    return letter


def anchor_lines(text: str | None) -> tuple[list[str], list[int]]:
    """A generation's lines (special tokens blanked) and the indices of those read as an ``Answer:`` anchor."""
    lines = _SPECIAL.sub(" ", text or "").splitlines()
    return lines, [i for i, line in enumerate(lines) if _ANCHOR.match(line)]


def extract_answer(text: str | None, letters: Sequence[str] = LETTERS) -> str | None:
    """Return the upper-case answer letter a generation commits to, or None (see module doc)."""
    if not text:
        return None
    valid = {str(x).upper() for x in letters}
    lines, anchored = anchor_lines(text)
    if anchored:
        i = anchored[-1]
        rest = _INLINE_ANCHOR.split(lines[i])[-1].strip(" \t*_")
        if not rest:
            rest = next((line.strip() for line in lines[i + 1 :] if line.strip()), "")
        letter = _parse_anchored(rest)
    else:
        body = "\n".join(lines)
        found = [tok[0] for m in _PHRASE.finditer(body) if (tok := _letter_at(body, m.end()))]
        found += [m.group(1).upper() for m in _OPTION_IS_CORRECT.finditer(body)]
        letter = found[0] if len(set(found)) == 1 else None
    return letter if letter in valid else None


def rationale(text: str | None) -> str | None:
    """The explanation before a generation's ``Answer:`` line when that line is its one anchor and its last
    line; None otherwise (no anchor, several, text after it, nothing before it). What a rejection-sampling
    (STaR) round keeps of the model's own correct answers to train on."""
    lines, anchored = anchor_lines(text)
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if len(filled) < 2 or anchored != filled[-1:]:
        return None
    return "\n".join(lines[i] for i in filled[:-1]).strip()


def format_answer_line(letter: str, text: str | None = None) -> str:
    """The final line of a target/generation: ``Answer: C``, or ``Answer: C. ocean`` when the choice's text is
    given (small models bind a bare letter poorly; `extract_answer` reads both)."""
    if letter not in LETTERS:
        raise ValueError(f"answer letter must be one of {', '.join(LETTERS)}; got {letter!r}")
    return f"Answer: {letter}" + (f". {' '.join(text.split())}" if text else "")
