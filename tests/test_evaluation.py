"""Tests for helpers.evaluation (resumable records, the modes' runners, provenance) and helpers.plots."""

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
    evaluate_cloze,
    evaluate_cot,
    evaluate_cot_at_k,
    evaluate_letter,
    evaluate_letter_cyclic,
    letter_prompt,
    read_records,
    shard,
)
from helpers.generation import Generation  # noqa: E402
from helpers.metrics import letter_distribution, summarize  # noqa: E402
from helpers.plots import (  # noqa: E402
    accuracy_chart,
    answer_distribution,
    length_histograms,
    letter_chart,
    loss_curve,
    results_chart,
)
from helpers.scoring import letter_scores, rotations  # noqa: E402


def make_records(n: int) -> list[dict]:
    return [
        {
            "id": f"q{i}",
            "question": f"Question number {i}?" + " long" * (i % 4),
            "choices": [f"c{i}{x}" for x in LETTERS],
            "answer": LETTERS[i % 5],
        }
        for i in range(n)
    ]


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
    assert (r["variant"], r["mode"], r["parsed"], r["gold"], r["correct"], r["new_tokens"]) == (
        "base",
        "cot",
        "C",
        "C",
        True,
        7,
    )
    assert r["failure"] is None and r["detail"] is None
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
        f.write('{"id": "q2", "variant": "ba')  # a write killed halfway
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
    append_records(other, [{"id": "q0", "variant": "base", "mode": "cot", "prompt": "another model's prompt"}])
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


def test_letter_scores_batched_equal_one_by_one():
    model, tok = TinyLM(), CharTok()
    contexts = [letter_prompt(r) for r in make_records(4)]  # different lengths: left padding matters
    batched = letter_scores(model, tok, contexts, batch_size=3)
    for ctx, got in zip(contexts, batched):
        assert got == pytest.approx(brute_force(model, tok, ctx), abs=1e-5)


def test_evaluate_letter_records_and_resume(tmp_path):
    model, tok, recs, out = TinyLM(), CharTok(), make_records(7), tmp_path / "base-letter.jsonl"
    first = evaluate_letter(model, tok, recs[:3], "base", out, batch_size=2)
    result = evaluate_letter(model, tok, recs, "base", out, batch_size=2)
    assert result[:3] == first and len(lines(out)) == 7
    for r, rec in zip(result, recs):
        assert tuple(r) == RECORD_FIELDS
        assert r["mode"] == "letter" and r["parsed"] in LETTERS and r["output"] == r["parsed"]
        assert r["detail"]["acc"] == pytest.approx(brute_force(model, tok, letter_prompt(rec)), abs=1e-5)
        assert r["new_tokens"] == 0 and r["correct"] == (r["parsed"] == rec["answer"])
        scores = brute_force(model, tok, letter_prompt(rec))
        assert r["parsed"] == LETTERS[scores.index(max(scores))]


# ---------------------------------------------------------------- the other modes' records
def test_letter_cyclic_averages_each_choice_over_rotations(tmp_path):
    model, tok, recs = TinyLM(), CharTok(), make_records(3)
    result = evaluate_letter_cyclic(model, tok, recs, "sft", tmp_path / "sft-letter-cyclic.jsonl", batch_size=2)
    for r, rec in zip(result, recs):
        by_rotation = [brute_force(model, tok, letter_prompt(rec, rot)) for rot in rotations(rec["choices"])]
        # original choice c sits at position (c - r) % 5 in rotation r
        expected = [sum(by_rotation[k][(c - k) % 5] for k in range(5)) / 5 for c in range(5)]
        assert r["detail"]["acc"] == pytest.approx(expected, abs=1e-5)
        assert r["parsed"] == LETTERS[expected.index(max(expected))] and r["prompt"] == letter_prompt(rec)


def test_cloze_records_keep_both_picks(tmp_path):
    model, tok, recs = TinyLM(), CharTok(), make_records(4)
    recs[1]["choices"] = ["a", "much longer answer text", "mid size", "xy", "a b c"]
    result = evaluate_cloze(model, tok, recs, "base", tmp_path / "base-cloze.jsonl", batch_size=3)
    for r, rec in zip(result, recs):
        assert r["prompt"] == f"Question: {rec['question'].strip()}\nAnswer:"
        sums = [brute_force_one(model, tok, r["prompt"], " " + c) for c in rec["choices"]]
        assert r["detail"]["acc"] == pytest.approx(sums, abs=1e-5)
        norm = [x / len(c) for x, c in zip(sums, rec["choices"])]
        assert r["detail"]["acc_norm"] == pytest.approx(norm, abs=1e-5)
        assert r["parsed"] == LETTERS[norm.index(max(norm))]  # the headline is the length-normalised pick
    table = summarize(result)
    assert list(table["label"]) == ["cloze", "cloze (acc)"] and list(table["metric"]) == ["acc_norm", "acc"]


@torch.no_grad()
def brute_force_one(model, tok, context: str, continuation: str) -> float:
    ctx = tok([context])["input_ids"][0]
    ids = tok([context + continuation])["input_ids"][0]
    x = torch.tensor([ids])
    logp = model(x, torch.ones_like(x)).logits.log_softmax(-1)[0]
    return sum(float(logp[p - 1, ids[p]]) for p in range(len(ctx), len(ids)))


def test_cot_records_say_why_a_parse_failed(tmp_path, monkeypatch):
    outs = ["Because.\nAnswer: B", "It is a dog.\nAnswer:", "loop loop loop", "I think so"]
    tokens = [9, 8, 16, 5]

    def gen(model, tok, prompts, batch_size=32, **kwargs):
        assert kwargs["max_new_tokens"] == 16 and kwargs["temperature"] == 0.0
        yield list(range(len(prompts))), [[Generation(o, t)] for o, t in zip(outs, tokens)]

    monkeypatch.setattr(evaluation, "generate_all", gen)
    result = evaluate_cot(None, ChatTok(), make_records(4), "sft", tmp_path / "c.jsonl", max_new_tokens=16)
    assert [r["failure"] for r in result] == [None, "dangling_anchor", "out_of_tokens", "no_anchor"]
    assert [r["parsed"] for r in result] == ["B", None, None, None]


def test_cot_at_k_votes_and_keeps_the_samples(tmp_path, monkeypatch):
    samples = [
        ["Answer: C", "Answer: A", "Answer: A", "Answer: C", "no idea"],  # tie A/C: C was sampled first
        ["Answer:", "Answer:", "x", "Answer: F", "y"],
    ]  # no letter: the most frequent failure

    def gen(model, tok, prompts, batch_size=32, **kwargs):
        assert kwargs["num_return_sequences"] == 5 and kwargs["temperature"] == 0.5 and batch_size == 2
        yield list(range(len(prompts))), [[Generation(t, 4) for t in s] for s in samples]

    monkeypatch.setattr(evaluation, "generate_all", gen)
    result = evaluate_cot_at_k(
        None,
        ChatTok(),
        make_records(2),
        "sft",
        tmp_path / "k.jsonl",
        batch_size=10,
        max_new_tokens=64,
        k=5,
        temperature=0.5,
    )
    assert [r["parsed"] for r in result] == ["C", None]
    assert result[0]["detail"]["votes"] == ["C", "A", "A", "C", None] and result[0]["failure"] is None
    assert result[1]["failure"] == "dangling_anchor" and result[1]["mode"] == "cot@k"
    assert result[0]["output"].count(evaluation.SAMPLE_SEPARATOR) == 4


def test_records_made_under_other_settings_are_moved_aside(tmp_path, monkeypatch, capsys):
    from helpers.settings import EvalSettings

    s = EvalSettings(root=str(tmp_path), max_new_tokens=16)
    model = SimpleNamespace(dtype=torch.float32)
    out = evaluation.records_path(s, "base", "cot")
    monkeypatch.setattr(evaluation, "generate_all", fake_generate_all())
    evaluation.prepare_records_file(out, evaluation.records_provenance(s, "base", "cot", model, None))
    evaluate_cot(None, ChatTok(), make_records(3), "base", out)
    evaluation.prepare_records_file(out, evaluation.records_provenance(s, "base", "cot", model, None))
    assert len(lines(out)) == 3  # same settings: resumed
    other = evaluation.records_provenance(s.replace(max_new_tokens=32), "base", "cot", model, None)
    assert other["max_new_tokens"] == 32 and "batch_size" not in other
    evaluation.prepare_records_file(out, other)
    assert not out.exists() and len(lines(out.with_name(out.name + ".stale"))) == 3
    assert "max_new_tokens 16 -> 32" in capsys.readouterr().out


def test_every_registered_mode_has_a_runner_taking_its_settings():
    import inspect

    from helpers.eval_modes import MODES
    from helpers.settings import EvalSettings

    for mode in MODES.values():
        params = inspect.signature(getattr(evaluation, mode.runner)).parameters
        assert set(mode.params) <= set(params), mode.name
        assert all(hasattr(EvalSettings(), p) for p in mode.params), mode.name


# ---------------------------------------------------------------- plots
def _ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def _yticks(ax) -> list[str]:
    """Tick labels top to bottom (horizontal bars, y-axis inverted so the first variant is on top)."""
    assert ax.yaxis_inverted(), "the first variant belongs on top"
    return [t.get_text() for t in ax.get_yticklabels()]


def test_plots_return_figures_with_variants_in_pipeline_order():
    recs = [
        {
            "id": i,
            "variant": v,
            "mode": md,
            "parsed": "A" if i % 2 else "C",
            "gold": "A",
            "correct": (i + len(v)) % 3 == 0,
            "new_tokens": 5,
        }
        for v in ("dpo-on-policy", "sft", "base", "dpo-offline")
        for md in ("letter", "cot")
        for i in range(20)
    ]
    summary, dist = summarize(recs), letter_distribution(recs)
    order = ["base", "sft", "dpo-on-policy", "dpo-offline"]
    acc = accuracy_chart(summary)
    assert _ticks(acc.axes[0]) == order
    assert [t.get_text() for t in acc.axes[0].get_legend().get_texts()][1:] == ["cot", "letter"]  # registry order
    letters = letter_chart(dist)  # horizontal bars: variants on the y-axis, first on top
    assert len(letters.axes) == 2 and _yticks(letters.axes[0]) == order
    assert letters.axes[1].get_shared_y_axes().joined(*letters.axes), "one variant per row across the mode panels"
    both = results_chart(summary, dist)
    assert [_ticks(both.axes[0]), _yticks(both.axes[1])] == [order] * 2 and len(both.axes) == 3
    legends = both.legends + [leg for sub in both.subfigs for leg in sub.legends]
    assert "target: no letter above 30%" in [t.get_text() for leg in legends for t in leg.get_texts()]
    figs = [
        loss_curve([{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.5}, {"train_runtime": 3.0}]),
        loss_curve([{"step": 1, "loss": 1.0, "rewards/margins": 0.1}], keys=("loss", "rewards/margins")),
        length_histograms([100, 120, 130], [40, 60, 61]),
        answer_distribution({"train": list("ABCDEABCDE"), "sft": ["A", "A", None, "C"]}),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert len(figs[1].axes) == 2
    with pytest.raises(ValueError, match="eval_loss"):
        loss_curve([{"step": 1, "loss": 1.0}], keys=("eval_loss",))


def test_length_histograms_keep_the_data_wide_and_counts_whole():
    far = length_histograms([100, 110, 120], [40, 60, 62], max_length=512)
    total = far.axes[2]
    assert total.get_xlim()[1] < 300, "a max_length far beyond the data must not stretch the x-axis to it"
    assert "max_length 512 (cuts 0.0%) →" in total.get_title(loc="right")
    assert all(float(v).is_integer() for v in total.get_yticks()), "histogram counts are whole numbers"
    near = length_histograms([100, 110, 120], [40, 60, 62], max_length=170)
    assert near.axes[2].get_xlim()[1] >= 170 and "max_length 170 (cuts 33.3%)" in [
        t.get_text() for t in near.axes[2].get_legend().get_texts()
    ]


# ---------------------------------------------------------------- real model
@pytest.mark.slow
def test_evaluate_variants_on_smollm2(tmp_path, ecqa_dir, capsys, torch_threads):
    from helpers.evaluation import evaluate_variants, save_results
    from helpers.settings import EvalSettings

    modes = ("cot", "cloze", "letter", "letter-cyclic")
    s = EvalSettings(
        model="smollm2-135m",
        data_source=str(ecqa_dir),
        root=str(tmp_path),
        variants=("base", "sft"),
        modes=modes,
        sample_size=4,
        batch_size=2,
        max_new_tokens=16,
    )
    df = evaluate_variants(s)
    assert "skipping variant 'sft'" in capsys.readouterr().out
    assert list(df.columns) == list(RECORD_FIELDS) and len(df) == 16
    for mode in modes:
        stored = read_records(s.eval_dir / f"base-{mode}.jsonl")
        assert len(stored) == 4 and all(tuple(r) == RECORD_FIELDS for r in stored)
        assert (s.eval_dir / f"base-{mode}.jsonl.provenance.json").is_file()
    scored = df[df["mode"] != "cot"]
    assert scored["parsed"].isin(LETTERS).all() and (scored["new_tokens"] == 0).all()
    cot = df[df["mode"] == "cot"]
    assert cot["new_tokens"].between(1, 16).all()
    assert (cot["parsed"].isin(LETTERS) == cot["failure"].isna()).all()
    paths = save_results(df, s.eval_dir)
    assert all(p.is_file() for p in paths)
    assert pd.read_csv(paths[0])["label"].tolist() == ["cot", "cloze", "cloze (acc)", "letter", "letter-cyclic"]
