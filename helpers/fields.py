"""Settings fields that describe themselves: the metadata one field carries, and the type, text and bounds checks
that `helpers.settings` runs on every value and `helpers.cli` and `helpers.widgets` use to read typed text.

    >>> parse_text("train_sample_size", int | None, "none")
    >>> check_type("lora_r", int, 16)
    16
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import field
from typing import Any

NONE_WORDS = ("", "none", "null")


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    labels: tuple | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    suggestions: tuple[str, ...] | None = None,
    resume_free: bool = False,
) -> Any:
    """A settings field: its default and everything the form, the command line and validation need.

    ``choices``: the allowed values (of each element, for a tuple field); ``labels``: ``(value, label)`` pairs
    shown instead of raw values (e.g. for ``bool | None``); ``gt``/``ge``/``lt``/``le``: bounds;
    ``suggestions``: values offered but not enforced; ``resume_free``: may change when a run resumes.
    """
    meta = {
        "help": help,
        "choices": choices,
        "labels": labels,
        "gt": gt,
        "ge": ge,
        "lt": lt,
        "le": le,
        "suggestions": suggestions,
        "resume_free": resume_free,
    }
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


# ---------------------------------------------------------------- types, text and bounds from the annotations
def optional_type(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner[0], len(inner) < len(typing.get_args(hint))
    return hint, False


def describe(hint: Any) -> str:
    """A type as a reader says it: "a whole number or None", "a list of words", ..."""
    inner, optional = optional_type(hint)
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    what = names.get(inner, "a comma-separated list")
    return what + (" or None" if optional else "")


def check_type(name: str, hint: Any, value: Any) -> Any:
    """``value`` as the field's type (ints accepted for floats, lists for tuples); ValueError otherwise."""
    inner, optional = optional_type(hint)
    if value is None and optional:
        return None
    ok = {
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(inner)
    if ok is None:  # tuple[str, ...]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise ValueError(f"{name} must be {describe(hint)}, got {value!r} ({type(value).__name__})")
    return float(value) if inner is float else value


def parse_text(name: str, hint: Any, raw: str, labels: tuple | None = None) -> Any:
    """A value typed as text (command line, a form's text box) -> the field's type; ValueError naming the field."""
    inner, optional = optional_type(hint)
    text = raw.strip()
    for value, label in (
        labels or ()
    ):  # a label, its first words ("auto" for "auto (4-bit on a GPU for 1B models)") or the value
        if text.lower() in (str(label).lower(), str(label).split(" (")[0].lower(), str(value).lower()):
            return value
    if optional and text.lower() in NONE_WORDS:
        return None
    try:
        if inner is bool:
            return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}[text.lower()]
        if inner in (int, float, str):
            return inner(text)
        return tuple(s.strip() for s in text.split(",") if s.strip())
    except (KeyError, ValueError):
        raise ValueError(f"{name} must be {describe(hint)}, got {raw!r}") from None


def check_bounds(name: str, meta: typing.Mapping[str, Any], value: Any) -> None:
    """Choices and numeric bounds of one field; ValueError saying what is allowed."""
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None:
        bad = [v for v in (value if isinstance(value, tuple) else (value,)) if v not in choices]
        if bad or value == ():
            raise ValueError(
                f"{name} must be {'some of' if isinstance(value, tuple) else 'one of'} "
                f"{', '.join(map(repr, choices))}; got {value!r}"
            )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
        for key, test, word in (
            ("gt", value.__gt__, ">"),
            ("ge", value.__ge__, ">="),
            ("lt", value.__lt__, "<"),
            ("le", value.__le__, "<="),
        ):
            if key in meta and not test(meta[key]):
                raise ValueError(f"{name} must be {word} {meta[key]}, got {value}")
