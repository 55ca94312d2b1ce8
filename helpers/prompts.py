"""The one prompt format, used by SFT, preference pairs, DPO and evaluation.

A short system message; a user message with the question, the lettered choices and the
instruction; the assistant target is the explanation followed by a final ``Answer: X`` line.
Everything is rendered with the tokenizer's own chat template, with a fixed date so that
Llama-3.x templates (which stamp "Today Date" into the system header) give byte-identical
prompts on every day.

    >>> user_message("Where do fish live?", ["sea", "tree", "car", "sky", "shoe"]).splitlines()[0]
    'Question: Where do fish live?'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from helpers.answers import LETTERS, format_answer_line

SYSTEM_PROMPT = (
    "You answer multiple-choice commonsense questions. Think briefly about the choices, then give your final answer."
)
INSTRUCTION = "Explain your reasoning in a few sentences, then end with a final line 'Answer: <letter>'."
# Llama-3.x chat templates print this into the system header; fixing it keeps prompts identical across days.
FIXED_DATE = "26 Jul 2024"


def user_message(question: str, choices: Sequence[str]) -> str:
    """The user turn: question, lettered choices, instruction."""
    if len(choices) != len(LETTERS):
        raise ValueError(f"expected {len(LETTERS)} choices, got {len(choices)}")
    lines = [f"Question: {question}", "", "Choices:"]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, choices)]
    return "\n".join(lines + ["", INSTRUCTION])


ANSWER_FORMATS = ("letter", "letter+text")  # the final line: "Answer: C" or "Answer: C. ocean"


def target_text(explanation: str, letter: str, answer_text: str | None = None) -> str:
    """The assistant turn the model is trained to write: explanation, then ``Answer: X`` (``Answer: X. text``
    when ``answer_text`` is given)."""
    return f"{explanation.strip()}\n{format_answer_line(letter, answer_text)}"


def answer_text(record: Mapping[str, Any], letter: str, answer_format: str) -> str | None:
    """The choice text the answer line repeats under ``answer_format`` (None for "letter")."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    return record["choices"][LETTERS.index(letter)] if answer_format == "letter+text" else None


def messages(question: str, choices: Sequence[str]) -> list[dict[str, str]]:
    """System + user messages for one question."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(question, choices)},
    ]


def _template(tokenizer: Any, msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no chat template: use an Instruct model"
        )
    return tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=add_generation_prompt, date_string=FIXED_DATE
    )


def render_prompt(tokenizer: Any, record: Mapping[str, Any]) -> str:
    """The exact text the model sees before it answers (ends with the assistant header)."""
    return _template(tokenizer, messages(record["question"], record["choices"]), add_generation_prompt=True)


def render_completion(tokenizer: Any, record: Mapping[str, Any], assistant_text: str) -> str:
    """``assistant_text`` as the chat template closes an assistant turn, ending at the end-of-turn token.

    The end-of-turn token must be ``tokenizer.eos_token`` (set by `helpers.models`), so TRL keeps it
    in the labels and the model learns to stop; anything the template adds after it is cut.
    """
    prompt = render_prompt(tokenizer, record)
    msgs = messages(record["question"], record["choices"]) + [{"role": "assistant", "content": assistant_text.strip()}]
    full = _template(tokenizer, msgs, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    completion = full[len(prompt) :]
    eos = tokenizer.eos_token
    if not eos or eos not in completion:
        raise ValueError(
            f"end-of-turn token {eos!r} does not close the assistant turn in this chat template; "
            "load the tokenizer with helpers.models.load_tokenizer so eos is the end-of-turn token"
        )
    return completion[: completion.rindex(eos) + len(eos)]


def to_prompt_completion(tokenizer: Any, record: Mapping[str, Any], answer_format: str = "letter") -> dict[str, str]:
    """SFT record: ``{"prompt", "completion"}`` strings (TRL trains on the completion only)."""
    gold = record["answer"]
    target = target_text(record["explanation"], gold, answer_text(record, gold, answer_format))
    return {"prompt": render_prompt(tokenizer, record), "completion": render_completion(tokenizer, record, target)}
