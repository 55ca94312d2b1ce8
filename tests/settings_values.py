"""Values derived from the settings' field metadata, for the form and command-line tests: for every field a valid
value other than its default, the text a person would type for it, and values out of its bounds.

Nothing here restates a field's choices or bounds: they are read from `helpers.settings`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from helpers.fields import optional_type
from helpers.settings import DPOSettings, EvalSettings, PairSettings, Settings, SFTSettings

CLASSES = (Settings, SFTSettings, DPOSettings, PairSettings, EvalSettings)

# Fields whose only valid value is the default (documented in the field's help and refused otherwise).
ONLY_DEFAULT = {(DPOSettings, "group_by_length")}


def _in_bounds(meta: dict, value: float) -> bool:
    return all(
        key not in meta or test(meta[key])
        for key, test in (("gt", value.__gt__), ("ge", value.__ge__), ("lt", value.__lt__), ("le", value.__le__))
    )


def other_value(f: dataclasses.Field, hint: Any) -> Any:
    """A valid value of one field other than its default: another choice or label, default + 1 (or x2 for a float)
    within bounds, the flipped bool, new text."""
    meta, default = f.metadata, f.default
    inner, _optional_ = optional_type(hint)
    if meta.get("labels"):
        values = [v for v, _ in meta["labels"]]
        return values[(values.index(default) + 1) % len(values)]
    if meta.get("choices") and isinstance(default, tuple):
        rest = tuple(c for c in meta["choices"] if c not in default)
        return rest or meta["choices"][:1]
    if meta.get("choices"):
        choices = list(meta["choices"])
        return choices[(choices.index(default) + 1) % len(choices)]
    if meta.get("suggestions"):
        return next(s for s in meta["suggestions"] if s != default)
    if inner is bool:
        return not default
    if inner is int:
        start = default if default is not None else meta.get("ge", meta.get("gt", 0))
        return next(v for v in (start + 1, start - 1, start + 7) if _in_bounds(meta, v) and v != default)
    if inner is float:
        return next(v for v in (default * 2, default + 1.0, default / 2) if _in_bounds(meta, v) and v != default)
    if inner is str:
        return f"{default}-edited" if default else "edited/folder"
    return ("sft", "dpo-edited")  # a free list of words (variants)


def edited(cls: type[Settings]) -> dict[str, Any]:
    """Every field of ``cls`` set to `other_value` (fields in ONLY_DEFAULT keep their default); checked valid."""
    hints = cls.field_hints()
    values = {
        f.name: (f.default if (cls, f.name) in ONLY_DEFAULT else other_value(f, hints[f.name]))
        for f in dataclasses.fields(cls)
    }
    cls(**values)  # the whole set is valid
    return values


def as_text(f: dataclasses.Field, value: Any) -> str:
    """What a person types for ``value`` (a label where the field has labels)."""
    for v, label in f.metadata.get("labels") or ():
        if v == value and type(v) is type(value):
            return label
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def out_of_range(f: dataclasses.Field) -> list[Any]:
    """Values just outside the field's numeric bounds (none for an unbounded field)."""
    meta, out = f.metadata, []
    for key, values in (
        ("gt", lambda b: [b, b - 1]),
        ("ge", lambda b: [b - 1]),
        ("lt", lambda b: [b, b + 1]),
        ("le", lambda b: [b + 1]),
    ):
        if key in meta:
            out += values(meta[key])
    return out
