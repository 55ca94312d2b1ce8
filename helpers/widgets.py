"""Notebook widgets (UI only): a settings form, browsers for records and preference pairs, a CoT inspector.

The form is generated from the settings' field metadata (`helpers.settings`): each field's control, label,
help and allowed values come from there, and every edit rebuilds the settings object, which checks itself.
A headless run edits the form as a learner would through ``$MCQ_FORM_EDITS`` (JSON: step -> field -> value;
`headless_edits`), so the notebooks hold no test hook.
Every widget renders plain HTML from the data it is given, so it also works headless (papermill, CI) where
nobody moves a slider: the first item is shown as it is built. Works under ipywidgets 7.7 (Colab) and 8.

    >>> form = SettingsForm(SFTSettings())          # doctest: +SKIP
    >>> display(form); settings = form.settings      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import pandas as pd

from helpers.answers import LETTERS, extract_answer
from helpers.fields import optional_type, parse_text
from helpers.metrics import FILTERS, inspector_filter, variant_order
from helpers.prompts import to_prompt_completion
from helpers.settings import Settings
from helpers.training import LossMask

_STYLE = {"description_width": "200px"}
_TIP = "tooltip" if int(W.__version__.split(".")[0]) >= 8 else "description_tooltip"  # renamed in ipywidgets 8
_LAYOUT = W.Layout(width="480px")
FORM_EDITS_ENV = "MCQ_FORM_EDITS"


def headless_edits(step: str) -> dict[str, Any]:
    """The edits a headless run (the smoke and demo pipelines) makes to a step's form: ``$MCQ_FORM_EDITS`` holds
    JSON ``{step: {field: value}}`` (steps as in `helpers.settings.Settings.STEP`); ``{}`` when unset."""
    raw = os.environ.get(FORM_EDITS_ENV, "").strip()
    if not raw:
        return {}
    try:
        edits = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"${FORM_EDITS_ENV} is not valid JSON ({e}): unset it or fix it") from None
    return dict(edits.get(step) or {})


# ---------------------------------------------------------------- settings form
def control(f: dataclasses.Field, hint: Any, value: Any) -> W.Widget:
    """One input widget for a settings field, chosen from its type and metadata; its help is the tooltip."""
    meta, (inner, optional) = f.metadata, optional_type(hint)
    common = {"description": f.name, _TIP: meta.get("help", ""), "style": _STYLE, "layout": _LAYOUT}
    if meta.get("labels"):  # e.g. bool | None: auto / 4-bit / full precision (by position: None is no value here)
        values = [v for v, _ in meta["labels"]]
        return W.Dropdown(
            options=[(label, i) for i, (_, label) in enumerate(meta["labels"])], value=values.index(value), **common
        )
    if meta.get("choices") and isinstance(value, tuple):
        return W.SelectMultiple(options=list(meta["choices"]), value=value, **common)
    if meta.get("choices"):
        return W.Dropdown(options=list(meta["choices"]), value=value, **common)
    if meta.get("suggestions"):
        return W.Combobox(options=list(meta["suggestions"]), value=value, ensure_option=False, **common)
    if inner is bool and not optional:
        return W.Checkbox(value=value, indent=False, **{k: v for k, v in common.items() if k != "style"})
    if inner is int and not optional:
        return W.IntText(value=value, **common)  # never clamps: a value out of range is shown as an error
    if inner is float and not optional:
        return W.FloatText(value=value, **common)
    text = "" if value is None else ", ".join(value) if isinstance(value, tuple) else str(value)
    return W.Text(value=text, placeholder="empty = None" if optional else "", **common)


def read_control(f: dataclasses.Field, hint: Any, widget: W.Widget) -> Any:
    """A control's value as the field's type (text is parsed as the command line parses it)."""
    if f.metadata.get("labels"):
        return f.metadata["labels"][widget.value][0]
    if isinstance(widget, W.Text) and not isinstance(widget, W.Combobox):
        return parse_text(f.name, hint, widget.value, f.metadata.get("labels"))
    return tuple(widget.value) if isinstance(widget.value, (list, tuple)) else widget.value


class SettingsForm(W.VBox):
    """A form with one control per settings field: the lesson's fields first, the rest under "More settings".

    Every edit rebuilds the settings from all controls, which checks them. An invalid value (wrong type, out of
    range) is shown under the form, and ``.settings`` then raises instead of handing on an older value. A size
    that ``run_size`` fills follows the run size until it is edited (or was set in the settings given): changing
    the run size updates those controls.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings, self._error, self._syncing = settings, "", False
        self._set = set(settings.set_fields)  # fields set by name or edited here: the run size leaves them alone
        self._fields = {f.name: f for f in dataclasses.fields(settings)}
        self._hints = type(settings).field_hints()
        lesson = [n for n in type(settings).LESSON if n in self._fields]
        more = [n for n in self._fields if n not in lesson]
        self.controls: dict[str, W.Widget] = {
            n: control(self._fields[n], self._hints[n], getattr(settings, n)) for n in lesson + more
        }
        for name, widget in self.controls.items():
            widget.observe(lambda change, name=name: self._changed(name), names="value")
        self.status = W.HTML()
        children: list[W.Widget] = [
            W.HTML(f"<b>{type(settings).__name__}</b> (hover a name for its help)"),
            *(self.controls[n] for n in lesson),
        ]
        if more:
            accordion = W.Accordion(children=[W.VBox([self.controls[n] for n in more])], selected_index=None)
            accordion.set_title(0, f"More settings ({len(more)})")
            children.append(accordion)
        super().__init__(children=[*children, self.status])
        self._show()
        edits = headless_edits(type(settings).STEP)
        if edits:
            print(f"{type(settings).__name__} form edited by ${FORM_EDITS_ENV}: {edits}")
            self.edit(**edits)

    def edit(self, **values: Any) -> SettingsForm:
        """Set controls as a learner would (a labelled control takes the field's value, e.g. ``quantize=False``);
        the settings are rebuilt and checked as after any edit. Headless runs and tests use it."""
        for name, value in values.items():
            self._put(name, value)
        return self

    def _put(self, name: str, value: Any) -> None:
        f, widget = self._fields[name], self.controls[name]
        if f.metadata.get("labels"):
            widget.value = [v for v, _ in f.metadata["labels"]].index(value)
        elif isinstance(widget, W.Text) and not isinstance(widget, W.Combobox):
            text = ", ".join(value) if isinstance(value, (tuple, list)) else "" if value is None else str(value)
            widget.value = text
        else:
            widget.value = value

    @property
    def widget(self) -> W.Widget:
        """The widget to display (the form itself)."""
        return self

    @property
    def settings(self) -> Settings:
        """The settings the form shows; ValueError while a control holds an invalid value."""
        if self._error:
            raise ValueError(
                f"the settings form shows an error: {self._error}. Fix that control, then run this cell again"
            )
        return self._settings

    def value(self) -> Settings:
        """Same as ``.settings``."""
        return self.settings

    @property
    def error(self) -> str:
        """The validation error shown under the form, or ""."""
        return self._error

    def _show(self) -> None:
        self.status.value = (
            f"<span style='color:#b00'>&#10007; {html.escape(self._error)}</span>"
            if self._error
            else "<span style='color:#080'>&#10003; settings valid</span>"
        )

    def _changed(self, name: str) -> None:
        if self._syncing:
            return
        self._set.add(name)
        cls = type(self._settings)
        follow = [n for n in cls.sized_fields() if n not in self._set]  # sizes the run size fills
        try:
            read = {n: read_control(self._fields[n], self._hints[n], w) for n, w in self.controls.items()}
            values = {n: v for n, v in read.items() if n not in follow}
            self._settings, self._error = cls(**values), ""
        except (ValueError, TypeError) as e:
            self._error = str(e)
        else:
            self._syncing = True
            try:
                for n in follow:  # show what the run size gave them
                    self._put(n, getattr(self._settings, n))
            finally:
                self._syncing = False
        self._show()


def settings_form(settings: Settings) -> SettingsForm:
    """A `SettingsForm` (an ipywidgets VBox) for any settings object; read ``.settings``."""
    return SettingsForm(settings)


# ---------------------------------------------------------------- small HTML pieces
_TEXT = "white-space:pre-wrap;overflow-wrap:break-word;word-break:normal;text-align:left;margin:2px 0"


def _pre(text: str, max_chars: int | None = None) -> str:
    if max_chars is not None and len(text) > max_chars:
        text = f"... [{len(text) - max_chars} characters cut] ...\n" + text[-max_chars:]
    return f"<pre style='{_TEXT}'>{html.escape(text)}</pre>"


def _columns(cells: Sequence[str]) -> str:
    """Side-by-side columns, left-aligned, that wrap onto new rows when narrow (never mid-word)."""
    style = "display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:14px;text-align:left"
    return (
        f"<div style='{style}'>"
        + "".join(f"<div style='border-left:3px solid #ddd;padding-left:8px;text-align:left'>{c}</div>" for c in cells)
        + "</div>"
    )


def _block(inner: str) -> str:
    """HTML for a widget pane at reading line height (ipywidgets 8's HTML widget sets 28 px lines)."""
    return f"<div style='line-height:1.4;text-align:left'>{inner}</div>"


def _choices_html(choices: Sequence[str], gold: str | None) -> str:
    items = []
    for letter, text in zip(LETTERS, choices):
        item = f"{letter}. {html.escape(text)}"
        items.append(f"<b style='color:#080'>{item} &#10003;</b>" if letter == gold else item)
    return "<br>".join(items)


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _browser(n: int, render: Callable[[int], str], label: str, extra: Sequence[W.Widget] = ()) -> W.VBox:
    """A slider over ``n`` items ("1 of n" shown beside it) and an HTML pane showing ``render(i)``."""
    if n == 0:
        return W.VBox([W.HTML(f"<i>no {label} to show</i>")])
    slider = W.IntSlider(value=1, min=1, max=n, description=label, continuous_update=False, readout=False)
    where, pane = W.HTML(f"1 of {n}"), W.HTML(_block(render(0)))

    def show(change: Mapping[str, Any]) -> None:
        where.value, pane.value = f"{change['new']} of {n}", _block(render(change["new"] - 1))

    slider.observe(show, names="value")
    return W.VBox([*extra, W.HBox([slider, where]), pane])


# ---------------------------------------------------------------- data, loss mask and pairs
def record_html(record: Mapping[str, Any], tokenizer: Any) -> str:
    """One record: question, lettered choices, gold, explanation, the exact prompt and target with token counts."""
    pc = to_prompt_completion(tokenizer, record)
    return (
        f"<b>{html.escape(record['question'])}</b> <small>(id {html.escape(str(record['id']))})</small><br>"
        f"{_choices_html(record['choices'], record['answer'])}<br>"
        f"<b>gold:</b> {record['answer']} &nbsp; <b>explanation:</b> {html.escape(record['explanation'] or '(none)')}"
        f"<br><b>prompt</b> ({_n_tokens(tokenizer, pc['prompt'])} tokens){_pre(pc['prompt'])}"
        f"<b>target</b> ({_n_tokens(tokenizer, pc['completion'])} tokens, the loss is computed on these)"
        f"{_pre(pc['completion'])}"
    )


def record_browser(dataset: Any, tokenizer: Any) -> W.VBox:
    """Slider over records (a `datasets.Dataset` or list of dicts), each shown by `record_html`."""
    return _browser(len(dataset), lambda i: record_html(dataset[int(i)], tokenizer), "record")


def loss_mask_html(mask: LossMask, tokenizer: Any) -> str:
    """A `helpers.training.LossMask`: masked tokens grey, trained tokens highlighted."""
    spans = []
    for tid, m in zip(mask.ids, mask.mask):
        text = html.escape(tokenizer.decode([tid], clean_up_tokenization_spaces=False)).replace("\n", "&#8629;<br>")
        spans.append(f"<span style='{'background:#cfc' if m else 'color:#999'}'>{text}</span>")
    trained = sum(mask.mask)
    return (
        f"<p><span style='color:#999'>grey: prompt, masked (label -100)</span> &nbsp; "
        f"<span style='background:#cfc'>green: completion, trained</span> &mdash; "
        f"{len(mask.ids) - trained} masked, {trained} trained</p>"
        f"<div style='font-family:monospace;font-size:90%;text-align:left'>{''.join(spans)}</div>"
    )


def pair_html(pair: Mapping[str, Any], prompt_chars: int = 400) -> str:
    """One preference pair: the end of its prompt, chosen vs rejected side by side, parsed letters, kind."""
    cells = [
        f"<b>{side}</b> (parsed: {extract_answer(pair[side])}){_pre(pair[side])}" for side in ("chosen", "rejected")
    ]
    return (
        f"<b>kind:</b> {html.escape(str(pair.get('kind', '?')))} &nbsp; <b>gold:</b> {pair.get('gold', '?')}"
        f" &nbsp; <small>id {html.escape(str(pair.get('id', '?')))}</small>"
        f"<details><summary>prompt ({len(pair['prompt'])} characters; click to open)</summary>"
        f"{_pre(pair['prompt'], prompt_chars)}</details>{_columns(cells)}"
    )


def pair_browser(pairs: Sequence[Mapping[str, Any]]) -> W.VBox:
    """Slider over preference pairs, each shown by `pair_html`."""
    return _browser(len(pairs), lambda i: pair_html(pairs[int(i)]), "pair")


# ---------------------------------------------------------------- answers side by side, CoT inspector
def _is_true(value: Any) -> bool:
    return bool(value) and not pd.isna(value)


def question_html(record: Mapping[str, Any], rows: pd.DataFrame) -> str:
    """A question, its choices and gold, and each variant's CoT output side by side (pipeline order)."""
    head = (
        f"<div style='text-align:left'><b>{html.escape(record['question'])}</b> "
        f"<small>(id {html.escape(str(record['id']))})</small><br>"
        f"{_choices_html(record['choices'], record['answer'])}<br><b>gold:</b> {record['answer']}</div>"
    )
    by_variant = {v: r for v, r in zip(rows["variant"], rows.to_dict("records"))}
    cells = []
    for v in variant_order(list(by_variant)):
        r = by_variant[v]
        mark = "&#10003;" if _is_true(r.get("correct")) else "&#10007;"
        parsed = r.get("parsed") if isinstance(r.get("parsed"), str) else None
        cells.append(f"<b>{html.escape(str(v))}</b>: parsed {parsed} {mark}{_pre(str(r.get('output', '')))}")
    return head + _columns(cells)


def compare_html(records: Sequence[Mapping[str, Any]], outputs_by_variant: Mapping[str, Sequence[str]]) -> str:
    """Questions with each variant's output side by side (``{"base": [...], "sft": [...]}``), parsed and marked."""
    parts = []
    for i, record in enumerate(records):
        rows = pd.DataFrame(
            [
                {
                    "variant": v,
                    "output": outs[i],
                    "parsed": extract_answer(outs[i]),
                    "correct": extract_answer(outs[i]) == record["answer"],
                }
                for v, outs in outputs_by_variant.items()
            ]
        )
        parts.append(question_html(record, rows))
    return "<hr>".join(parts)


def cot_inspector(records_df: pd.DataFrame, questions: Any, filters: Sequence[str] = FILTERS) -> W.VBox:
    """A filter dropdown and a slider over matching questions, the variants' CoT outputs side by side."""
    by_id = {str(r["id"]): r for r in questions}
    cot = records_df[records_df["mode"] == "cot"]
    dropdown = W.Dropdown(options=list(filters), value=list(filters)[0], description="show")
    body = W.VBox()

    def refresh(_change: Any = None) -> None:
        ids = [i for i in inspector_filter(records_df, dropdown.value) if i in by_id]
        count = W.HTML(f"{len(ids)} question(s) match <i>{html.escape(dropdown.value)}</i>")
        body.children = [
            count,
            _browser(len(ids), lambda k: question_html(by_id[ids[k]], cot[cot["id"] == ids[k]]), "question"),
        ]

    dropdown.observe(refresh, names="value")
    refresh()
    return W.VBox([dropdown, body])
