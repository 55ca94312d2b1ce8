"""The settings form, generated from the field metadata: every control of every settings class edited
to a valid non-default value gives exactly those settings, field by field and through JSON; a value out of range
is shown as an error, never clamped, and blocks ``.settings``; the tri-state ``quantize`` gives None/True/False;
the lesson's fields come first, in order, the rest under "More settings".

The values are derived from the metadata (tests/settings_values.py), so a new field is covered without editing
this file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ipywidgets as W
import pytest
from settings_values import CLASSES, ONLY_DEFAULT, as_text, edited, out_of_range

from helpers import widgets
from helpers.fields import optional_type
from helpers.settings import DPOSettings, EvalSettings, PairSettings, Settings, SFTSettings

IDS = [c.__name__ for c in CLASSES]


def field_of(cls: type[Settings], name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def type_into(form: widgets.SettingsForm, name: str, value: Any) -> None:
    """Put ``value`` into a field's control as a learner would: pick a label or choice, tick, type a number or text."""
    f, widget = field_of(type(form._settings), name), form.controls[name]
    if f.metadata.get("labels"):
        widget.label = as_text(f, value)  # the learner picks the label they read
    elif isinstance(widget, W.SelectMultiple):
        widget.value = tuple(value)
    elif isinstance(widget, (W.Dropdown, W.Checkbox, W.IntText, W.FloatText)):
        widget.value = value
    else:  # Text, Combobox: what is typed
        widget.value = value if isinstance(value, str) else as_text(f, value)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_every_control_edited_gives_exactly_those_settings(cls, tmp_path):
    expected = edited(cls)
    form = widgets.SettingsForm(cls())
    assert set(form.controls) == set(expected)
    for name, value in expected.items():
        type_into(form, name, value)
    assert form.error == "", form.error
    assert "settings valid" in form.status.value
    s = form.settings
    assert type(s) is cls
    defaults = cls()
    for name, value in expected.items():  # field by field, with its type (no "None" or "4" strings)
        got = getattr(s, name)
        assert got == value and type(got) is type(value), (name, got, value)
        if (cls, name) not in ONLY_DEFAULT:
            assert got != getattr(defaults, name), f"{name} was not changed by its control"
    assert cls.from_json(s.to_json(tmp_path / "settings.json")) == s  # and through a JSON round trip
    assert cls.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("cls, name", sorted(ONLY_DEFAULT, key=str), ids=lambda v: getattr(v, "__name__", v))
def test_a_field_with_one_valid_value_refuses_another(cls, name):
    form = widgets.SettingsForm(cls())
    type_into(form, name, not getattr(cls(), name))
    assert name in form.error
    with pytest.raises(ValueError, match=name):
        form.settings  # noqa: B018


def out_of_range_cases() -> list[tuple]:
    cases = []
    for cls in CLASSES:
        hints = cls.field_hints()
        for f in dataclasses.fields(cls):
            inner, optional = optional_type(hints[f.name])
            for bad in out_of_range(f):
                cases.append((cls, f.name, bad if optional else inner(bad)))
    # the examples a learner types
    cases += [
        (SFTSettings, "learning_rate", -1e-3),
        (SFTSettings, "lora_r", 0),
        (SFTSettings, "train_sample_size", "abc"),
        (EvalSettings, "sample_size", "-3"),
        (DPOSettings, "beta", 0.0),
        (PairSettings, "max_length", 8),
    ]
    return cases


@pytest.mark.parametrize("cls, name, bad", out_of_range_cases(), ids=lambda v: getattr(v, "__name__", None) or str(v))
def test_out_of_range_is_shown_not_clamped_and_blocks_settings(cls, name, bad):
    form = widgets.SettingsForm(cls())
    control = form.controls[name]
    control.value = bad if not isinstance(control, W.Text) else str(bad)
    assert control.value == (bad if not isinstance(control, W.Text) else str(bad)), "the control clamped the value"
    assert name in form.error and name in form.status.value and "&#10007;" in form.status.value
    with pytest.raises(ValueError, match=f"the settings form shows an error: .*{name}"):
        form.settings  # noqa: B018
    with pytest.raises(ValueError):
        form.value()
    type_into(form, name, getattr(cls(), name))  # put the default back: valid again
    assert form.error == "" and form.settings == cls()


@pytest.mark.parametrize(
    "cls", [c for c in CLASSES if "quantize" in {f.name for f in dataclasses.fields(c)}], ids=lambda c: c.__name__
)
def test_quantize_is_a_three_way_choice_of_none_true_false(cls):
    f = field_of(cls, "quantize")
    form = widgets.SettingsForm(cls())
    control = form.controls["quantize"]
    assert isinstance(control, W.Dropdown)
    assert [label for label, _ in control.options] == [label for _, label in f.metadata["labels"]]
    seen = []
    for value, label in f.metadata["labels"]:
        control.label = label
        got = form.settings.quantize
        assert got is value and not isinstance(got, str), (label, got)
        seen.append(got)
    assert seen == [None, True, False]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_lesson_fields_first_in_order_the_rest_under_more_settings(cls):
    form = widgets.SettingsForm(cls())
    names = [f.name for f in dataclasses.fields(cls)]
    lesson = [n for n in cls.LESSON if n in names]
    assert lesson == list(cls.LESSON), f"LESSON names fields {cls.__name__} does not have"
    assert list(form.controls)[: len(lesson)] == lesson
    shown = [c for c in form.children if c in form.controls.values()]
    assert shown == [form.controls[n] for n in lesson], "the lesson's fields are shown first, in order"
    (accordion,) = [c for c in form.children if isinstance(c, W.Accordion)]
    hidden = list(accordion.children[0].children)
    assert hidden == [form.controls[n] for n in names if n not in lesson]
    assert accordion.get_title(0) == f"More settings ({len(hidden)})"
    assert form.children[-1] is form.status


def test_dpo_form_starts_with_beta_and_has_no_lora_fields():
    names = [f.name for f in dataclasses.fields(DPOSettings)]
    assert not [n for n in names if n.startswith("lora_") or n == "target_modules"], names
    lesson = list(widgets.SettingsForm(DPOSettings()).controls)
    assert "beta" in lesson[:3], lesson[:3]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_each_control_carries_its_help_and_allowed_values(cls):
    form = widgets.SettingsForm(cls())
    for f in dataclasses.fields(cls):
        control, meta = form.controls[f.name], f.metadata
        tip = getattr(control, "tooltip", None) or getattr(control, "description_tooltip", None)
        assert control.description == f.name and tip == meta["help"], f.name
        if meta.get("choices") and not meta.get("labels"):
            assert [o if isinstance(o, str) else o[0] for o in control.options] == list(meta["choices"]), f.name


def test_a_form_of_edited_settings_shows_them():
    s = EvalSettings(**edited(EvalSettings))
    assert widgets.SettingsForm(s).settings == s


def test_edit_sets_controls_as_a_learner_would():
    """`SettingsForm.edit` (used by the notebooks' FORM_EDITS and the smoke runs) goes through the controls, so the
    typed result is what a learner's edit gives: the tri-state stays a bool, the learning rate a float."""
    form = widgets.SettingsForm(SFTSettings()).edit(learning_rate=3e-4, quantize=False, lora_r=8, train_sample_size=12)
    s = form.settings
    assert (s.learning_rate, s.quantize, s.lora_r, s.train_sample_size) == (3e-4, False, 8, 12)
    assert SFTSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="learning_rate"):
        _ = widgets.SettingsForm(SFTSettings()).edit(learning_rate=-1e-3).settings


# ---------------------------------------------------------------- the run size (helpers.presets.RUN_SIZES)
def test_run_sizes_name_fields_of_their_step_within_bounds():
    from helpers.presets import RUN_SIZES

    steps = {cls.STEP: cls for cls in CLASSES}
    assert set(RUN_SIZES) == set(field_of(Settings, "run_size").metadata["choices"]) == {"quick", "full"}
    for size, table in RUN_SIZES.items():
        for step, values in table.items():
            cls = steps[step]
            assert set(values) <= {f.name for f in dataclasses.fields(cls)}, (size, step, values)
            s = cls(run_size=size)
            assert all(getattr(s, k) == v for k, v in values.items()), (size, step)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_run_size_is_in_every_lesson_and_keys_no_checkpoint(cls):
    assert "run_size" in cls.LESSON
    assert field_of(cls, "run_size").metadata["resume_free"] is True  # the sizes it fills key them instead


@pytest.mark.parametrize(
    "cls, name, quick, full",
    [
        (SFTSettings, "train_sample_size", 2000, None),
        (PairSettings, "train_sample_size", 300, 1000),
        (EvalSettings, "sample_size", 300, None),
        (DPOSettings, "train_sample_size", None, None),  # DPO trains on the pairs 02 built
        (Settings, "train_sample_size", None, None),
    ],
)
def test_run_size_fills_a_size_left_unset_and_never_one_set_by_name(cls, name, quick, full):
    assert getattr(cls(), name) == quick and getattr(cls(run_size="full"), name) == full
    for value in (None, 7, field_of(cls, name).default):  # set by name, even to the default: kept
        assert getattr(cls(**{name: value}), name) == value
        assert getattr(cls.from_dict({name: value, "run_size": "full"}), name) == value
    s = cls(seed=1)
    assert getattr(s.replace(run_size="full"), name) == full, "replace fills again what the run size filled"
    assert getattr(s.replace(run_size="full").replace(run_size="quick"), name) == quick
    kept = cls(**{name: 7})
    assert getattr(kept.replace(run_size="full"), name) == 7 and kept.replace(seed=2).set_fields >= {name}


def test_saved_settings_reload_as_they_ran(tmp_path):
    """settings.json names every field, so a saved quick run reloads with its sizes whatever its run_size says."""
    s = SFTSettings(learning_rate=1e-3)
    again = SFTSettings.from_json(s.to_json(tmp_path / "s.json"))
    assert again == s and again.train_sample_size == 2000
    assert again.replace(run_size="full").train_sample_size == 2000


def test_sft_variant_names_the_output_folder(tmp_path):
    s = SFTSettings(root=str(tmp_path))
    assert s.variant == "sft" and s.output_dir == tmp_path / "outputs" / "sft"
    second = s.replace(variant="sft-r16")
    assert second.output_dir == tmp_path / "outputs" / "sft-r16"
    assert DPOSettings(root=str(tmp_path), sft_adapter=str(second.output_dir)).sft_dir == second.output_dir
    for bad in ("base", "", "a/b"):
        with pytest.raises(ValueError, match="variant must be a folder name other than 'base'"):
            SFTSettings(variant=bad)
    assert field_of(SFTSettings, "variant").metadata["resume_free"] is True  # the folder is the variant
