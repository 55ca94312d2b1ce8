"""Widgets: the settings form edits and validates, the inspector filters, the browsers build."""

from __future__ import annotations

import dataclasses
import json

import ipywidgets as W
import pandas as pd
import pytest

from helpers import metrics, training, widgets
from helpers.settings import DPOSettings, EvalSettings, PairSettings, SFTSettings


@pytest.mark.parametrize("cls", [SFTSettings, DPOSettings, PairSettings, EvalSettings])
def test_form_has_one_control_per_field_and_starts_valid(cls):
    settings = cls(model="smollm2-135m")
    form = widgets.settings_form(settings)
    assert isinstance(form, W.Widget) and form.widget is form
    assert set(form.controls) == {f.name for f in dataclasses.fields(settings)}
    assert form.settings == settings and form.value() == settings and form.error == ""


def test_controls_follow_the_field_types():
    """(The lesson's order and every control's round trip: test_settings_form.py.)"""
    form = widgets.SettingsForm(SFTSettings())
    c = form.controls
    assert isinstance(c["learning_rate"], W.FloatText)  # never a slider: a slider clamps what is typed
    assert isinstance(c["quantize"], W.Dropdown)  # three labelled choices, never a text box
    assert isinstance(c["model"], W.Combobox) and isinstance(c["max_steps"], W.IntText)
    assert isinstance(c["lora_r"], W.IntText) and isinstance(c["warmup_ratio"], W.FloatText)
    assert isinstance(c["gradient_checkpointing"], W.Checkbox)
    assert isinstance(c["precision"], W.Dropdown) and isinstance(c["target_modules"], W.Dropdown)
    assert isinstance(c["optim"], W.Dropdown) and isinstance(c["report_to"], W.Dropdown)
    assert isinstance(c["train_sample_size"], W.Text) and isinstance(c["root"], W.Text)
    assert isinstance(widgets.SettingsForm(PairSettings()).controls["strategy"], W.Dropdown)
    assert isinstance(widgets.SettingsForm(PairSettings()).controls["when_all_agree"], W.Dropdown)


def test_editing_a_widget_updates_settings():
    form = widgets.SettingsForm(SFTSettings())
    form.controls["learning_rate"].value = 1e-3
    form.controls["lora_r"].value = 8
    form.controls["gradient_checkpointing"].value = False
    form.controls["target_modules"].value = "all-linear"
    form.controls["train_sample_size"].value = "64"
    s = form.settings
    assert isinstance(s, SFTSettings)
    assert (s.learning_rate, s.lora_r, s.gradient_checkpointing, s.target_modules, s.train_sample_size) == (
        pytest.approx(1e-3),
        8,
        False,
        "all-linear",
        64,
    )
    form.controls["train_sample_size"].value = ""
    assert form.settings.train_sample_size is None


def test_eval_tuple_fields_round_trip():
    form = widgets.SettingsForm(EvalSettings())
    form.controls["variants"].value = "base, sft"
    form.controls["modes"].value = ("cot",)
    assert form.settings.variants == ("base", "sft") and form.settings.modes == ("cot",)


@pytest.mark.parametrize("field,bad", [("lora_r", 0), ("train_sample_size", "abc"), ("max_length", 10)])
def test_invalid_value_shows_error_and_blocks_settings(field, bad):
    """Changed on purpose: while a control holds an invalid value, ``.settings`` raises naming it (the form
    used to hand on the last valid settings, so a learner's typo trained with the old value)."""
    form = widgets.SettingsForm(SFTSettings())
    form.controls["lora_alpha"].value = 64
    before = form.settings
    form.controls[field].value = bad
    assert form.controls[field].value == bad, "the control changed what was typed"
    assert field in form.error and field in form.status.value
    with pytest.raises(ValueError, match=f"the settings form shows an error: {field}"):
        form.settings  # noqa: B018
    form.controls[field].value = {"lora_r": 4, "train_sample_size": "8", "max_length": 256}[field]
    assert form.error == "" and form.settings != before and form.settings.lora_alpha == 64


# ---------------------------------------------------------------- the run size in the form
def test_run_size_fills_the_sizes_left_unset_and_the_form_follows_it():
    """A size nobody set follows the run size: the control shows the new size when the run size changes."""
    form = widgets.SettingsForm(EvalSettings(model="smollm2-135m"))
    assert form.settings.sample_size == 300 and form.controls["sample_size"].value == "300"
    form.controls["run_size"].value = "full"
    assert form.settings.sample_size is None and form.controls["sample_size"].value == ""
    form.controls["run_size"].value = "quick"
    assert form.settings.sample_size == 300 and form.controls["sample_size"].value == "300"
    assert form.error == ""


@pytest.mark.parametrize("typed, value", [("120", 120), ("", None)])
def test_a_size_the_learner_typed_keeps_its_value_whatever_the_run_size(typed, value):
    form = widgets.SettingsForm(SFTSettings())
    form.controls["train_sample_size"].value = typed
    for run_size in ("full", "quick", "full"):
        form.controls["run_size"].value = run_size
        assert form.settings.train_sample_size == value and form.controls["train_sample_size"].value == typed


def test_a_size_set_in_the_settings_given_keeps_its_value():
    form = widgets.SettingsForm(PairSettings(train_sample_size=1000))  # set by name: not the run size's
    form.controls["run_size"].value = "full"
    form.controls["run_size"].value = "quick"
    assert form.settings.train_sample_size == 1000


def test_headless_runs_edit_the_form_through_the_environment(monkeypatch, capsys):
    """$MCQ_FORM_EDITS (step -> field -> value) edits a step's form as a learner would; the notebooks hold no hook."""
    edits = {"sft": {"lora_r": 8, "quantize": False, "train_sample_size": 12}, "eval": {"modes": ["cot"]}}
    monkeypatch.setenv(widgets.FORM_EDITS_ENV, json.dumps(edits))
    s = widgets.SettingsForm(SFTSettings()).settings
    assert (s.lora_r, s.quantize, s.train_sample_size) == (8, False, 12)
    assert "edited by $MCQ_FORM_EDITS" in capsys.readouterr().out
    assert widgets.SettingsForm(EvalSettings()).settings.modes == ("cot",)
    assert widgets.SettingsForm(DPOSettings()).settings == DPOSettings()  # no edits for this step
    monkeypatch.setenv(widgets.FORM_EDITS_ENV, "{oops")
    with pytest.raises(ValueError, match="MCQ_FORM_EDITS is not valid JSON"):
        widgets.SettingsForm(SFTSettings())


# ---------------------------------------------------------------- inspector_filter (helpers.metrics) and the inspector
def _records() -> pd.DataFrame:
    # q1: base wrong, sft right, dpo right      -> fixed by SFT
    # q2: base right, sft right, dpo wrong      -> broken by DPO
    # q3: all wrong, base unparsable            -> all variants wrong, parse failure
    # q4: base wrong, sft right, dpo wrong      -> fixed by SFT and broken by DPO
    table = {"q1": (0, 1, 1), "q2": (1, 1, 0), "q3": (0, 0, 0), "q4": (0, 1, 0)}
    rows = []
    for qid, flags in table.items():
        for variant, ok in zip(("base", "sft", "dpo"), flags):
            parsed = None if (qid, variant) == ("q3", "base") else ("A" if ok else "B")
            rows.append(
                {
                    "id": qid,
                    "variant": variant,
                    "mode": "cot",
                    "output": f"... Answer: {parsed}",
                    "parsed": parsed,
                    "gold": "A",
                    "correct": bool(ok),
                }
            )
    rows.append(
        {"id": "q9", "variant": "base", "mode": "letter", "output": "", "parsed": None, "gold": "A", "correct": False}
    )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("all", ["q1", "q2", "q3", "q4"]),
        ("fixed by SFT", ["q1", "q4"]),
        ("broken by DPO", ["q2", "q4"]),
        ("all variants wrong", ["q3"]),
        ("parse failures", ["q3"]),
    ],
)
def test_inspector_filter(name, expected):
    assert metrics.inspector_filter(_records(), name) == expected


def test_inspector_filter_any_dpo_variant_and_missing_variants():
    df = _records()
    renamed = df.assign(variant=df["variant"].replace({"dpo": "dpo-offline"}))
    assert metrics.inspector_filter(renamed, "broken by DPO") == ["q2", "q4"]
    no_dpo = df[df["variant"] != "dpo"]
    assert metrics.inspector_filter(no_dpo, "broken by DPO") == []
    assert metrics.inspector_filter(df[df["variant"] != "base"], "fixed by SFT") == []
    with pytest.raises(ValueError, match="unknown filter"):
        metrics.inspector_filter(df, "best")


def test_cot_inspector_builds_and_switches_filter():
    df = _records()
    validation = [
        {"id": q, "question": f"question {q}?", "choices": list("vwxyz"), "answer": "A"}
        for q in ("q1", "q2", "q3", "q4")
    ]
    box = widgets.cot_inspector(df, validation, metrics.FILTERS)
    dropdown, body = box.children
    assert "4 question(s)" in body.children[0].value
    dropdown.value = "all variants wrong"
    assert "1 question(s)" in body.children[0].value
    pane = body.children[1].children[-1]
    assert "question q3?" in pane.value and "<b>base</b>" in pane.value and "<b>dpo</b>" in pane.value


# ---------------------------------------------------------------- browsers (real tokenizer)
RECORDS = [
    {
        "id": f"r{i}",
        "question": f"Where would you find item {i}?",
        "choices": ["sea", "tree", "car", "sky", "shoe"],
        "answer": "ABC"[i],
        "explanation": f"Item {i} lives there. Other places are wrong.",
        "positives": [],
        "negatives": [],
        "concept": "item",
    }
    for i in range(3)
]


@pytest.mark.slow
def test_record_browser_shows_prompt_target_and_counts(smol_tokenizer):
    box = widgets.record_browser(RECORDS, smol_tokenizer)
    row, pane = box.children
    slider, where = row.children  # the slider and "i of n" beside it
    assert slider.min == 1 and slider.max == 3 and where.value == "1 of 3"
    assert "item 0" in pane.value and "tokens" in pane.value and "Answer: A" in pane.value
    slider.value = 3
    assert where.value == "3 of 3"
    assert "item 2" in pane.value and "Answer: C" in pane.value


@pytest.mark.slow
def test_pair_browser_shows_parsed_letters(smol_tokenizer):
    from helpers.prompts import render_completion, render_prompt

    pairs = [
        {
            "id": r["id"],
            "prompt": render_prompt(smol_tokenizer, r),
            "gold": r["answer"],
            "kind": "test",
            "chosen": render_completion(smol_tokenizer, r, f"Good.\nAnswer: {r['answer']}"),
            "rejected": render_completion(smol_tokenizer, r, "Bad.\nAnswer: E"),
        }
        for r in RECORDS
    ]
    row, pane = widgets.pair_browser(pairs).children
    slider = row.children[0]
    assert "parsed: A" in pane.value and "parsed: E" in pane.value and "kind:</b> test" in pane.value
    slider.value = 2
    assert "parsed: B" in pane.value


@pytest.mark.slow
def test_loss_mask_trains_the_completion_through_eos(smol_tokenizer):
    from helpers.prompts import to_prompt_completion

    pc = to_prompt_completion(smol_tokenizer, RECORDS[0])
    m = training.loss_mask(smol_tokenizer, pc["prompt"], pc["completion"])
    n_prompt = len(smol_tokenizer(pc["prompt"])["input_ids"])
    assert m.mask == [0] * n_prompt + [1] * (len(m.ids) - n_prompt)
    assert m.ids[-1] == smol_tokenizer.eos_token_id
    assert "Answer: A" in smol_tokenizer.decode([t for t, k in zip(m.ids, m.mask) if k])
    assert training.loss_mask(smol_tokenizer, pc["prompt"], pc["completion"], max_length=10).mask == [0] * 10
    page = widgets.loss_mask_html(m, smol_tokenizer)
    assert f"{n_prompt} masked, {len(m.ids) - n_prompt} trained" in page


def test_empty_browser_says_so():
    assert "no pair" in widgets.pair_browser([]).children[0].value


def test_compare_html_marks_parsed_answers():
    record = {"id": "q1", "question": "Where?", "choices": list("vwxyz"), "answer": "B"}
    page = widgets.compare_html([record], {"base": ["no idea"], "sft": ["Because.\nAnswer: B"]})
    assert (
        "parsed None &#10007;" in page
        and "parsed B &#10003;" in page
        and page.index("<b>base</b>") < page.index("<b>sft</b>")
    )


@pytest.mark.slow
def test_loss_mask_matches_what_sft_trainer_trains(smol_tokenizer, smol_model, tmp_path):
    """The notebook's loss-mask view must be what TRL really trains on (guards against TRL changes)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from helpers.prompts import to_prompt_completion

    s = SFTSettings(model="smollm2-135m", root=str(tmp_path), max_steps=1, max_length=512, report_to="none")
    trainer = SFTTrainer(
        model=smol_model(),
        args=training.sft_config(s, eos_token=smol_tokenizer.eos_token),
        train_dataset=training.sft_dataset(smol_tokenizer, Dataset.from_list(RECORDS)),
        processing_class=smol_tokenizer,
        peft_config=training.lora_config(s),
    )
    for i, record in enumerate(RECORDS):
        row = trainer.train_dataset[i]
        pc = to_prompt_completion(smol_tokenizer, record)
        m = training.loss_mask(smol_tokenizer, pc["prompt"], pc["completion"], max_length=s.max_length)
        assert row["input_ids"] == m.ids
        assert [label != -100 for label in row["labels"]] == [bool(k) for k in m.mask]
