"""Tests for helpers.evaluation (resumable JSONL records, letter scoring) and helpers.plots."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers import evaluation  # noqa: E402
from helpers.answers import LETTERS  # noqa: E402
from helpers.evaluation import (  # noqa: E402
    RECORD_FIELDS,
    append_records,
    evaluate_cot,
    evaluate_letter,
    letter_logprobs,
    letter_prompt,
    read_records,
    shard,
)
from helpers.generation import Generation  # noqa: E402
from helpers.metrics import summarize  # noqa: E402
from helpers.plots import accuracy_chart, answer_distribution, length_histograms, loss_curve  # noqa: E402


def make_records(n: int) -> list[dict]:
    return [{"id": f"q{i}", "question": f"Question number {i}?" + " long" * (i % 4),
             "choices": [f"c{i}{x}" for x in LETTERS], "answer": LETTERS[i % 5]} for i in range(n)]


class ChatTok:
    """Just enough tokenizer for render_prompt."""

    chat_template = "fake"

    def apply_chat_template(self, msgs, tokenize=False, add_generation_prompt=True, date_string=None):
        return "|".join(m["content"] for m in msgs) + ("<assistant>" if add_generation_prompt else "")


def fake_generate_all(fail_after: int | None = None, seen: list | None = None):
    """A stand-in for generate_all: answers "C" (in batches of 3), optionally dying after some batches."""

    def gen(model, tok, prompts, batch_size=32, **kwargs):
        if seen is not None:
            seen.extend(prompts)
        for b, start in enumerate(range(0, len(prompts), 3)):
            if fail_after is not None and b == fail_after:
                raise RuntimeError("disconnected")
            idx = list(range(start, min(start + 3, len(prompts))))
            yield idx, [[Generation("Because.\nAnswer: C", 7)] for _ in idx]

    return gen


def lines(path) -> list[str]:
    return path.read_text().splitlines()


# ---------------------------------------------------------------- resume / JSONL
def test_cot_resume_after_interrupt_gives_one_record_per_question(tmp_path, monkeypatch):
    recs, out = make_records(10), tmp_path / "base-cot.jsonl"
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all(fail_after=2))
    with pytest.raises(RuntimeError, match="disconnected"):
        evaluate_cot(None, ChatTok(), recs, "base", out, batch_size=3)
    assert len(lines(out)) == 6  # two finished batches were saved

    seen: list[str] = []
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all(seen=seen))
    result = evaluate_cot(None, ChatTok(), recs, "base", out, batch_size=3)
    assert len(seen) == 4  # only the unfinished questions were generated again
    assert [r["id"] for r in result] == [r["id"] for r in recs]  # input order
    stored = read_records(out)
    assert sorted(r["id"] for r in stored) == sorted(r["id"] for r in recs)
    assert len(stored) == len(recs)
    r = result[2]
    assert set(r) == set(RECORD_FIELDS)
    assert (r["model"], r["mode"], r["parsed"], r["gold"], r["correct"], r["new_tokens"]) == ("base", "cot", "C", "C", True, 7)
    assert result[0]["correct"] is False


def test_rerun_of_finished_file_generates_nothing(tmp_path, monkeypatch):
    recs, out = make_records(4), tmp_path / "x.jsonl"
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all())
    first = evaluate_cot(None, ChatTok(), recs, "sft", out)
    seen: list[str] = []
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all(seen=seen))
    assert evaluate_cot(None, ChatTok(), recs, "sft", out) == first
    assert seen == [] and len(lines(out)) == 4


def test_truncated_last_line_is_repaired(tmp_path, monkeypatch):
    recs, out = make_records(5), tmp_path / "base-cot.jsonl"
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all())
    evaluate_cot(None, ChatTok(), recs[:2], "base", out)
    with open(out, "a") as f:
        f.write('{"id": "q2", "model": "ba')  # a write killed halfway
    assert [r["id"] for r in read_records(out)] == ["q0", "q1"]
    result = evaluate_cot(None, ChatTok(), recs, "base", out)
    assert [r["id"] for r in result] == [r["id"] for r in recs]
    assert [json.loads(line)["id"] for line in lines(out)].count("q2") == 1
    assert len(lines(out)) == 5


def test_corrupt_middle_line_and_foreign_records_raise(tmp_path, monkeypatch):
    out = tmp_path / "bad.jsonl"
    out.write_text('{"id": "q0"}\nnot json\n{"id": "q1"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_records(out)
    recs, other = make_records(3), tmp_path / "base-cot.jsonl"
    append_records(other, [{"id": "q0", "model": "base", "mode": "cot", "prompt": "another model's prompt"}])
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all())
    with pytest.raises(ValueError, match="another run"):
        evaluate_cot(None, ChatTok(), recs, "base", other)


def test_duplicate_ids_are_refused(tmp_path):
    recs = make_records(2) + make_records(1)
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_cot(None, ChatTok(), recs, "base", tmp_path / "d.jsonl")


def test_shard_partitions_records():
    items = list(range(10))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts[0] == [0, 3, 6, 9] and parts[2] == [2, 5, 8]
    assert sorted(sum(parts, [])) == items
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def test_validation_sample_is_seeded_and_paths_name_the_split(tmp_path):
    from datasets import Dataset, DatasetDict

    from helpers.evaluation import records_path, validation_records
    from helpers.settings import EvalSettings

    data = DatasetDict(validation=Dataset.from_list(make_records(20)))
    s = EvalSettings(root=str(tmp_path), sample_size=5)
    ids = [r["id"] for r in validation_records(s, data)]
    assert len(ids) == 5 and ids == [r["id"] for r in validation_records(s, data)]
    assert ids != [f"q{i}" for i in range(5)]  # shuffled, not the first five
    assert len(validation_records(s.replace(sample_size=None), data)) == 20
    assert records_path(s, "sft", "cot") == tmp_path / "eval" / "sft-cot.jsonl"
    held = s.replace(split="holdout", holdout_size=10)
    assert records_path(held, "sft", "cot").name == "sft-cot-holdout.jsonl"
    with pytest.raises(ValueError, match="holdout"):
        validation_records(held, data)


# ---------------------------------------------------------------- letter mode
def test_letter_prompt_matches_lm_eval_commonsense_qa():
    rec = {"question": " Where do fish live? ", "choices": ["sea", "tree", "car", "sky", "shoe"]}
    assert letter_prompt(rec) == "Question: Where do fish live?\nA. sea\nB. tree\nC. car\nD. sky\nE. shoe\nAnswer:"


class CharTok:
    """Character-level tokenizer: " A" is two tokens, so the multi-token path is exercised."""

    pad_token_id = 0

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) % 128 or 1 for c in t] for t in texts]}


class TinyLM(torch.nn.Module):
    """Causal LM whose state is the running mean of embeddings: padding must be masked to match."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.head = torch.nn.Embedding(128, 16), torch.nn.Linear(16, 128)

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=0):
        m = attention_mask.unsqueeze(-1).float()
        h = (self.emb(input_ids) * m).cumsum(1) / m.cumsum(1).clamp(min=1)
        logits = self.head(torch.tanh(h))
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


@torch.no_grad()
def brute_force(model, tok, context: str) -> list[float]:
    """Log-likelihood of each " X", one unpadded sequence at a time."""
    ctx = tok([context])["input_ids"][0]
    scores = []
    for letter in LETTERS:
        ids = tok([context + " " + letter])["input_ids"][0]
        x = torch.tensor([ids])
        logp = model(x, torch.ones_like(x)).logits.log_softmax(-1)[0]
        scores.append(sum(float(logp[p - 1, ids[p]]) for p in range(len(ctx), len(ids))))
    return scores


def test_letter_logprobs_batched_equal_one_by_one():
    model, tok = TinyLM(), CharTok()
    contexts = [letter_prompt(r) for r in make_records(4)]  # different lengths: left padding matters
    batched = letter_logprobs(model, tok, contexts)
    for ctx, got in zip(contexts, batched):
        assert got == pytest.approx(brute_force(model, tok, ctx), abs=1e-5)


def test_evaluate_letter_records_and_resume(tmp_path):
    model, tok, recs, out = TinyLM(), CharTok(), make_records(7), tmp_path / "base-letter.jsonl"
    first = evaluate_letter(model, tok, recs[:3], "base", out, batch_size=2)
    result = evaluate_letter(model, tok, recs, "base", out, batch_size=2)
    assert result[:3] == first and len(lines(out)) == 7
    for r, rec in zip(result, recs):
        assert set(r) == set(RECORD_FIELDS)
        assert r["mode"] == "letter" and r["parsed"] in LETTERS and r["output"] == r["parsed"]
        assert r["new_tokens"] == 0 and r["correct"] == (r["parsed"] == rec["answer"])
        scores = brute_force(model, tok, letter_prompt(rec))
        assert r["parsed"] == LETTERS[scores.index(max(scores))]


# ---------------------------------------------------------------- plots
def test_plots_return_figures():
    recs = [{"id": i, "model": m, "mode": md, "parsed": "A", "correct": (i + len(m)) % 3 == 0, "new_tokens": 5}
            for m in ("base", "sft") for md in ("cot", "letter") for i in range(20)]
    figs = [
        accuracy_chart(summarize(recs)),
        loss_curve([{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.5}, {"train_runtime": 3.0}]),
        loss_curve([{"step": 1, "loss": 1.0, "rewards/margins": 0.1}], keys=("loss", "rewards/margins")),
        length_histograms([100, 120, 130], [40, 60, 61]),
        answer_distribution({"train": list("ABCDEABCDE"), "sft": ["A", "A", None, "C"]}),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert len(figs[2].axes) == 2
    with pytest.raises(ValueError, match="eval_loss"):
        loss_curve([{"step": 1, "loss": 1.0}], keys=("eval_loss",))


# ---------------------------------------------------------------- real model
@pytest.mark.slow
def test_evaluate_stages_on_smollm2(tmp_path, ecqa_dir, capsys):
    from helpers.evaluation import evaluate_stages, save_results
    from helpers.settings import EvalSettings

    s = EvalSettings(model="smollm2-135m", data_source=str(ecqa_dir), root=str(tmp_path), stages=("base", "sft"),
                     sample_size=6, batch_size=3, max_new_tokens=24)
    df = evaluate_stages(s)
    assert "skipping stage 'sft'" in capsys.readouterr().out
    assert list(df.columns) == list(RECORD_FIELDS) and len(df) == 12
    for mode in ("cot", "letter"):
        stored = read_records(s.eval_dir / f"base-{mode}.jsonl")
        assert len(stored) == 6 and all(set(r) == set(RECORD_FIELDS) for r in stored)
    letter = df[df["mode"] == "letter"]
    assert letter["parsed"].isin(LETTERS).all()
    assert (df[df["mode"] == "cot"]["new_tokens"].between(1, 24)).all()
    assert set(df[df["mode"] == "cot"]["id"]) == set(letter["id"])
    paths = save_results(df, s.eval_dir)
    assert all(p.is_file() for p in paths)
    assert pd.read_csv(paths[0])["n"].tolist() == [6, 6]
