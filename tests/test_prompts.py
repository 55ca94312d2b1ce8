"""Tests for helpers.prompts with SmolLM2's real tokenizer and a Llama-3.2-style tokenizer built here.

The Llama-3.2 weights and tokenizer are gated and the Hub is out of reach in tests, so the
Llama-style tokenizer is SmolLM2's vocabulary plus Llama's special tokens, its bos-adding
post-processor and a copy of Llama-3.2-Instruct's chat template (the tool branches left out).
What matters to the prompt format -- the bos the template writes, the date stamp, the headers,
``<|eot_id|>`` as eos -- is all there.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pytest
from tokenizers import Regex, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.utils import chat_template_utils

from helpers import models, prompts
from helpers.answers import extract_answer

# Llama-3.2-Instruct's chat template, verbatim except the custom-tools / ipython branches.
LLAMA32_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
# Llama-3's pre-tokenizer split: "\n\n" after a header stays one piece whatever follows it.
LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA_BOS = "<|begin_of_text|>"
LLAMA_SPECIALS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"]
ASSISTANT_HEADER = {"smollm2": "<|im_start|>assistant\n", "llama": "<|start_header_id|>assistant<|end_header_id|>\n\n"}


@pytest.fixture(scope="module")
def llama_tokenizer(tmp_path_factory, smol_tokenizer):
    """A Llama-3.2-style tokenizer, saved as a model folder and loaded through `models.load_tokenizer`."""
    smol_folder, _ = models.resolve("smollm2-135m")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(smol_folder) / "tokenizer.json"))
    tok.add_special_tokens({"bos_token": LLAMA_BOS, "additional_special_tokens": LLAMA_SPECIALS})
    tok.eos_token, tok.pad_token = "<|eot_id|>", "<|finetune_right_pad_id|>"
    # like Llama-3's tokenizer.json: its pre-tokenizer, and <|begin_of_text|> in front of every encoded text
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{LLAMA_BOS} $A", pair=f"{LLAMA_BOS} $A $B:1", special_tokens=[(LLAMA_BOS, tok.bos_token_id)]
    )
    tok.chat_template = LLAMA32_TEMPLATE
    assert tok("hi")["input_ids"][0] == tok.bos_token_id  # the post-processor is in place
    folder = tmp_path_factory.mktemp("llama-style")
    tok.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return models.load_tokenizer(str(folder))


@pytest.fixture(params=["smollm2", "llama"])
def tok_kind(request, smol_tokenizer, llama_tokenizer):
    """(name, tokenizer) for each chat format."""
    return request.param, {"smollm2": smol_tokenizer, "llama": llama_tokenizer}[request.param]


@pytest.fixture(scope="module")
def records(ecqa_loaded):
    """A few real train records (with explanations)."""
    data, _ = ecqa_loaded
    return [data["train"][i] for i in range(0, 400, 50)]


def full_conversation(tok, record) -> str:
    """The chat template's own rendering of system + user + assistant target."""
    msgs = prompts.messages(record["question"], record["choices"])
    msgs.append({"role": "assistant", "content": prompts.target_text(record["explanation"], record["answer"])})
    return tok.apply_chat_template(msgs, tokenize=False, date_string=prompts.FIXED_DATE)


# ---------------------------------------------------------------- pure text


def test_user_message_layout():
    text = prompts.user_message("Where do fish live?", ["sea", "tree", "car", "sky", "shoe"])
    assert text.splitlines() == [
        "Question: Where do fish live?",
        "",
        "Choices:",
        "A. sea",
        "B. tree",
        "C. car",
        "D. sky",
        "E. shoe",
        "",
        prompts.INSTRUCTION,
    ]


def test_user_message_needs_five_choices():
    with pytest.raises(ValueError, match="expected 5 choices, got 4"):
        prompts.user_message("q", ["a", "b", "c", "d"])


def test_target_text_ends_with_answer_line():
    assert prompts.target_text("  Fish swim in water.\n", "C") == "Fish swim in water.\nAnswer: C"


def test_target_text_parses_to_gold_letter_for_every_real_record(ecqa_loaded):
    data, _ = ecqa_loaded
    wrong = [
        r["id"]
        for split in ("train", "validation")
        for r in data[split]
        if r["explanation"] and extract_answer(prompts.target_text(r["explanation"], r["answer"])) != r["answer"]
    ]
    assert wrong == []


# ---------------------------------------------------------------- rendered with both chat templates


def test_prompt_ends_with_assistant_header(tok_kind, records):
    kind, tok = tok_kind
    for rec in records:
        prompt = prompts.render_prompt(tok, rec)
        assert prompt.endswith(ASSISTANT_HEADER[kind])
        assert prompts.SYSTEM_PROMPT in prompt and prompts.user_message(rec["question"], rec["choices"]) in prompt


def test_completion_ends_with_eos_after_answer_line(tok_kind, records):
    _, tok = tok_kind
    for rec in records:
        completion = prompts.render_completion(tok, rec, prompts.target_text(rec["explanation"], rec["answer"]))
        assert completion.endswith(tok.eos_token)
        assert completion.count(tok.eos_token) == 1
        body = completion[: -len(tok.eos_token)]
        assert body.splitlines()[-1] == f"Answer: {rec['answer']}"
        assert extract_answer(completion) == rec["answer"]


def test_prompt_plus_completion_is_the_template_conversation(tok_kind, records):
    _, tok = tok_kind
    for rec in records:
        pc = prompts.to_prompt_completion(tok, rec)
        full = full_conversation(tok, rec)
        assert pc["prompt"] + pc["completion"] == full[: full.rindex(tok.eos_token) + len(tok.eos_token)]


def test_tokenized_prompt_is_a_prefix(tok_kind, records):
    """TRL tokenizes prompt and prompt+completion separately; the prompt's tokens must be a prefix."""
    _, tok = tok_kind
    for rec in records:
        pc = prompts.to_prompt_completion(tok, rec)
        for special in (False, True):  # True: what trl.data_utils._tokenize does for string data
            p_ids = tok(pc["prompt"], add_special_tokens=special)["input_ids"]
            pc_ids = tok(pc["prompt"] + pc["completion"], add_special_tokens=special)["input_ids"]
            assert pc_ids[: len(p_ids)] == p_ids
            assert pc_ids[-1] == tok.eos_token_id
            assert len(pc_ids) > len(p_ids)


def test_llama_prompt_has_a_single_bos(llama_tokenizer, records):
    """The template writes <|begin_of_text|>; tokenizing with the defaults (as TRL does) must not add a second."""
    tok = llama_tokenizer
    prompt = prompts.render_prompt(tok, records[0])
    assert prompt.startswith(LLAMA_BOS)
    for special in (False, True):
        ids = tok(prompt, add_special_tokens=special)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id, f"add_special_tokens={special}"
    assert (
        tok(prompt)["input_ids"]
        == tok.apply_chat_template(
            prompts.messages(records[0]["question"], records[0]["choices"]),
            add_generation_prompt=True,
            date_string=prompts.FIXED_DATE,
            return_dict=True,
        )["input_ids"]
    )


class _Clock:
    """Stands in for `datetime` inside transformers' chat templates: `now()` is a chosen day."""

    def __init__(self, day: datetime) -> None:
        self.day = day

    def now(self, tz=None) -> datetime:  # noqa: ANN001
        return self.day


def test_llama_prompt_date_is_fixed_not_today(llama_tokenizer, records, monkeypatch):
    tok, rec = llama_tokenizer, records[0]
    rendered = []
    for day in (datetime(2031, 1, 2), datetime(2032, 3, 4)):
        monkeypatch.setattr(chat_template_utils, "datetime", _Clock(day))
        # the template really does stamp "today" when no date is passed ...
        today = tok.apply_chat_template(
            prompts.messages(rec["question"], rec["choices"]), tokenize=False, add_generation_prompt=True
        )
        assert f"Today Date: {day.strftime('%d %b %Y')}\n" in today
        rendered.append(prompts.render_prompt(tok, rec))
    # ... but our prompt carries the fixed date whatever the day
    assert "Cutting Knowledge Date: December 2023\n" in rendered[0]
    assert f"Today Date: {prompts.FIXED_DATE}\n" in rendered[0]
    assert rendered[0] == rendered[1]


def test_smollm2_prompt_uses_our_system_message(smol_tokenizer, records):
    prompt = prompts.render_prompt(smol_tokenizer, records[0])
    assert prompt.startswith(f"<|im_start|>system\n{prompts.SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert "SmolLM" not in prompt  # the template's default system message is replaced


# ---------------------------------------------------------------- clear errors


def test_tokenizer_without_chat_template_is_refused(smol_tokenizer, records):
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template: use an Instruct model"):
        prompts.render_prompt(tok, records[0])


def test_eos_that_does_not_end_the_turn_is_refused(smol_tokenizer, records):
    tok = copy.deepcopy(smol_tokenizer)
    tok.eos_token = "<|endoftext|>"  # the GGUF's eos: not what closes an assistant turn
    with pytest.raises(ValueError, match="does not close the assistant turn.*load_tokenizer"):
        prompts.render_completion(tok, records[0], "Because.\nAnswer: A")
