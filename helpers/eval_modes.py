"""The evaluation modes, in one registry: settings validation, the form, the command line and 05_eval read it.

Adding a mode is one entry here plus its runner, a function of `helpers.evaluation` named by ``runner`` and
called as ``runner(model, tokenizer, questions, variant, out_path, **{p: settings.<p> for p in params})``.
This module imports no torch (`helpers.settings` imports it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalMode:
    """One way of asking a model variant for its answer, and what evaluation needs to run and report it."""

    name: str
    help: str
    generates: bool  # True: the model writes text (slow); False: answers are scored by log-likelihood
    runner: str  # function name in helpers.evaluation
    params: tuple[str, ...] = ("batch_size",)  # EvalSettings fields passed to the runner (and recorded as provenance)
    # Accuracy metrics reported, headline first; a record's ``detail[metric]`` holds the per-choice scores of the
    # others (the headline's pick is the record's ``parsed``)
    metrics: tuple[str, ...] = ("acc",)


MODES: dict[str, EvalMode] = {
    m.name: m
    for m in (
        EvalMode(
            "cot",
            "chat prompt, greedy explanation + 'Answer: X', parsed by helpers.answers; parse failures are "
            "broken down (out of tokens / dangling anchor / no anchor)",
            True,
            "evaluate_cot",
            ("batch_size", "max_new_tokens"),
        ),
        EvalMode(
            "cot@k",
            "self-consistency: k chains of thought sampled at temperature, majority vote of the parsed "
            "letters (a tie goes to the tied letter sampled first)",
            True,
            "evaluate_cot_at_k",
            ("batch_size", "max_new_tokens", "k", "temperature", "seed"),
        ),
        EvalMode(
            "cloze",
            "each answer text scored as a continuation of 'Question: ...\\nAnswer:' (lm-eval style); "
            "headline: log-prob / characters (acc_norm), also summed log-prob (acc)",
            False,
            "evaluate_cloze",
            metrics=("acc_norm", "acc"),
        ),
        EvalMode(
            "letter",
            "lm-eval commonsense_qa: lettered choices, the likeliest of ' A' ... ' E'",
            False,
            "evaluate_letter",
        ),
        EvalMode(
            "letter-cyclic",
            "letter mode averaged over the 5 cyclic rotations of the choices (position-debiased)",
            False,
            "evaluate_letter_cyclic",
        ),
    )
}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def mode_label(mode: str, metric: str) -> str:
    """How a (mode, metric) is named in tables and charts: the mode for its headline metric, else ``mode (metric)``."""
    headline = MODES[mode].metrics[0] if mode in MODES else "acc"
    return mode if metric == headline else f"{mode} ({metric})"
