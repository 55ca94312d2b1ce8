"""Notebook widgets: a settings form, browsers for records and preference pairs, a CoT inspector.

Every widget renders plain HTML from the data it is given, so it also works headless (papermill,
CI) where nobody moves a slider: the first item is shown as it is built.

    >>> form = SettingsForm(SFTSettings())          # doctest: +SKIP
    >>> display(form); settings = form.settings      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import html
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W
import pandas as pd

from helpers.answers import LETTERS, extract_answer
from helpers.prompts import to_prompt_completion
from helpers.settings import PRECISIONS, Settings

# Shown first (the knobs a learner turns); every other field goes under "More settings".
LEARNER_FIELDS = ("model", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                  "gradient_accumulation_steps", "lora_r", "lora_alpha", "max_length")
CHOICES: dict[str, tuple[str, ...]] = {
    "precision": PRECISIONS,
    "target_modules": ("qkvo", "all-linear"),
    "report_to": ("auto", "none", "wandb"),
    "strategy": ("offline", "on_policy"),
    "when_all_agree": ("offline", "skip"),
    "optim": ("auto", "adamw_torch", "paged_adamw_8bit", "adamw_8bit", "adafactor"),
    "lr_scheduler_type": ("cosine", "linear", "constant", "constant_with_warmup"),
}
MULTI_CHOICES: dict[str, tuple[str, ...]] = {"modes": ("cot", "letter")}
MODEL_PRESETS = ("llama-3.2-1b", "llama-3.2-1b-ungated", "smollm2-135m")
FILTERS = ("all", "fixed by SFT", "broken by DPO", "all models wrong", "parse failures")
_STYLE = {"description_width": "220px"}
_LAYOUT = W.Layout(width="460px")


# ---------------------------------------------------------------- settings form
def _control(name: str, kind: Any, value: Any) -> W.Widget:
    """One input widget for a settings field of type ``kind`` holding ``value``."""
    common = dict(description=name, style=_STYLE, layout=_LAYOUT)
    if name == "model":
        return W.Combobox(value=value, options=MODEL_PRESETS, ensure_option=False, **common)
    if name == "learning_rate":
        return W.FloatLogSlider(value=value, base=10, min=-6, max=-2, step=0.1, readout_format=".1e", **common)
    if name in CHOICES:
        options = CHOICES[name] + (() if value in CHOICES[name] else (value,))
        return W.Dropdown(value=value, options=options, **common)
    if name in MULTI_CHOICES:
        return W.SelectMultiple(value=tuple(value), options=MULTI_CHOICES[name], **common)
    if kind is bool:
        return W.Checkbox(value=value, indent=False, description=name, layout=_LAYOUT)
    if kind is int:
        return W.IntText(value=value, **common)
    if kind is float:
        return W.FloatText(value=value, **common)
    if kind == (int | None):
        return W.Text(value="" if value is None else str(value), placeholder="empty = None", **common)
    if typing.get_origin(kind) is tuple:
        return W.Text(value=", ".join(value), placeholder="comma-separated", **common)
    return W.Text(value=str(value), **common)


def _parse(name: str, kind: Any, raw: Any) -> Any:
    """A widget's value as the field's type; ValueError naming the field when it cannot be."""
    if kind == (int | None) and isinstance(raw, str):
        raw = raw.strip()
        try:
            return None if raw == "" else int(raw)
        except ValueError:
            raise ValueError(f"{name} must be a whole number or empty (None), got {raw!r}") from None
    if typing.get_origin(kind) is tuple and isinstance(raw, str):
        return tuple(s.strip() for s in raw.split(",") if s.strip())
    if isinstance(raw, tuple):
        return tuple(raw)
    return raw


class SettingsForm(W.VBox):
    """A form with one widget per settings field; ``.settings`` is the last valid settings object.

    Every edit rebuilds the settings with ``settings.replace(...)``, which validates; an invalid
    value shows its error under the form and leaves ``.settings`` unchanged.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        hints = typing.get_type_hints(type(settings))
        names = [f.name for f in dataclasses.fields(settings)]
        ordered = [n for n in LEARNER_FIELDS if n in names] + [n for n in names if n not in LEARNER_FIELDS]
        self._kinds = {n: hints[n] for n in names}
        self.controls: dict[str, W.Widget] = {n: _control(n, hints[n], getattr(settings, n)) for n in ordered}
        for control in self.controls.values():
            control.observe(self._changed, names="value")
        self.status = W.HTML()
        first = [self.controls[n] for n in ordered if n in LEARNER_FIELDS]
        more = [self.controls[n] for n in ordered if n not in LEARNER_FIELDS]
        title = W.HTML(f"<b>{type(settings).__name__}</b>")
        children: list[W.Widget] = [title, *first]
        if more:
            children.append(W.Accordion(children=[W.VBox(more)], titles=("More settings",), selected_index=None))
        super().__init__(children=[*children, self.status])
        self._show_ok()

    @property
    def widget(self) -> W.Widget:
        """The widget to display (the form itself)."""
        return self

    @property
    def settings(self) -> Settings:
        """The current validated settings."""
        return self._settings

    def value(self) -> Settings:
        """Same as ``.settings``."""
        return self._settings

    @property
    def error(self) -> str:
        """The validation error shown under the form, or ""."""
        return self._error

    def _show_ok(self) -> None:
        self._error = ""
        self.status.value = "<span style='color:#080'>settings valid</span>"

    def _changed(self, _change: Mapping[str, Any]) -> None:
        try:
            values = {n: _parse(n, self._kinds[n], w.value) for n, w in self.controls.items()}
            self._settings = self._settings.replace(**values)
        except (ValueError, TypeError) as e:
            self._error = str(e)
            self.status.value = (f"<span style='color:#b00'>{html.escape(str(e))}</span>"
                                 " &mdash; keeping the last valid settings")
            return
        self._show_ok()


def settings_form(settings: Settings) -> SettingsForm:
    """A `SettingsForm` (an ipywidgets VBox) for any settings object; read ``.settings`` / ``.value()``."""
    return SettingsForm(settings)


# ---------------------------------------------------------------- small HTML pieces
def _pre(text: str, max_chars: int | None = None) -> str:
    if max_chars is not None and len(text) > max_chars:
        text = f"... [{len(text) - max_chars} characters cut] ...\n" + text[-max_chars:]
    return f"<pre style='white-space:pre-wrap;margin:2px 0'>{html.escape(text)}</pre>"


def _choices_html(choices: Sequence[str], gold: str | None) -> str:
    items = []
    for letter, text in zip(LETTERS, choices):
        item = f"{letter}. {html.escape(text)}"
        items.append(f"<b style='color:#080'>{item} &#10003;</b>" if letter == gold else item)
    return "<br>".join(items)


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _browser(n: int, render: Callable[[int], str], label: str, extra: Sequence[W.Widget] = ()) -> W.VBox:
    """A slider over ``n`` items and an HTML pane showing ``render(i)``."""
    if n == 0:
        return W.VBox([W.HTML(f"<i>no {label} to show</i>")])
    slider = W.IntSlider(value=0, min=0, max=n - 1, description=label, continuous_update=False)
    pane = W.HTML(render(0))
    slider.observe(lambda change: setattr(pane, "value", render(change["new"])), names="value")
    return W.VBox([*extra, slider, pane])


# ---------------------------------------------------------------- data and pairs
def record_html(record: Mapping[str, Any], tokenizer: Any) -> str:
    """One record: question, lettered choices, gold, explanation, the exact prompt and target with token counts."""
    pc = to_prompt_completion(tokenizer, record)
    return (
        f"<b>{html.escape(record['question'])}</b> <small>(id {html.escape(str(record['id']))})</small><br>"
        f"{_choices_html(record['choices'], record['answer'])}<br>"
        f"<b>gold:</b> {record['answer']} &nbsp; <b>explanation:</b> {html.escape(record['explanation'] or '(none)')}"
        f"<br><b>prompt</b> ({_n_tokens(tokenizer, pc['prompt'])} tokens){_pre(pc['prompt'])}"
        f"<b>target</b> ({_n_tokens(tokenizer, pc['completion'])} tokens, the loss is computed on these){_pre(pc['completion'])}"
    )


def record_browser(dataset: Any, tokenizer: Any) -> W.VBox:
    """Slider over records (a `datasets.Dataset` or list of dicts), each shown by `record_html`."""
    return _browser(len(dataset), lambda i: record_html(dataset[int(i)], tokenizer), "record")


def pair_html(pair: Mapping[str, Any], prompt_chars: int = 400) -> str:
    """One preference pair: the end of its prompt, chosen vs rejected side by side, parsed letters, kind."""
    cells = []
    for side in ("chosen", "rejected"):
        parsed = extract_answer(pair[side])
        cells.append(f"<td style='vertical-align:top;width:50%'><b>{side}</b> (parsed: {parsed}){_pre(pair[side])}</td>")
    return (
        f"<b>kind:</b> {html.escape(str(pair.get('kind', '?')))} &nbsp; <b>gold:</b> {pair.get('gold', '?')}"
        f" &nbsp; <small>id {html.escape(str(pair.get('id', '?')))}</small>"
        f"<details><summary>prompt ({len(pair['prompt'])} characters; click to open)</summary>"
        f"{_pre(pair['prompt'], prompt_chars)}</details>"
        f"<table style='width:100%;table-layout:fixed'><tr>{''.join(cells)}</tr></table>"
    )


def pair_browser(pairs: Sequence[Mapping[str, Any]]) -> W.VBox:
    """Slider over preference pairs, each shown by `pair_html`."""
    return _browser(len(pairs), lambda i: pair_html(pairs[int(i)]), "pair")


# ---------------------------------------------------------------- loss mask
@dataclass
class LossMask:
    """Token ids of prompt + completion and which of them carry the loss (1) or are masked (0)."""

    ids: list[int]
    mask: list[int]

    def html(self, tokenizer: Any) -> str:
        """Masked tokens greyed and struck through, trained tokens highlighted."""
        spans = []
        for tid, m in zip(self.ids, self.mask):
            text = html.escape(tokenizer.decode([tid], clean_up_tokenization_spaces=False)).replace("\n", "&#8629;<br>")
            style = "background:#cfc" if m else "color:#999"
            spans.append(f"<span style='{style}'>{text}</span>")
        trained = sum(self.mask)
        return (f"<p><span style='color:#999'>grey: prompt, masked (label -100)</span> &nbsp; "
                f"<span style='background:#cfc'>green: completion, trained</span> &mdash; "
                f"{len(self.ids) - trained} masked, {trained} trained</p>"
                f"<div style='font-family:monospace;font-size:90%'>{''.join(spans)}</div>")


def loss_mask(tokenizer: Any, prompt: str, completion: str, max_length: int | None = None) -> LossMask:
    """The completion mask TRL's SFTTrainer builds for a prompt/completion string pair.

    Mirrors TRL 1.16 (``completion_only_loss``, no packing): tokenize the prompt and prompt +
    completion the way the tokenizer does by default, the completion starts where the two token
    lists diverge, then both are cut to ``max_length`` (``truncation_mode="keep_start"``).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion)["input_ids"]
    n = next((i for i, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))
    mask = [0] * n + [1] * (len(ids) - n)
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return LossMask(list(ids), mask)


# ---------------------------------------------------------------- CoT inspector
def _is_true(value: Any) -> bool:
    return bool(value) and not pd.isna(value)


def inspector_filter(records_df: pd.DataFrame, name: str) -> list[str]:
    """Question ids (CoT mode only) that match a filter of `FILTERS`, in first-seen order.

    Models: "base", "sft" and every model whose name starts with "dpo". "broken by DPO" means the
    SFT model was right and at least one DPO model is wrong; filters needing a model absent from
    the records match nothing.
    """
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {FILTERS}")
    cot = records_df[records_df["mode"] == "cot"]
    if cot.empty:
        return []
    correct = cot.pivot_table(index="id", columns="model", values="correct", aggfunc="first", sort=False)
    correct = correct.map(_is_true).reindex(list(dict.fromkeys(cot["id"])))
    dpo = [m for m in correct.columns if str(m).startswith("dpo")]
    if name == "all":
        keep = pd.Series(True, index=correct.index)
    elif name == "fixed by SFT":
        if not {"base", "sft"} <= set(correct.columns):
            return []
        keep = ~correct["base"] & correct["sft"]
    elif name == "broken by DPO":
        if "sft" not in correct.columns or not dpo:
            return []
        keep = correct["sft"] & ~correct[dpo].all(axis=1)
    elif name == "all models wrong":
        keep = ~correct.any(axis=1)
    else:  # parse failures
        failed = cot.assign(failed=cot["parsed"].map(lambda p: p is None or pd.isna(p) or p == ""))
        ids = set(failed.loc[failed["failed"], "id"])
        keep = pd.Series([i in ids for i in correct.index], index=correct.index)
    return [str(i) for i in correct.index[keep.to_numpy(dtype=bool)]]


def _model_order(models: Sequence[str]) -> list[str]:
    rank = {"base": 0, "sft": 1}
    return sorted(models, key=lambda m: (rank.get(m, 2 if str(m).startswith("dpo") else 3), str(m)))


def question_html(record: Mapping[str, Any], rows: pd.DataFrame) -> str:
    """A validation question, its choices and gold, and each model's CoT output side by side."""
    head = (f"<b>{html.escape(record['question'])}</b> <small>(id {html.escape(str(record['id']))})</small><br>"
            f"{_choices_html(record['choices'], record['answer'])}<br><b>gold:</b> {record['answer']}")
    by_model = {m: r for m, r in zip(rows["model"], rows.to_dict("records"))}
    cells = []
    for m in _model_order(list(by_model)):
        r = by_model[m]
        mark = "&#10003;" if _is_true(r.get("correct")) else "&#10007;"
        parsed = r.get("parsed") if isinstance(r.get("parsed"), str) else None
        cells.append(f"<td style='vertical-align:top'><b>{html.escape(str(m))}</b>: parsed {parsed} {mark}"
                     f"{_pre(str(r.get('output', '')))}</td>")
    return f"{head}<table style='width:100%;table-layout:fixed'><tr>{''.join(cells)}</tr></table>"


def compare_html(records: Sequence[Mapping[str, Any]], outputs_by_model: Mapping[str, Sequence[str]]) -> str:
    """Questions with each model's output side by side (e.g. ``{"base": [...], "sft": [...]}``), parsed and marked."""
    parts = []
    for i, record in enumerate(records):
        rows = pd.DataFrame([
            {"model": m, "output": outs[i], "parsed": extract_answer(outs[i]),
             "correct": extract_answer(outs[i]) == record["answer"]}
            for m, outs in outputs_by_model.items()
        ])
        parts.append(question_html(record, rows))
    return "<hr>".join(parts)


def cot_inspector(records_df: pd.DataFrame, validation_records: Any, filters: Sequence[str] = FILTERS) -> W.VBox:
    """A filter dropdown and a slider over matching validation questions, models' CoT outputs side by side."""
    by_id = {str(r["id"]): r for r in validation_records}
    cot = records_df[records_df["mode"] == "cot"]
    dropdown = W.Dropdown(options=list(filters), value=list(filters)[0], description="show")
    body = W.VBox()

    def refresh(_change: Any = None) -> None:
        ids = [i for i in inspector_filter(records_df, dropdown.value) if i in by_id]
        count = W.HTML(f"{len(ids)} question(s) match <i>{html.escape(dropdown.value)}</i>")
        body.children = [count, _browser(len(ids), lambda k: question_html(by_id[ids[k]], cot[cot["id"] == ids[k]]),
                                         "question")]

    dropdown.observe(refresh, names="value")
    refresh()
    return W.VBox([dropdown, body])
