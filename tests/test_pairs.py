"""Tests for helpers.pairs: offline and on-policy pairs, checks, resumable sampling, JSONL I/O."""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from helpers import pairs as P
from helpers.answers import LETTERS, extract_answer
from helpers.data import load_ecqa
from helpers.generation import Generation
from helpers.prompts import render_completion, render_prompt, target_text
from helpers.settings import PairSettings


@pytest.fixture(scope="module")
def tok(smol_tokenizer):
    return smol_tokenizer


@pytest.fixture(scope="module")
def records(ecqa_dir):
    return list(load_ecqa(ecqa_dir, train_sample_size=20)["train"])


def choice(record, letter):
    return record["choices"][LETTERS.index(letter)]


def with_answer(letter):
    return f"Some reasoning about it.\nAnswer: {letter}"


# ---------------------------------------------------------------- offline pairs


def test_offline_pairs_on_real_records(tok, records):
    pairs = P.build_offline_pairs(tok, records, seed=0)
    assert len(pairs) == len(records) == 20
    by_id = {r["id"]: r for r in records}
    kinds = {p["kind"] for p in pairs}
    assert kinds <= {"offline-swap", "offline-template"}
    n_swap = 0
    for p in pairs:
        rec = by_id[p["id"]]
        assert tuple(p) == P.PAIR_KEYS
        assert p["prompt"] == render_prompt(tok, rec)
        assert p["chosen"] == render_completion(tok, rec, target_text(rec["explanation"], rec["answer"]))
        assert p["gold"] == p["chosen_letter"] == rec["answer"] == extract_answer(p["chosen"])
        assert extract_answer(p["rejected"]) == p["rejected_letter"] != rec["answer"]
        assert p["chosen"].endswith(tok.eos_token) and p["rejected"].endswith(tok.eos_token)
        assert P.check_pair(tok, rec, p, max_length=1024) is None
        wrong = choice(rec, p["rejected_letter"]).lower()
        if p["kind"] == "offline-swap":
            n_swap += 1
            assert wrong.rstrip("s") in p["rejected"].lower(), p["rejected"]
    assert n_swap >= 10  # most ECQA explanations name the gold option


def test_offline_pairs_are_seeded_per_question(tok, records):
    a = P.build_offline_pairs(tok, records[:8], seed=1)
    b = P.build_offline_pairs(tok, list(reversed(records[:8])), seed=1)
    assert sorted(a, key=lambda p: p["id"]) == sorted(b, key=lambda p: p["id"])
    letters = lambda seed: [p["rejected_letter"] for p in P.build_offline_pairs(tok, records, seed=seed)]  # noqa: E731
    assert letters(1) != letters(2)


def test_swap_mentions_swaps_both_ways_and_keeps_case():
    text = "The passage is called hallway and Hallway have floor. Carpet is not something that have floor."
    out, n = P.swap_mentions(text, "hallway", "carpet")
    assert n == 2
    assert out == "The passage is called carpet and Carpet have floor. Hallway is not something that have floor."


def test_swap_mentions_whole_words_plurals_and_longer_first():
    assert P.swap_mentions("The carpet is in the car.", "car", "bus") == ("The carpet is in the bus.", 1)
    assert P.swap_mentions("Cars are fast.", "car", "bus") == ("Buss are fast.", 1)  # plural suffix is kept
    assert P.swap_mentions("Found at movie theater, not a theater.", "movie theaters", "theater") == (
        "Found at theater, not a movie theaters.",
        1,
    )
    assert P.swap_mentions("Nothing here.", "car", "bus") == ("Nothing here.", 0)


def test_offline_template_when_gold_text_is_absent(tok, records):
    rec = dict(records[0], explanation="This explanation names none of the options at all.")
    pair = P.offline_pair(tok, rec, random.Random(0))
    wrong = choice(rec, pair["rejected_letter"])
    assert pair["kind"] == "offline-template"
    assert wrong in pair["rejected"].lower() or wrong.capitalize() in pair["rejected"]
    assert rec["concept"] in pair["rejected"]
    assert P.check_pair(tok, rec, pair) is None


def test_offline_pair_none_when_every_option_is_the_gold_text(tok, records):
    rec = dict(records[0], choices=["same"] * 5)
    assert P.offline_pair(tok, rec, random.Random(0)) is None


# ---------------------------------------------------------------- check_pair


def test_check_pair_catches_each_bad_kind(tok, records):
    rec = records[0]
    good = P.offline_pair(tok, rec, random.Random(0))
    gold, wrong = rec["answer"], good["rejected_letter"]
    assert P.check_pair(tok, rec, good) is None
    bad = {
        "prompt differs": dict(good, prompt=render_prompt(tok, records[1])),
        "chosen equals rejected": dict(good, rejected=good["chosen"]),
        "end-of-turn": dict(good, rejected=good["rejected"].removesuffix(tok.eos_token)),
        "chosen does not parse to gold": dict(good, chosen=render_completion(tok, rec, with_answer(wrong))),
        "rejected parses to gold": dict(good, rejected=render_completion(tok, rec, f"Hmm.\nAnswer: {gold}")),
    }
    for expected, pair in bad.items():
        assert expected in P.check_pair(tok, rec, pair)
    assert "max_length" in P.check_pair(tok, rec, good, max_length=64)
    assert P.check_pair(tok, rec, good, max_length=4096) is None


# ---------------------------------------------------------------- on-policy pairs


def test_on_policy_pair_mixed_prefers_a_wrong_letter(tok, records):
    rec = records[0]
    gold = rec["answer"]
    wrong = next(x for x in LETTERS if x != gold)
    samples = [with_answer(gold), "I am not sure.", with_answer(wrong), with_answer(gold)]
    assert P.sample_outcome(rec, samples) == "mixed"
    for seed in range(10):
        pair = P.on_policy_pairs(tok, rec, samples, random.Random(seed))[0]
        assert pair["kind"] == "on-policy"
        assert extract_answer(pair["chosen"]) == pair["chosen_letter"] == gold
        assert extract_answer(pair["rejected"]) == pair["rejected_letter"] == wrong
        assert P.check_pair(tok, rec, pair) is None


def test_on_policy_pair_unparseable_rejected_when_no_wrong_letter(tok, records):
    rec = records[0]
    pair = P.on_policy_pairs(tok, rec, [with_answer(rec["answer"]), "no answer line"], random.Random(0))[0]
    assert pair["rejected_letter"] is None and extract_answer(pair["rejected"]) is None
    assert P.check_pair(tok, rec, pair) is None


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (2, 2), (4, 4), (9, 5)])
def test_on_policy_pairs_several_per_question_all_different(tok, records, limit, expected):
    """2 right, 2 wrong letters and 3 unparseable samples: up to max(2, 5) = 5 different pairs, wrong letters first."""
    rec = records[0]
    gold = rec["answer"]
    wrong = [x for x in LETTERS if x != gold][:2]
    right = [with_answer(gold), "Because so. " + with_answer(gold)]
    samples = right + [with_answer(w) for w in wrong] + ["loop loop", "no line", "still no line"]
    pairs = P.on_policy_pairs(tok, rec, samples, random.Random(0), limit=limit)
    assert len(pairs) == expected
    assert len({(p["chosen"], p["rejected"]) for p in pairs}) == expected
    letters = [p["rejected_letter"] for p in pairs]
    assert set(letters[:2]) <= set(wrong) and set(letters[2:]) <= {None}  # wrong letters before no letter
    assert all(P.check_pair(tok, rec, p) is None for p in pairs)
    if expected > 1:
        assert len({p["chosen"] for p in pairs}) == 2  # both right samples are used


def test_failures_first_puts_loops_and_unanswered_samples_on_the_rejected_side(tok, records):
    rec = records[0]
    gold = rec["answer"]
    wrong = next(x for x in LETTERS if x != gold)
    samples = [with_answer(gold), with_answer(wrong), "loop loop loop", with_answer(gold)]
    for seed in range(5):
        pairs = P.on_policy_pairs(tok, rec, samples, random.Random(seed), limit=2, rejected_first="failure")
        assert [p["rejected_letter"] for p in pairs] == [None, wrong]
        assert pairs[0]["kind"] == "on-policy, failure rejected" and pairs[1]["kind"] == "on-policy"
        assert all(P.check_pair(tok, rec, p) is None for p in pairs)


def test_unsure_questions_get_the_most_pairs():
    assert [P.pair_count(4, c, 8) for c in (1, 4, 7)] == [4, 4, 4]  # off: the limit everywhere
    assert [P.pair_count(4, c, 8, weight_unsure=True) for c in (1, 2, 4, 6, 7)] == [2, 3, 4, 3, 2]
    assert P.pair_count(1, 1, 8, weight_unsure=True) == 1  # never below one


def test_gold_explanation_against_the_models_own_failure_when_every_sample_is_wrong(tok, records):
    rec = records[0]
    wrong = next(x for x in LETTERS if x != rec["answer"])
    pair = P.gold_vs_sample_pair(tok, rec, [with_answer(wrong), "loop loop"], random.Random(0))
    assert pair["kind"] == "gold vs own wrong sample" and pair["rejected_letter"] is None  # the failure first
    assert rec["explanation"].strip() in pair["chosen"] and P.check_pair(tok, rec, pair) is None
    assert P.gold_vs_sample_pair(tok, rec, [with_answer(rec["answer"])], random.Random(0)) is None


def test_on_policy_pairs_none_when_all_agree(tok, records):
    rec = records[0]
    gold = rec["answer"]
    wrong = next(x for x in LETTERS if x != gold)
    cases = {
        "all correct": [with_answer(gold)] * 3,
        "all wrong": [with_answer(wrong), "garbled", with_answer(wrong)],
    }
    for outcome, samples in cases.items():
        assert P.sample_outcome(rec, samples) == outcome
        assert P.on_policy_pairs(tok, rec, samples, random.Random(0), limit=4) == []
    assert P.sample_outcome(rec, ["", "Answer: F"]) == "all wrong"
    assert P.on_policy_pairs(tok, rec, ["", "Answer: F"], random.Random(0)) == []


# ---------------------------------------------------------------- resumable sampling


class FakeGenerate:
    """Stands in for generation.generate_all: each sample echoes its question; can die after n batches."""

    def __init__(self, answers=None, die_after=None):
        self.answers, self.die_after, self.prompts, self.kwargs = answers or {}, die_after, [], []

    def __call__(self, model, tok, prompts, batch_size=32, **kwargs):
        self.kwargs.append(dict(kwargs, batch_size=batch_size))
        k = kwargs["num_return_sequences"]
        for b, start in enumerate(range(0, len(prompts), batch_size)):
            if self.die_after is not None and b >= self.die_after:
                raise KeyboardInterrupt("killed")
            idx = list(range(start, min(start + batch_size, len(prompts))))
            self.prompts += [prompts[i] for i in idx]
            yield idx, [[Generation(self.text(prompts[i], j), 1) for j in range(k)] for i in idx]

    def text(self, prompt, j):
        question = re.search(r"Question: (.*)", prompt).group(1)
        letters = self.answers.get(question)
        return f"{question} #{j}" + (f"\nAnswer: {letters[j % len(letters)]}" if letters else "")


def fake_adapter(root, weights: bytes = b"sft adapter weights"):
    """An SFT adapter folder under ``root`` as far as sampling provenance reads it (its weights' hash)."""
    sft = root / "outputs" / "sft"
    sft.mkdir(parents=True, exist_ok=True)
    (sft / "adapter_config.json").write_text("{}")
    (sft / "adapter_model.safetensors").write_bytes(weights)
    return sft


def test_sample_on_policy_resumes_after_a_kill(tok, records, tmp_path, monkeypatch):
    recs = records[:5]
    fake_adapter(tmp_path)
    settings = PairSettings(
        root=str(tmp_path), samples_per_question=2, batch_size=4, temperature=0.7, max_new_tokens=16
    )
    path = tmp_path / "samples.jsonl"
    first = FakeGenerate(die_after=1)
    monkeypatch.setattr("helpers.generation.generate_all", first)
    with pytest.raises(KeyboardInterrupt):
        P.sample_on_policy(object(), tok, recs, settings, path)
    assert first.kwargs[0] == {
        "batch_size": 2,
        "max_new_tokens": 16,
        "temperature": 0.7,
        "num_return_sequences": 2,
        "seed": 42,
    }
    assert len(path.read_text().splitlines()) == 2
    with path.open("a") as f:
        f.write('{"id": "' + recs[4]["id"] + '", "samp')  # a kill mid-write

    second = FakeGenerate()
    monkeypatch.setattr("helpers.generation.generate_all", second)
    samples = P.sample_on_policy(object(), tok, recs, settings, path)
    assert len(second.prompts) == 3  # only the questions not done
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in recs)  # each id exactly once, broken line gone
    assert list(samples) == [r["id"] for r in recs]
    for r in recs:
        assert [s.split(" #")[0] for s in samples[r["id"]]] == [r["question"]] * 2

    third = FakeGenerate()
    monkeypatch.setattr("helpers.generation.generate_all", third)
    assert P.sample_on_policy(object(), tok, recs[:3], settings, path) == {r["id"]: samples[r["id"]] for r in recs[:3]}
    assert third.prompts == []


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 1.0},
        {"max_new_tokens": 32},
        {"samples_per_question": 3},
        {"quantize": False},
        {"seed": 1},
        "retrained adapter",
    ],
    ids=str,
)
def test_samples_of_other_provenance_are_moved_aside_and_redone(tok, records, tmp_path, monkeypatch, capsys, change):
    """Samples are reused only under the provenance they were made with (#12: they used to be reused by question id
    alone after the adapter was retrained or a sampling setting changed)."""
    from helpers import provenance

    recs = records[:3]
    fake_adapter(tmp_path)
    settings = PairSettings(
        root=str(tmp_path), samples_per_question=2, batch_size=4, temperature=0.7, max_new_tokens=16
    )
    path = tmp_path / "samples.jsonl"
    monkeypatch.setattr("helpers.generation.generate_all", FakeGenerate())
    first = P.sample_on_policy(object(), tok, recs, settings, path)
    old = path.read_text()
    assert provenance.read(path) == P.sampling_provenance(settings)

    if change == "retrained adapter":
        fake_adapter(tmp_path, b"other weights")
        again = settings
    else:
        again = settings.replace(**change)
    redo = FakeGenerate()
    monkeypatch.setattr("helpers.generation.generate_all", redo)
    capsys.readouterr()
    second = P.sample_on_policy(object(), tok, recs, again, path)
    assert len(redo.prompts) == len(recs), "stale samples were reused"
    assert path.with_name("samples.jsonl.stale").read_text() == old, "the old samples were not kept aside"
    assert provenance.read(path) == P.sampling_provenance(again)
    assert "was made by another run" in capsys.readouterr().out
    assert set(second) == set(first)


@pytest.mark.parametrize("when_all_agree", ["offline", "skip", "gold"])
def test_build_pairs_on_policy_counts_outcomes(tok, records, tmp_path, monkeypatch, when_all_agree):
    recs = records[:6]
    wrong = lambda r: next(x for x in LETTERS if x != r["answer"])  # noqa: E731
    plans = [lambda r: [r["answer"], wrong(r)], lambda r: [r["answer"]] * 2, lambda r: [wrong(r)] * 2]
    answers = {r["question"]: plans[i % 3](r) for i, r in enumerate(recs)}  # mixed, all correct, all wrong
    monkeypatch.setattr("helpers.generation.generate_all", FakeGenerate(answers))
    settings = PairSettings(
        root=str(tmp_path), strategy="on_policy", samples_per_question=2, when_all_agree=when_all_agree
    )
    fake_adapter(tmp_path)
    pairs, report = P.build_pairs(settings.replace(max_length=1024), tok, recs, model=object())
    assert dict(report.outcomes) == {"mixed": 2, "all correct": 2, "all wrong": 2}
    assert report.kinds["on-policy"] == 2
    if when_all_agree == "skip":
        assert len(pairs) == 2 and sum(report.dropped.values()) == 4
    elif when_all_agree == "gold":  # all wrong: the gold explanation against one of them; all correct: skipped
        assert report.kinds["gold vs own wrong sample"] == 2 and sum(report.dropped.values()) == 2
        assert all(p["rejected_letter"] != p["gold"] for p in pairs)
    else:
        assert len(pairs) == 6 and not report.dropped
    assert P.samples_path(settings).is_file()
    assert "on-policy" in str(report) and "mixed 2" in str(report)


def test_build_pairs_on_policy_several_pairs_per_question(tok, records, tmp_path, monkeypatch):
    """4 samples, 2 right and 2 wrong: pairs_per_question 3 gives 2 pairs (max(2, 2)), 1 gives 1."""
    recs = records[:3]
    wrong = lambda r, i: [x for x in LETTERS if x != r["answer"]][i]  # noqa: E731
    answers = {r["question"]: [r["answer"], wrong(r, 0), r["answer"], wrong(r, 1)] for r in recs}
    monkeypatch.setattr("helpers.generation.generate_all", FakeGenerate(answers))
    fake_adapter(tmp_path)
    base = PairSettings(root=str(tmp_path), strategy="on_policy", samples_per_question=4, max_length=1024)
    for per_question, expected in ((1, 3), (3, 6)):
        pairs, report = P.build_pairs(base.replace(pairs_per_question=per_question), tok, recs, model=object())
        assert len(pairs) == report.kept == report.kinds["on-policy"] == expected
        assert max(Counter(p["id"] for p in pairs).values()) == expected // 3
        assert len({(p["chosen"], p["rejected"]) for p in pairs}) == expected


def test_build_pairs_drops_and_counts_bad_pairs(tok, records):
    pairs, report = P.build_pairs(PairSettings(max_length=100, strategy="offline"), tok, records[:6])
    assert report.questions == 6 and report.kept == len(pairs)
    assert sum(report.dropped.values()) == 6 - len(pairs) > 0
    assert all("max_length" in reason for reason in report.dropped)
    assert "dropped" in str(report)


# ---------------------------------------------------------------- files


def test_write_read_roundtrip_and_broken_lines(tok, records, tmp_path):
    pairs = P.build_offline_pairs(tok, records[:4], seed=0)
    path = P.write_pairs(pairs, tmp_path / "data" / "pairs.jsonl", report=P.PairReport(questions=4))
    assert json.loads((tmp_path / "data" / "pairs_summary.json").read_text())["questions"] == 4
    ds = P.read_pairs(path)
    assert ds.num_rows == 4 and ds[0] == pairs[0]

    # Changed on purpose (#12, one JSONL reader for the project): only a cut-off last line (what a killed append
    # leaves) is dropped; a complete broken line, or a pair lacking keys, is an error naming it (the reader used to
    # skip such lines with a warning and train on what remained).
    good = path.read_text()
    lines = good.splitlines()
    path.write_text("\n".join(lines) + "\n" + lines[0][:40])
    assert P.read_pairs(path)["id"] == [p["id"] for p in pairs]
    assert path.read_text().endswith(lines[0][:40]), "reading pairs must not change the file"

    lines[1] = lines[1][:40]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2 is not valid JSON .*delete the file to redo it"):
        P.read_pairs(path)
    path.write_text(good + json.dumps({"id": "x", "prompt": "p"}) + "\n")
    with pytest.raises(ValueError, match=r"pair 5 lacks keys \['chosen', .*rebuild the file with notebook 02_pairs"):
        P.read_pairs(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="holds no pairs"):
        P.read_pairs(path)
    with pytest.raises(FileNotFoundError, match="02_pairs"):
        P.read_pairs(tmp_path / "missing.jsonl")


def test_write_pairs_never_replaces_a_good_file_with_a_partial_one(tok, records, tmp_path):
    pairs = P.build_offline_pairs(tok, records[:3], seed=0)
    path = P.write_pairs(pairs, tmp_path / "pairs.jsonl")
    good = path.read_text()
    with pytest.raises(TypeError):
        P.write_pairs(pairs[:2] + [dict(pairs[2], kind={"not", "json"})], path)
    with pytest.raises(ValueError, match="no pairs"):
        P.write_pairs([], path)
    assert path.read_text() == good
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


def test_pair_lengths(tok, records):
    pairs = P.build_offline_pairs(tok, records[:3], seed=0)
    lengths = P.pair_lengths(tok, pairs)
    assert set(lengths) == {"prompt", "chosen", "rejected"}
    assert lengths["chosen"][0] == len(tok(pairs[0]["chosen"], add_special_tokens=False)["input_ids"])
    assert all(len(v) == 3 and min(v) > 0 for v in lengths.values())


# ---------------------------------------------------------------- real model


@pytest.mark.slow
def test_real_on_policy_run_with_smollm2(tok, records, tmp_path, capsys):
    from helpers.models import load_model

    model = load_model("smollm2-135m")
    fake_adapter(tmp_path)  # the samples' provenance names the adapter's hash; the model here is the base
    settings = PairSettings(
        root=str(tmp_path),
        strategy="on_policy",
        samples_per_question=2,
        max_new_tokens=24,
        batch_size=8,
        when_all_agree="offline",  # the base model is rarely right in 24 tokens: keep a pair for every question
    )
    pairs, report = P.build_pairs(settings, tok, records[:4], model=model)
    assert report.questions == 4 and sum(report.outcomes.values()) == 4
    assert report.kept + sum(report.dropped.values()) == 4
    rows = [json.loads(line) for line in P.samples_path(settings).read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in records[:4])
    assert all(len(r["samples"]) == 2 for r in rows)
    ds = P.read_pairs(P.write_pairs(pairs, settings.pairs, report))
    assert ds.num_rows == len(pairs) > 0
    print(report)

    # the same sampling with another max_new_tokens: the samples are moved aside and sampled again, for real
    capsys.readouterr()
    shorter = settings.replace(max_new_tokens=8)
    P.build_pairs(shorter, tok, records[:4], model=model)
    assert "was made by another run (max_new_tokens 24 -> 8)" in capsys.readouterr().out
    stale = P.samples_path(settings).with_name(P.samples_path(settings).name + ".stale")
    assert stale.is_file() and stale.read_text().count("\n") == 4
    redone = [json.loads(line) for line in P.samples_path(settings).read_text().splitlines()]
    assert sorted(r["id"] for r in redone) == sorted(r["id"] for r in records[:4])


def test_dpo_keeps_a_share_of_the_pairs_questions_out_of_training(tmp_path):
    from helpers import steps
    from helpers.settings import DPOSettings

    ids = [f"q{i}" for i in range(40)]
    train, held = steps.split_pairs(DPOSettings(root=str(tmp_path), eval_fraction=0.1), {"id": ids + ids[:5]})
    assert len(held) == 4 and len(train) == 36 and not set(train) & set(held)
    assert steps.split_pairs(DPOSettings(root=str(tmp_path), eval_fraction=0.0), {"id": ids})[1] == []


def test_greedy_sample_adds_each_questions_greedy_answer_last(tok, records, tmp_path, monkeypatch):
    """greedy_sample: the greedy answer (temperature 0, one sequence) joins the k samples, and the samples' provenance
    says so; without it the provenance of older samples is unchanged (they are not redone)."""
    recs = records[:3]
    fake_adapter(tmp_path)
    settings = PairSettings(
        root=str(tmp_path), samples_per_question=2, batch_size=4, temperature=0.7, max_new_tokens=16
    )
    assert "greedy_sample" not in P.sampling_provenance(settings)
    greedy = settings.replace(greedy_sample=True)
    assert P.sampling_provenance(greedy)["greedy_sample"] is True
    fake = FakeGenerate()
    monkeypatch.setattr("helpers.generation.generate_all", fake)
    samples = P.sample_on_policy(object(), tok, recs, greedy, tmp_path / "samples.jsonl")
    assert [(kw["temperature"], kw["num_return_sequences"]) for kw in fake.kwargs] == [(0.0, 1), (0.7, 2)]
    for r in recs:
        assert [s.split(" #")[1] for s in samples[r["id"]]] == ["0", "1", "0"]  # k samples, then the greedy one
        assert all(s.startswith(r["question"]) for s in samples[r["id"]])


def test_pair_mix_counts_what_select_pairs_and_gold_rejected_pick():
    """scripts/pair_mix.py counts from letters alone: a failure is rejected first only under rejected_first=failure,
    and a question whose samples are all wrong gives a pair only with when_all_agree=gold."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import pair_mix

    recs = [
        {"id": "mixed", "gold": "A", "detail": {"votes": ["A", "B", None, "A"]}},
        {"id": "all wrong", "gold": "A", "detail": {"votes": ["B", None]}},
        {"id": "all right", "gold": "A", "detail": {"votes": ["A", "A"]}},
    ]
    wrong_first = pair_mix.mix(recs, 1, "wrong", False, "skip")
    assert wrong_first == {"pairs": 1, "questions": 1, "gold_pairs": 0, "failure_rejected_share": 0.0}
    failure_first = pair_mix.mix(recs, 1, "failure", False, "gold")
    assert failure_first == {"pairs": 2, "questions": 2, "gold_pairs": 1, "failure_rejected_share": 1.0}
    assert pair_mix.mix(recs, 4, "wrong", False, "skip")["pairs"] == 2  # max(2 right, 2 rejected) different pairs
