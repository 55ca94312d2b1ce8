"""The evaluation modes, in one registry: settings validation, the form, the command line and 05_eval read it.

Adding a mode is one entry here (its runner lives in `helpers.evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalMode:
    """One way of asking a model variant for its answer."""

    name: str
    help: str
    generates: bool  # True: the model writes text (slow); False: answers are scored by log-likelihood


MODES: dict[str, EvalMode] = {m.name: m for m in (
    EvalMode("cot", "chat prompt, greedy explanation + 'Answer: X', parsed by helpers.answers", True),
    EvalMode("cot@k", "self-consistency: k sampled chains of thought, majority vote of the parsed letters", True),
    EvalMode("cloze", "each answer text scored as a continuation of 'Question: ...\\nAnswer:' (lm-eval style)", False),
    EvalMode("letter", "lm-eval commonsense_qa: lettered choices, the likeliest of ' A' ... ' E'", False),
    EvalMode("letter-cyclic", "letter mode averaged over the 5 cyclic rotations of the choices (position-debiased)",
             False),
)}
MODE_NAMES: tuple[str, ...] = tuple(MODES)
